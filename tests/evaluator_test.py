"""`--mode eval` (evaluation/evaluator.py): one smoke run of every phase, then checks.

Expected values come from the protocol written out here (sample k: eval image
k % M with caption (k // M) % N, noise folded from k), from hand-built
features and captions, and from the modules the evaluator glues together
(`sampling.generate`, `oracle_accuracy.mentioned`), never from its own output.
"""

import json
import os
import shutil
import subprocess
import sys

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from configs import cub
from mirrorgan_jax.infra import checkpointing
from tests import conftest
from mirrorgan_jax import main
from mirrorgan_jax.infra import parallel
from mirrorgan_jax import sampling
from mirrorgan_jax import trained_model
from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.data import shapes_labels
from mirrorgan_jax.evaluation import eval_protocol
from mirrorgan_jax.evaluation import evaluator
from mirrorgan_jax.evaluation import fid_reference
from mirrorgan_jax.evaluation import fid
from mirrorgan_jax.evaluation import oracle_accuracy
from mirrorgan_jax.evaluation import redescription_attributes

NUM_SAMPLES = conftest.SMOKE_EVAL_SAMPLES
NUM_EVAL, CAPTIONS, SIZE = 32, 8, 32  # tiny test split; smoke final stage px.


def _config(data_dir, **eval_fields):
  c = conftest.smoke_config(data_dir)
  for k, v in eval_fields.items():
    c.eval[k] = v
  return c


def _latest_gan_step(workdir):
  ckpt = checkpointing.Checkpointer(workdir / 'gan' / 'checkpoints', asynchronous=False)
  try:
    return ckpt.latest_step()
  finally:
    ckpt.close()


def _leaves(tree, prefix=''):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _leaves(v, f'{prefix}{k}/')
  else:
    yield prefix[:-1], tree


def test_results_have_every_key_with_finite_numbers(smoke_run):
  _, _, workdir, results, compiled = smoke_run
  assert set(results) == {
      'step', 'num_images', 'num_eval_images', 'captions_per_image', 'rounds',
      'images_per_second', 'inception', 'inception_score', 'fid', 'fid_reference',
      'r_precision', 'bleu4', 'oracle', 'redescription_attributes', 'protocol'}
  assert results['step'] == _latest_gan_step(workdir) > 0
  assert (results['num_images'], results['num_eval_images'],
          results['captions_per_image'], results['rounds']) == (
              NUM_SAMPLES, NUM_EVAL, CAPTIONS, 2)
  note = results['inception']['note']
  assert 'RANDOM' in note and 'meaningless' in note
  counts = results['oracle']['count']
  for name, value in _leaves(results):
    if value is None:  # Only an accuracy over no scored sample may be missing.
      assert name.startswith('oracle/accuracy/'), name
      assert counts[name.split('/')[-1]] == 0, name
    elif not isinstance(value, str):
      assert np.isfinite(value), name
  assert 1.0 - 1e-6 <= results['inception_score']['mean'] <= 1008
  assert results['fid'] >= -1e-6 and results['oracle']['oracle_fid'] >= -1e-6
  assert results['fid_reference']['num_images'] == NUM_EVAL
  for which in ('generated', 'real'):
    rp = results['r_precision'][which]
    assert (rp['num_images'], rp['num_folds'], rp['num_mismatched']) == (
        NUM_SAMPLES, 2, 7)
    for k in (1, 2, 3):
      assert 0 <= rp[f'top{k}_mean'] <= 1 and rp[f'top{k}_std'] >= 0
    assert 0 <= results['bleu4'][which] <= 1
  assert results['r_precision']['generated']['top3_mean'] >= (
      results['r_precision']['generated']['top1_mean'])
  for key in ('accuracy', 'count', 'real_accuracy_same_captions', 'real_test_accuracy'):
    assert set(results['oracle'][key]) == set(oracle_accuracy.ATTRIBUTES), key
  attributes = results['redescription_attributes']
  assert set(attributes) == {'real', 'generated'}
  for which, scores in attributes.items():
    assert set(scores) == {'accuracy', 'count', 'stated'}
    for key in ('accuracy', 'count', 'stated'):
      assert set(scores[key]) == set(redescription_attributes.ATTRIBUTES), (which, key)
    for a, n in scores['count'].items():
      assert n > 0 and 0 <= scores['accuracy'][a] <= scores['stated'][a] <= 1, (which, a)
  # Real: every image's background, object attributes of the same one-object scenes;
  # generated: scored where the input caption states it, as the oracle's counts.
  real_counts = attributes['real']['count']
  assert real_counts['background'] == NUM_EVAL
  assert len({real_counts[a] for a in redescription_attributes.OBJECT_ATTRIBUTES}) == 1
  assert attributes['generated']['count'] == {
      a: counts[a] for a in redescription_attributes.ATTRIBUTES}
  assert compiled == 1  # Every batch, the padded last one included, ran one program.


