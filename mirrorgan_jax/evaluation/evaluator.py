"""`--mode eval`: IS, FID, R-precision, STREAM BLEU and attribute accuracies of a run.

`evaluate(config, workdir)` loads the run (`trained_model.load`: EMA generator
of the newest GAN checkpoint, frozen DAMSM encoders and STREAM captioner) and
scores the final-stage images it generates.

Generation protocol (field practice, spec 8.1): sample k shows eval image
k % M (M eval images in TFDS file order) with its caption (k // M) % N, for
k < `eval.num_samples` (30,000 for CUB/COCO: every test caption once, then
again from caption 0). Its noise comes from `fold_in(key(config.seed), k)`, so
it does not depend on the batching. Batches of `eval.batch_size` (the last one
padded and masked) run one compiled program: G in inference mode, the DAMSM
image code and the STREAM redescription (greedy, or beam search of width
`eval.redescription_beam_size`).

Metrics (`results.json` keys):
- `inception_score`, `fid`: with the Inception-v3 artifact `eval.inception_path`
  on 8-bit quantised images (papers score saved PNGs); IS over `eval.is_splits`
  splits after a seeded shuffle; FID against the real eval images (each once,
  at the final stage size), whose statistics are cached (`eval.fid_reference_path`,
  default `<workdir>/eval/fid_reference.npz`) under a fingerprint of extractor
  and data, checked before generating. `eval.inception_random_weights`: random
  weights at 75 px (tests, smoke runs; `inception.note` says the numbers mean
  nothing). Neither: both null, the reason in `inception.note`.
- `r_precision`: AttnGAN protocol (`evaluation.r_precision`), DAMSM code of each
  sample against its caption and `eval.r_precision_mismatched` captions of other
  classes from all eval captions (fewer if the split lacks them, logged),
  top-1/2/3 mean and std over `eval.r_precision_folds` folds; `real`: the same
  with each sample's real image (the encoders' ceiling, same draws).
- `bleu4`: corpus BLEU-4 (token ids) of the redescriptions against all
  captions of the sample's eval image; `real`: of the real eval images;
  `decoder`: greedy or beam width.
- `oracle` (captioned_shapes only): per-attribute accuracy on the samples, an
  attribute scored iff the sample's caption mentions it (`phases/oracle.py`);
  the same on the real images with the same captions; the oracle's real-test
  accuracy from its artifact; and `oracle_fid`, an FID in the oracle's feature
  space (samples vs real eval images; needs no Inception weights).
- `redescription_attributes` (captioned_shapes only): `real` and `generated`,
  per-attribute accuracy and count of what the STREAM redescriptions (those
  of `bleu4`) state (`evaluation.redescription_attributes`).

Outputs under `<workdir>/eval/`: `results.json`, TensorBoard scalars at the
checkpoint's step, redescriptions and a sample grid (also `samples_<step>.png`
and `.txt`). Runs on process 0 (other processes return None), data parallel
over its local devices (`parallel.local_mesh`: as many as split
`eval.batch_size`).
"""

import functools
import json
import math
import time
from typing import Any, Iterator, NamedTuple

from clu import metric_writers
from etils import epath
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import ml_collections
import numpy as np

from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import checkpointing
from mirrorgan_jax.infra import console
from mirrorgan_jax.infra import image_grid
from mirrorgan_jax.infra import parallel
from mirrorgan_jax import sampling
from mirrorgan_jax import trained_model
from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.data import shapes_labels
from mirrorgan_jax.data import shapes_scene
from mirrorgan_jax.evaluation import bleu
from mirrorgan_jax.evaluation import eval_protocol as protocol
from mirrorgan_jax.evaluation import fid_reference
from mirrorgan_jax.evaluation import fid
from mirrorgan_jax.evaluation import inception_score

RESULTS_FILE = 'results.json'
NUM_SHOWN = 16  # Samples in the grid and the redescription text.
GRID_COLUMNS = 8
_LOG_EVERY_SECONDS = 30.0


def eval_dir(workdir: epath.PathLike) -> epath.Path:
  """`<workdir>/eval`: results, TensorBoard events, sample files, FID cache."""
  return epath.Path(workdir) / 'eval'