def test_outputs_on_disk(smoke_run):
  _, _, workdir, results, _ = smoke_run
  outdir, step = workdir / 'eval', results['step']
  assert list(outdir.glob('events.out.tfevents*'))
  with Image.open(outdir / f'samples_{step}.png') as grid:  # 2 x 8 cells of 32 px.
    assert grid.size == (8 * (SIZE + 2) + 2, 2 * (SIZE + 2) + 2)
  text = (outdir / f'samples_{step}.txt').read_text()
  assert text.count('redescribed:') == 16
  assert '[15] eval image 15, caption 0' in text


def test_sample_plan_and_batches_by_hand():
  plan = eval_protocol.sample_plan(num_images=3, captions_per_image=2, num_samples=8)
  assert plan.image_index.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
  assert plan.caption_index.tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
  batches = list(eval_protocol.plan_batches(10, 4))
  assert [ids.tolist() for ids, _ in batches] == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                  [8, 9, 10, 11]]
  assert batches[-1][1].tolist() == [True, True, False, False]
  assert all(mask.all() for _, mask in batches[:-1])
  for args in ((0, 2, 8), (3, 0, 8), (3, 2, 0)):
    with pytest.raises(ValueError, match='must be >= 1'):
      eval_protocol.sample_plan(*args)


def test_noise_depends_only_on_the_sample_id():
  key = jax.random.PRNGKey(3)
  all_rows = eval_protocol.sample_noise(key, jnp.arange(8), 5)
  some = eval_protocol.sample_noise(key, jnp.array([6, 2]), 5)
  np.testing.assert_array_equal(some, all_rows[jnp.array([6, 2])])
  np.testing.assert_array_equal(
      all_rows[3], jax.random.normal(jax.random.fold_in(key, 3), (5,)))