def read_results(workdir: epath.PathLike) -> dict | None:
  """The workdir's `eval/results.json`, or None when there is none."""
  path = eval_dir(workdir) / RESULTS_FILE
  return json.loads(path.read_text()) if path.exists() else None


def results_current(workdir: epath.PathLike) -> bool:
  """Whether results.json scores the newest GAN checkpoint (`--mode all` skips then)."""
  results = read_results(workdir)
  directory = epath.Path(workdir) / 'gan' / 'checkpoints'
  if results is None or not directory.exists():
    return False
  ckpt = checkpointing.Checkpointer(directory, asynchronous=False)
  try:
    return results.get('step') == ckpt.latest_step()
  finally:
    ckpt.close()


# ------------------------------------------------------------------ compiled steps
_NETS = ('text_encoder', 'image_encoder', 'captioner', 'max_len', 'beam_size')


@functools.partial(jax.jit, static_argnames=_NETS)
def _real_step(variables, images, caption_ids, caption_len, *, text_encoder,
               image_encoder, captioner, max_len, beam_size):
  """DAMSM codes of images [B, D] and of all their captions [B, N, D]; redescriptions."""
  _, code = image_encoder.apply(variables['image_encoder'], images)
  b, n, t = caption_ids.shape
  _, sentences = text_encoder.apply(variables['text_encoder'],
                                    caption_ids.reshape(b * n, t),
                                    jnp.maximum(caption_len.reshape(b * n), 1))
  ids, lengths = sampling.redescription_ids(captioner, variables['captioner'], images,
                                            beam_size, max_len)
  return code, sentences.reshape(b, n, -1), ids, lengths


@functools.partial(jax.jit, static_argnames=('generator',) + _NETS)
def _generated_step(variables, caption_ids, caption_len, sample_ids, key, *, generator,
                    text_encoder, image_encoder, captioner, max_len, beam_size):
  """Final-stage samples [B, S, S, 3] float32, their DAMSM codes and redescriptions."""
  z_key, eps_key = jax.random.split(key)
  out, ids, lengths = sampling.generate_and_redescribe(
      generator, text_encoder, captioner, variables, caption_ids, caption_len,
      protocol.sample_noise(z_key, sample_ids, generator.z_dim),
      protocol.sample_noise(eps_key, sample_ids, generator.condition_dim),
      beam_size=beam_size, max_len=max_len)
  images = out['images'][-1]
  _, code = image_encoder.apply(variables['image_encoder'], images)
  return images, code, ids, lengths