def test_generated_batches_follow_the_protocol(smoke_run):
  _, data_dir, workdir, _, _ = smoke_run
  config = _config(data_dir)
  model = trained_model.load(workdir, config)
  _, eval_batches, _ = input_pipeline.create_datasets(
      config, model.vocab, batch_size=8, process_index=0, process_count=1)
  batch = next(iter(eval_batches))
  ids, lengths = batch['all_caption_ids'], batch['all_caption_len']  # [8, 8, T]
  plan = eval_protocol.sample_plan(8, CAPTIONS, 11)  # As if the split had 8 images.
  mesh = parallel.local_mesh(8)
  variables = evaluator.network_variables(model, mesh)
  out = list(evaluator.generated_batches(config, plan, ids, lengths, variables,
                                         model.models, mesh))
  assert [m.tolist() for m, *_ in out] == [[True] * 8, [True] * 3 + [False] * 5]
  assert [(len(code), len(words)) for _, _, code, words in out] == [(8, 8), (3, 3)]
  # By hand: samples 8..15 show image k % 8 with caption k // 8 = 1, noise from k.
  k = np.arange(8, 16)
  z_key, eps_key = jax.random.split(jax.random.PRNGKey(config.seed))
  g = config.model.generator
  z = jnp.stack([jax.random.normal(jax.random.fold_in(z_key, i), (g.z_dim,)) for i in k])
  eps = jnp.stack([jax.random.normal(jax.random.fold_in(eps_key, i), (g.condition_dim,))
                   for i in k])
  want = sampling.generate(model.models.generator, model.models.text_encoder,
                           model.g_variables, model.frozen.text_encoder,
                           ids[k % 8, k // 8], lengths[k % 8, k // 8], z,
                           eps)['images'][-1]
  np.testing.assert_allclose(out[1][1][:3], want[:3], atol=1e-5)
  assert not np.allclose(out[0][1][:3], want[:3], atol=1e-3)  # Round 0 differs.


@pytest.mark.parametrize('beam_size', [1, 2])
def test_redescriptions_use_the_configured_decoder(smoke_run, beam_size):
  _, data_dir, workdir, _, _ = smoke_run
  config = _config(data_dir, redescription_beam_size=beam_size)
  model = trained_model.load(workdir, config)
  _, eval_batches, _ = input_pipeline.create_datasets(
      config, model.vocab, batch_size=8, process_index=0, process_count=1)
  batch = next(iter(eval_batches))
  plan = eval_protocol.sample_plan(8, CAPTIONS, 8)
  mesh = parallel.local_mesh(8)
  [(_, images, _, words)] = evaluator.generated_batches(
      config, plan, batch['all_caption_ids'], batch['all_caption_len'],
      evaluator.network_variables(model, mesh), model.models, mesh)
  ids, lengths = sampling.redescription_ids(
      model.models.captioner, model.frozen.captioner, images, beam_size,
      config.model.captioner.max_decode_len)
  assert words == [row[:n].tolist() for row, n in zip(np.asarray(ids), np.asarray(lengths))]


def test_oracle_counts_follow_the_captions_of_each_round(smoke_run):
  _, data_dir, _, results, _ = smoke_run
  records = shapes_labels.test_records(_config(data_dir))

  def counts(caption_of):
    out = dict.fromkeys(oracle_accuracy.ATTRIBUTES, 0)
    for k in range(NUM_SAMPLES):
      j = k % NUM_EVAL
      for a, scored in oracle_accuracy.mentioned(records.captions[j][caption_of(k)],
                                                 int(records.num_objects[j])).items():
        out[a] += scored
    return out

  want = counts(lambda k: (k // NUM_EVAL) % CAPTIONS)
  assert want != counts(lambda k: 0)  # The round-1 captions change what is scored.
  assert results['oracle']['count'] == want
  assert want['count'] == NUM_SAMPLES  # Always scored: the padding rows are not.


def test_r_precision_glue_on_constructed_codes():
  codes = np.eye(8, dtype=np.float32).reshape(4, 2, 8)  # Image j, caption c: e_{2j+c}.
  lengths = np.full((4, 2), 5)
  lengths[3, 1] = 0  # Not a caption: image 0 keeps 5 of another class (1 + 2 + 2).
  classes = np.arange(4)
  plan = eval_protocol.sample_plan(4, 2, 6)  # (0,0) (1,0) (2,0) (3,0) (0,1) (1,1)
  true = codes[plan.image_index, plan.caption_index]
  wrong = codes[(plan.image_index + 1) % 4, 0]  # Another image's caption.
  kwargs = dict(plan=plan, caption_codes=codes, caption_len=lengths, class_ids=classes,
                num_mismatched=10, num_folds=1, seed=0)
  right = eval_protocol.r_precision_scores(true, **kwargs)
  assert right['num_mismatched'] == 5 and right['num_images'] == 6
  assert right['top1_mean'] == 1.0
  # Samples 3..5 match a mismatched caption (or tie with all at 0): never ranked in top 3.
  mixed = eval_protocol.r_precision_scores(np.concatenate([true[:3], wrong[3:]]), **kwargs)
  assert (mixed['top1_mean'], mixed['top3_mean']) == (0.5, 0.5)
  assert eval_protocol.r_precision_scores(
      true, **{**kwargs, 'class_ids': np.zeros(4, int)}) is None


def test_oracle_scores_glue_by_hand():
  records = shapes_labels.TestRecords(
      captions=[['a big red circle on the left', 'a red circle on a black background'],
                ['a red circle left of a blue square', 'two shapes']],
      labels={'shape': np.array([0, 0]), 'color': np.array([0, 0]),
              'size': np.array([1, 0]), 'position': np.array([0, 0]),
              'count': np.array([0, 1]), 'background': np.array([1, 0])},
      num_objects=np.array([1, 2]))
  plan = eval_protocol.sample_plan(2, 2, 4)  # (0,0) (1,0) (0,1) (1,1)
  predictions = {'shape': np.array([0, 5, 1, 5]), 'color': np.array([0, 3, 0, 3]),
                 'size': np.array([1, 1, 0, 1]), 'position': np.array([3, 0, 0, 0]),
                 'count': np.array([0, 1, 1, 0]), 'background': np.array([0, 0, 1, 0])}
  got = eval_protocol.oracle_scores(predictions, records, plan)
  # Sample 0 states shape, colour, size, position; 2 shape, colour, background;
  # samples 1 and 3 (two objects) only the count.
  assert got == {'shape': (0.5, 2), 'color': (1.0, 2), 'size': (1.0, 1),
                 'position': (0.0, 1), 'count': (0.5, 4), 'background': (1.0, 1)}


class _MeanColour:
  """A stand-in extractor: features are the mean RGB of each image."""

  def __init__(self, fingerprint):
    self.fingerprint = fingerprint

  def features(self, images):
    return np.asarray(images).mean(axis=(1, 2))


def _never_read():
  raise AssertionError('the reference images were read although a cache exists')
  yield  # pylint: disable=unreachable


def test_fid_reference_is_cached_with_its_fingerprint(tmp_path):
  config = _config(tmp_path)
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (8, SIZE, SIZE, 3)).astype(np.float32)
  batches = [{f'image_{SIZE}': images[:4], 'mask': np.ones(4, bool)},
             {f'image_{SIZE}': images[4:], 'mask': np.array([1, 1, 0, 0], bool)}]
  stats = fid_reference.reference_statistics(config, tmp_path, _MeanColour('a'), batches)
  features = images[:6].mean(axis=(1, 2))  # The two padding rows are not real images.
  np.testing.assert_allclose(stats.mu, features.mean(axis=0), rtol=1e-6)
  np.testing.assert_allclose(stats.sigma, np.cov(features, rowvar=False), rtol=1e-6)
  assert (tmp_path / 'eval' / 'fid_reference.npz').exists()
  again = fid_reference.reference_statistics(config, tmp_path, _MeanColour('a'),
                                        _never_read())
  np.testing.assert_array_equal(again.sigma, stats.sigma)
  with pytest.raises(ValueError, match='different feature extractor'):
    fid_reference.reference_statistics(config, tmp_path, _MeanColour('b'), batches)
  config.data.eval_split = 'train'  # Other real images: not reused either.
  with pytest.raises(ValueError, match='different feature extractor'):
    fid_reference.reference_statistics(config, tmp_path, _MeanColour('a'), batches)
  config.eval.fid_reference_path = str(tmp_path / 'elsewhere.npz')
  fid_reference.reference_statistics(config, tmp_path, _MeanColour('a'), batches)
  assert (tmp_path / 'elsewhere.npz').exists()


def test_run_reference_cache_and_refusal_of_another(smoke_run, tmp_path):
  _, data_dir, workdir, results, _ = smoke_run
  config = _config(data_dir)
  stats = fid.load_statistics(  # The run's cache carries extractor and data.
      workdir / 'eval' / 'fid_reference.npz',
      fid_reference.reference_fingerprint(config, results['inception']['weights']))
  assert stats.count == NUM_EVAL and stats.mu.shape == (2048,)
  other = tmp_path / 'other.npz'
  fid.save_statistics(other, fid.statistics(np.eye(3)), 'another extractor')
  before = (workdir / 'eval' / 'results.json').read_text()
  with pytest.raises(ValueError, match='different feature extractor'):
    evaluator.evaluate(_config(data_dir, fid_reference_path=str(other)), workdir)
  assert (workdir / 'eval' / 'results.json').read_text() == before


def test_missing_pieces_give_clear_errors(smoke_run, tmp_path):
  _, data_dir, workdir, _, _ = smoke_run
  config = _config(data_dir)
  run = epath.Path(tmp_path / 'run')
  with pytest.raises(FileNotFoundError, match='damsm/artifact'):
    evaluator.evaluate(config, run)
  for part in ('damsm/artifact', 'stream/artifact'):
    shutil.copytree(workdir / part, run / part)
  with pytest.raises(FileNotFoundError, match='no GAN checkpoints'):
    evaluator.evaluate(config, run)
  shutil.copytree(workdir / 'gan' / 'checkpoints', run / 'gan' / 'checkpoints')
  with pytest.raises(FileNotFoundError, match='--mode oracle'):
    evaluator.evaluate(config, run)
  shutil.copytree(workdir / 'oracle' / 'artifact', run / 'oracle' / 'artifact')
  with pytest.raises(FileNotFoundError,
                     match='not a complete Inception-v3 artifact.*pretrained inception'):
    evaluator.evaluate(_config(data_dir, inception_path=str(tmp_path / 'none')), run)
  with pytest.raises(ValueError, match='eval.num_samples must be >= 1'):
    evaluator.evaluate(_config(data_dir, num_samples=0), run)
  with pytest.raises(ValueError, match='eval.redescription_beam_size must be >= 1'):
    evaluator.evaluate(_config(data_dir, redescription_beam_size=0), run)
  with pytest.raises(ValueError, match='is_splits'):
    evaluator.evaluate(_config(data_dir, num_samples=1), run)
  with pytest.raises(ValueError, match="--mode oracle needs data.name 'captioned_sh"):
    main.run(cub.get_config('smoke'), epath.Path(tmp_path / 'cub'), 'oracle')


@pytest.mark.slow  # `make test-slow`; pmap eval is in CI (pmap_main_test).
def test_eval_on_eight_devices_matches_one_device(smoke_run, tmp_path):
  """`--mode eval` data parallel over 8 fake CPU devices gives the same results."""
  _, data_dir, workdir, results, _ = smoke_run
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy)
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu')
  command = [sys.executable, '-m', 'mirrorgan_jax.main', '--mode=eval',
             f'--workdir={copy}', '--config=configs/shapes.py:smoke',
             f'--config.data.data_dir={data_dir}',
             f'--config.eval.num_samples={conftest.SMOKE_EVAL_SAMPLES}',
             '--config.eval.inception_random_weights=True']
  out = subprocess.run(command, cwd=conftest.ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'Eval: batches of 8 over 8 local devices.' in out.stdout
  sharded = json.loads((copy / 'eval' / 'results.json').read_text())
  want, got = (eval_protocol.flat_scalars(r) for r in (results, sharded))
  assert set(got) == set(want)
  for key in ('images_per_second',):
    del want[key], got[key]
  np.testing.assert_allclose([got[k] for k in sorted(want)],
                             [want[k] for k in sorted(want)], rtol=1e-4, atol=1e-5)