def _words(ids: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
  return [[int(t) for t in row[:n]] for row, n in zip(ids, lengths)]


def _nets(models, config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The static arguments of the compiled steps: modules and decoding."""
  return {'text_encoder': models.text_encoder, 'image_encoder': models.image_encoder,
          'captioner': models.captioner, 'max_len': config.model.captioner.max_decode_len,
          'beam_size': config.eval.redescription_beam_size}


def _decoder(config: ml_collections.ConfigDict) -> str:
  beam = config.eval.redescription_beam_size
  return 'greedy' if beam == 1 else f'beam search (width {beam})'


def network_variables(model: trained_model.TrainedModel, mesh: Mesh) -> dict[str, Any]:
  """The variables the compiled steps take, replicated on `mesh`."""
  return parallel.replicate({'generator': model.g_variables,
                            'text_encoder': model.frozen.text_encoder,
                            'image_encoder': model.frozen.image_encoder,
                            'captioner': model.frozen.captioner}, mesh)


# ------------------------------------------------------------------ the passes
class _Real(NamedTuple):
  caption_ids: np.ndarray  # [M, N, T]
  caption_len: np.ndarray  # [M, N]
  class_ids: np.ndarray  # [M]
  image_codes: np.ndarray  # [M, D]
  caption_codes: np.ndarray  # [M, N, D]
  redescriptions: list[list[int]]  # Per eval image.
  oracle_predictions: dict[str, np.ndarray] | None  # {attribute: [M]}
  oracle_features: np.ndarray | None  # [M, F]


def _real_pass(batches, key: str, variables, nets: dict[str, Any], mesh: Mesh,
               oracle) -> _Real:
  """One pass over the real eval split (unmasked rows only)."""
  parts = {k: [] for k in ('ids', 'len', 'class', 'code', 'captions', 'oracle')}
  redescriptions = []
  for batch in batches:
    mask = batch['mask'].astype(bool)
    inputs = jax.device_put((batch[key], batch['all_caption_ids'], batch['all_caption_len']),
                            parallel.batch_sharded(mesh))
    out = jax.device_get(_real_step(variables, *inputs, **nets))
    code, captions, ids, lengths = (x[mask] for x in out)
    for name, column in (('ids', 'all_caption_ids'), ('len', 'all_caption_len'),
                         ('class', 'class_id')):
      parts[name].append(batch[column][mask])
    parts['code'].append(code)
    parts['captions'].append(captions)
    redescriptions.extend(_words(ids, lengths))
    if oracle is not None:
      predictions, features = oracle.outputs(batch[key])
      parts['oracle'].append(({a: p[mask] for a, p in predictions.items()},
                              features[mask]))
  if not redescriptions:
    raise ValueError('the eval split gave no image to evaluate on')
  cat = {k: np.concatenate(v) for k, v in parts.items() if k != 'oracle'}
  predictions = features = None
  if oracle is not None:
    predictions = {a: np.concatenate([p[a] for p, _ in parts['oracle']])
                   for a in parts['oracle'][0][0]}
    features = np.concatenate([f for _, f in parts['oracle']])
  return _Real(cat['ids'], cat['len'], cat['class'], cat['code'], cat['captions'],
               redescriptions, predictions, features)


def generated_batches(config: ml_collections.ConfigDict, plan: protocol.SamplePlan,
                      caption_ids: np.ndarray, caption_len: np.ndarray, variables,
                      models, mesh: Mesh
                      ) -> Iterator[tuple[np.ndarray, jax.Array, np.ndarray,
                                          list[list[int]]]]:
  """Generates the planned samples in batches of `eval.batch_size`.

  Args:
    config: the run's config (`seed`, `eval.batch_size`, captioner decoding).
    plan: eval image and caption of each sample.
    caption_ids: every eval caption [M, N, T]; caption_len [M, N].
    variables: `network_variables(model, mesh)`; models: the run's modules.
    mesh: the devices that split each batch (`parallel.local_mesh`).
  Yields:
    (mask [B] (False on padding), final-stage images [B, S, S, 3] float32 on
    device, padding rows included; DAMSM codes [b, D] and redescriptions
    (token-id lists) of the b unmasked rows).
  """
  num = len(plan.image_index)
  key = jax.random.PRNGKey(config.seed)
  for sample_ids, mask in protocol.plan_batches(num, config.eval.batch_size):
    rows = np.minimum(sample_ids, num - 1)  # Padding rows repeat the last sample.
    image, caption = plan.image_index[rows], plan.caption_index[rows]
    inputs = jax.device_put((caption_ids[image, caption],
                             np.maximum(caption_len[image, caption], 1), sample_ids),
                            parallel.batch_sharded(mesh))
    images, code, ids, lengths = _generated_step(
        variables, *inputs, key,
        generator=models.generator, **_nets(models, config))
    code, ids, lengths = (x[mask] for x in jax.device_get((code, ids, lengths)))
    yield mask, images, code, _words(ids, lengths)


class _Generated(NamedTuple):
  image_codes: np.ndarray  # [S, D]
  redescriptions: list[list[int]]
  probs: np.ndarray | None  # Inception class probabilities [S, C].
  inception_stats: fid.Statistics | None
  oracle_predictions: dict[str, np.ndarray] | None
  oracle_stats: fid.Statistics | None
  shown: np.ndarray  # uint8 [<= NUM_SHOWN, S, S, 3]: the first samples.
  seconds: float


def _generate(config, plan: protocol.SamplePlan, real: _Real, variables, models,
              mesh: Mesh, extractor, oracle) -> _Generated:
  """Generates every planned sample and feeds each metric, batch by batch."""
  num = len(plan.image_index)
  codes, redescriptions, probs, shown, predictions = [], [], [], [], []
  inception_acc, oracle_acc = fid.StatisticsAccumulator(), fid.StatisticsAccumulator()
  started = last_log = time.time()
  for mask, images, code, words in generated_batches(
      config, plan, real.caption_ids, real.caption_len, variables, models, mesh):
    codes.append(code)
    redescriptions.extend(words)
    if extractor is not None:
      out = extractor(images)
      inception_acc.update(out.pool3[mask])
      probs.append(out.probs[mask])
    if oracle is not None:
      labels, features = oracle.outputs(images)
      predictions.append({a: p[mask] for a, p in labels.items()})
      oracle_acc.update(features[mask])
    if sum(len(s) for s in shown) < NUM_SHOWN:
      shown.append(image_grid.to_uint8(jax.device_get(images)[mask]))
    if time.time() - last_log > _LOG_EVERY_SECONDS or len(redescriptions) == num:
      last_log = time.time()
      console.say(f'Eval: {len(redescriptions)} / {num} images generated and scored '
                  f'({len(redescriptions) / max(last_log - started, 1e-9):.1f} images/s).')
  return _Generated(
      np.concatenate(codes), redescriptions, np.concatenate(probs) if probs else None,
      inception_acc.result() if extractor is not None else None,
      {a: np.concatenate([p[a] for p in predictions]) for a in predictions[0]}
      if predictions else None,
      oracle_acc.result() if oracle is not None else None,
      np.concatenate(shown)[:NUM_SHOWN], time.time() - started)


# ------------------------------------------------------------------ results
def _finite_or_none(value: float | None) -> float | None:
  return value if value is not None and math.isfinite(value) else None


def _accuracy_results(scores: dict[str, tuple[float, int]]) -> dict[str, Any]:
  """{'accuracy': {attribute: value or None (none scored)}, 'count': {attribute: n}}."""
  return {'accuracy': {a: _finite_or_none(acc) for a, (acc, _) in scores.items()},
          'count': {a: n for a, (_, n) in scores.items()}}


def _oracle_results(plan, real: _Real, generated: _Generated, records, artifact
                    ) -> dict[str, Any]:
  path, real_test = artifact
  gen = protocol.oracle_scores(generated.oracle_predictions, records, plan)
  same = protocol.oracle_scores(
      {a: p[plan.image_index] for a, p in real.oracle_predictions.items()}, records, plan)
  return {**_accuracy_results(gen),
          'real_accuracy_same_captions': {a: _finite_or_none(acc)
                                          for a, (acc, _) in same.items()},
          'real_test_accuracy': real_test, 'artifact': str(path),
          'oracle_fid': fid.fid_from_statistics(generated.oracle_stats,
                                                fid.statistics(real.oracle_features))}


def _protocol_notes(config: ml_collections.ConfigDict) -> dict[str, str]:
  e = config.eval
  return {
      'generation': 'sample k: eval image k % M (TFDS file order), its caption '
                    '(k // M) % captions_per_image, noise from fold_in(seed, k); EMA '
                    'generator in inference mode; final-stage images',
      'inception': f'8-bit quantised inputs; IS: {e.is_splits} splits after a shuffle '
                   f'with seed {config.seed}; FID: float64 pool3 statistics vs the real '
                   'eval images, each once, at the final stage size',
      'r_precision': f'DAMSM cosine; true caption + {e.r_precision_mismatched} captions '
                     f'of other classes from all eval captions; {e.r_precision_folds} '
                     "folds; 'real': each sample's real eval image",
      'bleu4': f'corpus BLEU-4 on token ids, {_decoder(config)} STREAM redescriptions vs all '
               "captions of the sample's eval image; 'real': the real eval images",
      'oracle': "attribute scored iff the sample's caption mentions it; oracle_fid is "
                "an FID in the oracle's feature space, not an Inception FID",
      'redescription_attributes': 'first object and background parsed from the bleu4 '
                                  'redescriptions; object attributes of one-object '
                                  "scenes; generated: iff the sample's caption states "
                                  'it; unstated counts as wrong'}


def _sample_text(vocab, plan: protocol.SamplePlan, real: _Real, redescriptions) -> str:
  blocks = []
  for k in range(min(NUM_SHOWN, len(redescriptions))):
    j, c = plan.image_index[k], plan.caption_index[k]
    caption = vocab.decode(real.caption_ids[j, c][:real.caption_len[j, c]])
    blocks.append(f'[{k}] eval image {j}, caption {c}\n  input:       {caption}\n'
                  f'  redescribed: {vocab.decode(redescriptions[k])}')
  return '\n\n'.join(blocks) + '\n'


def _grid(images: np.ndarray) -> np.ndarray:
  """uint8 images [n, S, S, 3] in rows of GRID_COLUMNS (white fills the last row)."""
  rows, cols = -(-len(images) // GRID_COLUMNS), min(len(images), GRID_COLUMNS)
  cells = np.full((rows * cols,) + images.shape[1:], 255, np.uint8)
  cells[:len(images)] = images
  return image_grid.tile(cells.reshape((rows, cols) + images.shape[1:]))


def _write(workdir: epath.Path, results: dict, grid: np.ndarray, text: str) -> None:
  """results.json, TensorBoard scalars / text / grid, sample PNG and text files."""
  outdir, step = eval_dir(workdir), results['step']
  outdir.mkdir(parents=True, exist_ok=True)
  (outdir / RESULTS_FILE).write_text(json.dumps(results, indent=1, allow_nan=False))
  image_grid.save_png(grid, outdir / f'samples_{step}.png')
  (outdir / f'samples_{step}.txt').write_text(text)
  writer = metric_writers.create_default_writer(outdir, asynchronous=False)
  writer.write_scalars(step, protocol.flat_scalars({k: v for k, v in results.items()
                                           if k != 'step'}))
  writer.write_texts(step, {'redescriptions': f'```\n{text}```'})
  writer.write_images(step, {'samples': grid[None]})
  writer.close()


# ------------------------------------------------------------------ entry point
def _load_oracle(config, workdir: epath.Path):
  """(classifier, (artifact path, its real-test accuracy)); Nones off captioned_shapes."""
  if config.data.name != shapes_scene.DATASET:
    return None, None
  path = artifacts.directory(workdir, artifacts.ORACLE)
  if not path.exists():
    raise FileNotFoundError(
        f'no oracle artifact at {path}: captioned_shapes evaluation needs it; train it '
        'with `python -m mirrorgan_jax.main --mode oracle` (same workdir)')
  classifier = artifacts.load_oracle(path, config)
  accuracy = (json.loads((path / 'meta.json').read_text()).get('eval') or {}).get(
      'accuracy') or {}
  return classifier, (path, {a: _finite_or_none(v) for a, v in accuracy.items()})


def _check_config(config: ml_collections.ConfigDict) -> None:
  e = config.eval
  for name in ('num_samples', 'batch_size', 'r_precision_folds',
               'r_precision_mismatched', 'redescription_beam_size'):
    if e[name] < 1:
      raise ValueError(f'eval.{name} must be >= 1, got {e[name]}')
  if (e.inception_path or e.inception_random_weights) and e.num_samples < e.is_splits:
    raise ValueError(f'eval.num_samples ({e.num_samples}) must be >= eval.is_splits '
                     f'({e.is_splits}) for the Inception Score')


def evaluate(config: ml_collections.ConfigDict | None,
             workdir: epath.PathLike) -> dict[str, Any] | None:
  """Evaluates the newest GAN checkpoint of `workdir` (see the module docstring).

  Args:
    config: the run's config (None: `<workdir>/config.json`).
    workdir: the run directory.
  Every process of a multi-process job runs the whole evaluation on its own
  devices (no cross-process collective, so the numbers are those of one process
  by construction) and returns the results; process 0 writes them. Restoring the
  checkpoint is collective in Orbax, which is why no process may skip it.

  Returns:
    The results, as written to `<workdir>/eval/results.json`.
  Raises:
    FileNotFoundError: missing checkpoint, artifact or Inception weights (names
      the path).
    ValueError: bad eval config, or an FID cache of another extractor or data.
  """
  workdir = epath.Path(workdir)
  config = config or trained_model.load_config(workdir)
  _check_config(config)
  model = trained_model.load(workdir, config)
  oracle, oracle_artifact = _load_oracle(config, workdir)
  extractor, inception_note = fid_reference.inception_extractor(config)
  eval_batches = input_pipeline.eval_batches(config, model.vocab, config.eval.batch_size)
  # Before the long generation, so that a cache of another extractor fails early.
  reference = None if extractor is None else fid_reference.reference_statistics(
      config, workdir, extractor, eval_batches)
  mesh = parallel.local_mesh(config.eval.batch_size)
  console.say(f'Eval: batches of {config.eval.batch_size} over {mesh.size} local devices.')
  variables = network_variables(model, mesh)
  key = input_pipeline.final_image_key(config)
  real = _real_pass(eval_batches, key, variables, _nets(model.models, config), mesh,
                    oracle)
  num_real, captions_per_image = real.caption_len.shape
  records = None
  if oracle is not None:
    records = shapes_labels.test_records(config)
    if len(records.captions) != num_real:
      raise ValueError(f'the oracle test records list {len(records.captions)} images, '
                       f'the eval pipeline {num_real}')
  plan = protocol.sample_plan(num_real, captions_per_image, config.eval.num_samples)
  console.say(f'Eval of {workdir} at step {model.step}: {len(plan.image_index)} samples '
              f'of {num_real} eval images x {captions_per_image} captions.')
  generated = _generate(config, plan, real, variables, model.models, mesh, extractor,
                        oracle)

  num = len(plan.image_index)
  results = {
      'step': model.step, 'num_images': num, 'num_eval_images': num_real,
      'captions_per_image': captions_per_image, 'rounds': math.ceil(num / num_real),
      'images_per_second': num / max(generated.seconds, 1e-9),
      'inception': {'weights': extractor.fingerprint if extractor else None,
                    'note': inception_note},
      'inception_score': None, 'fid': None, 'fid_reference': None}
  if extractor is not None:
    score = inception_score.inception_score(generated.probs, config.eval.is_splits,
                                            shuffle_seed=config.seed)
    results['inception_score'] = {'mean': score.mean, 'std': score.std,
                                  'num_splits': config.eval.is_splits}
    results['fid'] = fid.fid_from_statistics(generated.inception_stats, reference)
    results['fid_reference'] = {
        'path': str(fid_reference.reference_path(config, workdir)),
        'num_images': reference.count}
  rp = functools.partial(
      protocol.r_precision_scores, plan=plan, caption_codes=real.caption_codes,
      caption_len=real.caption_len, class_ids=real.class_ids,
      num_mismatched=config.eval.r_precision_mismatched,
      num_folds=config.eval.r_precision_folds, seed=config.seed)
  results['r_precision'] = {'generated': rp(generated.image_codes),
                            'real': rp(real.image_codes[plan.image_index])}
  refs = [_words(ids, n) for ids, n in zip(real.caption_ids, real.caption_len)]
  results['bleu4'] = {
      'generated': bleu.corpus_bleu(generated.redescriptions,
                                    [refs[j] for j in plan.image_index]),
      'real': bleu.corpus_bleu(real.redescriptions, refs), 'decoder': _decoder(config)}
  results['oracle'] = None if oracle is None else _oracle_results(
      plan, real, generated, records, oracle_artifact)
  results['redescription_attributes'] = None if records is None else {
      k: {**_accuracy_results(scores), 'stated': {a: _finite_or_none(f)
                                                 for a, f in stated.items()}}
      for k, (scores, stated) in protocol.redescription_attribute_scores(
          model.vocab, real.redescriptions, generated.redescriptions, records,
          plan).items()}
  results['protocol'] = _protocol_notes(config)

  if jax.process_index() == 0:
    _write(workdir, results, _grid(generated.shown),
           _sample_text(model.vocab, plan, real, generated.redescriptions))
  console.say(f'Eval results written to {eval_dir(workdir) / RESULTS_FILE}:\n' + '\n'.join(
      f'  {k}: {v:.4f}' for k, v in protocol.flat_scalars(results).items()))
  return results
