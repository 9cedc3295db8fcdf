"""The STREAM phase: pretrains the captioner that MirrorGAN later keeps frozen.

The captioner (`models/captioner.py`) learns to describe real images with
teacher forcing: token-mean cross-entropy (`losses.caption_loss`) of the
batch's caption, Adam (`stream.learning_rate`, PyTorch's default betas as the
tutorial the authors used). It sees the largest generator-stage image of each
batch (`image_<final size>` in [-1, 1]), the size and range the generator will
produce, so that the GAN loss scores images like those STREAM was trained on
(spec section 10, item 6).

Frozen backbone (`model.captioner.train_backbone = False`, the reference with an
ImageNet ResNet-152): its parameters get no update (`image_encoder.trainable_mask`
with `optax.multi_transform`, no Adam moments kept), no gradient is computed
for them (`freeze_backbone`), and its BatchNorm runs in eval mode (running
statistics kept), as the captioner runs inside the GAN loss. The encoder head
(Linear + BatchNorm) and the decoder are trained, head BatchNorm in train mode.

Every epoch and at the end the test split is evaluated: teacher-forced loss
and token accuracy of each image's first caption, and corpus BLEU-4 of greedy
(and beam-search) redescriptions against all of the image's captions, written
as `eval/...` scalars, with sample redescriptions (TensorBoard text and image,
and `<workdir>/stream/samples_<step>.txt`). On captioned_shapes it also
measures whether the captioner reads each attribute: is a test caption more
probable than the same caption with one attribute word swapped
(`evaluation.attribute_reading.read_by_likelihood`)? The result is the artifact
`<workdir>/stream/artifact` (variables {'captioner': {params, batch_stats}},
vocabulary, metadata). `stream.init_checkpoint` starts from such an artifact
(e.g. one converted from PyTorch by `mirrorgan_jax.pretrained`). On
captioned_shapes, which has no ImageNet weights, `stream.pretrained_backbone =
'classifier'` takes the small-CNN backbone from the `classifier` phase's
attribute classifier (`artifacts.classifier_backbone`), as the DAMSM phase can.

Parallelism: data parallel with jit over a `data` Mesh (parameters replicated,
batch sharded, BatchNorm statistics over the global batch), whatever
`parallel.mode` says (that field selects the GAN phase's mode).
"""

import functools
from typing import Any, Iterable

from absl import logging
from etils import epath
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import console
from mirrorgan_jax.infra import fast_init
from mirrorgan_jax.infra import image_grid
from mirrorgan_jax.phases import losses
from mirrorgan_jax.infra import parallel
from mirrorgan_jax.phases import runner
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.evaluation import attribute_reading
from mirrorgan_jax.evaluation import bleu
from mirrorgan_jax.models import captioner as captioner_lib
from mirrorgan_jax.models import factory
from mirrorgan_jax.models import image_encoder

NUM_SAMPLES = 8  # Test images whose redescriptions are written each evaluation.
_TRAIN_KEYS = ('caption_ids', 'caption_len')
_EVAL_KEYS = ('caption_ids', 'caption_len', 'all_caption_ids', 'all_caption_len', 'mask')
ENCODER = 'encoder'  # The captioner's CaptionEncoder; its backbone is under it.


@flax.struct.dataclass
class StreamState:
  """Everything the STREAM phase checkpoints."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def backbone_frozen(config: ml_collections.ConfigDict) -> bool:
  return not config.model.captioner.train_backbone


def learning_rate(config: ml_collections.ConfigDict,
                  num_steps: int) -> float | optax.Schedule:
  """`stream.learning_rate`, constant (reference) or cosine-decayed to 0 over the phase."""
  schedule = config.stream.get('lr_schedule', 'constant')
  if schedule == 'constant':
    return config.stream.learning_rate
  if schedule == 'cosine':
    return optax.cosine_decay_schedule(config.stream.learning_rate, num_steps)
  raise ValueError(f"stream.lr_schedule must be 'constant' or 'cosine', got {schedule!r}")


def create_optimizer(config: ml_collections.ConfigDict,
                     num_steps: int) -> optax.GradientTransformation:
  """Adam on every parameter, or on all but the backbone when it is frozen.

  Args:
    config: the run's config (`stream.*`, `model.captioner.train_backbone`).
    num_steps: steps of the whole phase (the cosine schedule's length).
  """
  adam = optax.adam(learning_rate(config, num_steps))
  if not backbone_frozen(config):
    return adam

  def labels(params):
    return jax.tree.map(lambda trainable: 'train' if trainable else 'frozen',
                        image_encoder.trainable_mask(params))
  return optax.multi_transform({'train': adam, 'frozen': optax.set_to_zero()}, labels)


def _backbone_eval_mode(next_fun, args, kwargs, context):
  """Flax interceptor: the captioner's backbone runs with BatchNorm in eval mode."""
  module = context.module
  if (context.method_name == '__call__' and module.name == image_encoder.BACKBONE
      and isinstance(module.parent, captioner_lib.CaptionEncoder)):
    return next_fun(*args[:1], **{**kwargs, 'train': False})
  return next_fun(*args, **kwargs)


def train_forward(model: captioner_lib.Captioner, variables: Any, images: jax.Array,
                  captions: jax.Array, lengths: jax.Array,
                  frozen_backbone: bool) -> tuple[jax.Array, Any]:
  """Teacher-forced logits in training mode and the updated batch statistics.

  Args:
    model: the captioner.
    variables: {'params', 'batch_stats'}.
    images: [B, H, W, 3] in [-1, 1]; captions [B, T]; lengths [B].
    frozen_backbone: run the backbone's BatchNorm in eval mode (its running
      statistics unchanged); the head's BatchNorm always uses batch statistics.
  Returns:
    (logits [B, T, V], new batch_stats).
  """
  def apply():
    return model.apply(variables, images, captions, lengths, train=True,
                       mutable=['batch_stats'])
  if frozen_backbone:
    with nn.intercept_methods(_backbone_eval_mode):
      logits, mutated = apply()
  else:
    logits, mutated = apply()
  return logits, mutated['batch_stats']


def _token_counts(logits: jax.Array, targets: jax.Array,
                  lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(argmax == target count, real token count) over t < lengths[b]."""
  valid = jnp.arange(targets.shape[1])[None, :] < lengths[:, None]
  correct = jnp.sum((jnp.argmax(logits, axis=-1) == targets) & valid)
  return correct.astype(jnp.float32), jnp.sum(valid).astype(jnp.float32)


def token_accuracy(logits: jax.Array, targets: jax.Array,
                   lengths: jax.Array) -> jax.Array:
  """Fraction of real tokens whose teacher-forced argmax is the target.

  Args:
    logits: [B, T, V]; logits[:, t] scores targets[:, t].
    targets: [B, T] token ids; positions t >= lengths[b] are padding.
    lengths: [B] real tokens per caption.
  Returns:
    Scalar accuracy in [0, 1] (0 when there is no real token).
  """
  correct, count = _token_counts(logits, targets, lengths)
  return correct / jnp.maximum(count, 1.0)


def _train_step(model, tx, frozen_backbone, key, end_token, state: StreamState, batch):
  images, ids = batch[key], batch['caption_ids']
  lengths = losses.caption_target_lengths(batch['caption_len'], ids.shape[1], end_token)

  def loss_fn(params):
    logits, stats = train_forward(
        model, {'params': params, 'batch_stats': state.batch_stats}, images, ids,
        lengths, frozen_backbone)
    return losses.caption_loss(logits, ids, lengths), (logits, stats)

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  new_state = runner.apply_gradients(state, tx, grads, batch_stats=batch_stats)
  metrics = {'loss': loss, 'token_accuracy': token_accuracy(logits, ids, lengths),
             'grad_norm': optax.global_norm(grads)}
  return new_state, metrics


def make_train_step(config: ml_collections.ConfigDict, model: captioner_lib.Captioner,
                    tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh | None = None):
  """Compiles the STREAM step over a `data` Mesh.

  Args:
    config: experiment config.
    model: the captioner (from `factory.create_models`).
    tx: `create_optimizer(config, num_steps)`.
    mesh: device mesh (default: all devices).
  Returns:
    train_step(state, batch) -> (state, metrics), taking a host numpy batch
    (only the image of `input_pipeline.final_image_key(config)` and the caption are sent to the
    devices) and a state placed with `train_step.place_state`.
  """
  mesh = mesh or parallel.create_mesh()
  frozen = backbone_frozen(config)
  if frozen:  # Same parameters; no gradient is computed through the backbone.
    model = model.clone(freeze_backbone=True)
  key = input_pipeline.final_image_key(config)
  return parallel.compile_step(
      functools.partial(_train_step, model, tx, frozen, key, config.loss.stream_end_token),
      mesh, batch_keys=(key,) + _TRAIN_KEYS)


def init_variables(config: ml_collections.ConfigDict, model: captioner_lib.Captioner,
                   vocab: vocab_lib.Vocabulary, rng: jax.Array,
                   backbone: dict[str, Any] | None = None) -> Any:
  """Fresh captioner variables, or those of `config.stream.init_checkpoint`.

  `backbone` ({'params', 'batch_stats'} of the image backbone, from
  `artifacts.classifier_backbone`) then replaces the captioner's backbone
  (fresh or loaded), as DAMSM's `init_variables` does.

  Raises:
    ValueError: the checkpoint's vocabulary is not `vocab`, its recorded
      architecture differs from the config, or its variables do not fit.
  """
  path = config.stream.init_checkpoint
  variables = (_from_checkpoint(config, model, vocab, rng) if path else
               fast_init.run(functools.partial(factory.init_variables, config, model), rng))
  if backbone is None:
    return variables
  return artifacts.with_backbone(variables, backbone, (ENCODER,), 'the STREAM captioner')


def _from_checkpoint(config, model, vocab, rng) -> Any:
  """The captioner variables of the artifact `config.stream.init_checkpoint`."""
  path = config.stream.init_checkpoint
  variables, ckpt_vocab, _ = artifacts.read(path, artifacts.STREAM, config)
  variables = variables[artifacts.CAPTIONER]
  if ckpt_vocab != vocab:
    raise ValueError(
        f'stream.init_checkpoint {path} was trained with a different vocabulary '
        f'({len(ckpt_vocab)} words) than this run ({len(vocab)} words); STREAM must '
        'use the STEM vocabulary (spec 10, item 11): convert it with the same '
        'vocabulary.')
  template = jax.eval_shape(functools.partial(factory.init_variables, config, model, rng))
  artifacts.check_tree(variables, template, f'stream.init_checkpoint {path}')
  logging.info('STREAM starts from %s.', path)
  return jax.tree.map(jnp.asarray, variables)


def create_state(variables: Any, tx: optax.GradientTransformation) -> StreamState:
  """Step 0 state from captioner variables."""
  return StreamState(step=jnp.zeros((), jnp.int32), params=variables['params'],
                     batch_stats=variables['batch_stats'],
                     opt_state=tx.init(variables['params']))


def _eval_step(model, key, max_len, beam_size, end_token, swap_tables, variables, batch):
  """Teacher-forced counts, decoded ids and attribute reading of one eval batch."""
  images, ids = batch[key], batch['caption_ids']
  lengths = losses.caption_target_lengths(batch['caption_len'], ids.shape[1], end_token)
  lengths = jnp.where(batch['mask'], lengths, 0)  # Padding rows: no token.
  logits = model.apply(variables, images, ids, lengths, train=False)
  correct, count = _token_counts(logits, ids, lengths)
  out = {'loss_sum': losses.caption_loss(logits, ids, lengths) * count,
         'correct': correct, 'count': count,
         'greedy': captioner_lib.greedy_decode(model, variables, images, max_len)[0],
         **{k: batch[k] for k in ('all_caption_ids', 'all_caption_len', 'mask')}}

  def row_nll(row_logits, token_ids):  # [B]: each caption's summed NLL.
    return jax.vmap(lambda l, t, n: losses.caption_loss(l[None], t[None], n[None],
                                                        'sentence_sum'))(
        row_logits, token_ids, lengths)

  if swap_tables:  # captioned_shapes: reuses the forward pass of the true captions.
    out.update(attribute_reading.read_by_likelihood(
        lambda swapped: row_nll(model.apply(variables, images, swapped, lengths,
                                            train=False), swapped),
        row_nll(logits, ids), ids, batch['caption_len'], swap_tables,
        jax.random.uniform(jax.random.PRNGKey(0), (ids.shape[0], ids.shape[1] + 1))))
  if beam_size > 1:
    out['beam'] = captioner_lib.beam_search(
        model, variables, images, beam_size, max_len)[0]
  return out


def _words(ids: np.ndarray, length: int | None = None) -> list[int]:
  """Token ids up to `length` (default: up to the first <end>)."""
  ids = [int(t) for t in ids]
  end = captioner_lib.END_TOKEN
  if length is None:
    length = ids.index(end) if end in ids else len(ids)
  return ids[:length]


class CaptionEvalHook:
  """Test-split loss, token accuracy, BLEU-4 and sample redescriptions."""

  def __init__(self, config: ml_collections.ConfigDict, model: captioner_lib.Captioner,
               vocab: vocab_lib.Vocabulary, eval_batches: Iterable[dict[str, np.ndarray]],
               outdir: epath.Path, mesh: jax.sharding.Mesh | None = None):
    c = config.model.captioner
    self.key = input_pipeline.final_image_key(config)
    self.vocab, self.eval_batches, self.outdir = vocab, eval_batches, outdir
    self.mesh = mesh or parallel.create_mesh()
    self.decoders = ('greedy', 'beam') if c.beam_size > 1 else ('greedy',)
    self.beam_size = c.beam_size
    rep = parallel.replicated(self.mesh)
    # Outputs replicated: every process gets the global batch for BLEU.
    # On captioned_shapes: does the captioner read each attribute (its likelihood)?
    self.swap_tables = attribute_reading.dataset_tables(config.data.name, vocab)
    self.step = jax.jit(
        functools.partial(_eval_step, model, self.key, c.max_decode_len, c.beam_size,
                          config.loss.stream_end_token, self.swap_tables),
        in_shardings=(rep, parallel.batch_sharded(self.mesh)), out_shardings=rep)
    self.last: dict[str, float] | None = None  # Scalars of the latest evaluation.

  def compute(self, state: StreamState) -> tuple[dict[str, float], dict[str, Any]]:
    """Evaluates `state` on the whole eval split.

    Returns:
      (scalars {'loss', 'token_accuracy', 'bleu4_greedy'[, 'bleu4_beam']}, and on
       captioned_shapes 'swap_accuracy/<attribute>', 'swap_margin/<attribute>'
       (`evaluation.attribute_reading.read_by_likelihood`, over test captions
       with such a word),
       samples {'images' uint8 [n, S, S, 3], 'references', and per decoder a
       list of n id lists}).
    """
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    sums = {'loss_sum': 0.0, 'correct': 0.0, 'count': 0.0}
    hyps = {d: [] for d in self.decoders}
    reading = attribute_reading.Tally(self.swap_tables, 'margin')
    refs, samples = [], None
    for batch in self.eval_batches:
      images = batch[self.key]
      batch = {k: batch[k] for k in (self.key,) + _EVAL_KEYS}
      out = jax.device_get(self.step(variables, parallel.global_batch(batch, self.mesh)))
      for k in sums:
        sums[k] += float(out[k])
      reading.add(out, out['mask'].astype(bool))
      rows = np.flatnonzero(out['mask'])
      for d in self.decoders:
        hyps[d].extend(_words(out[d][i]) for i in rows)
      refs.extend([_words(ids, n) for ids, n in
                   zip(out['all_caption_ids'][i], out['all_caption_len'][i]) if n > 0]
                  for i in rows)
      if samples is None:  # The first images of this process's first batch.
        n = min(NUM_SAMPLES, int(np.sum(batch['mask'])))
        samples = {'images': image_grid.to_uint8(images[:n]), 'references': refs[:n],
                   **{d: hyps[d][:n] for d in self.decoders}}
    if not refs:
      raise ValueError('the eval split gave no example to evaluate STREAM on')
    count = max(sums['count'], 1.0)
    scalars = {'loss': sums['loss_sum'] / count,
               'token_accuracy': sums['correct'] / count}
    for d in self.decoders:
      scalars[f'bleu4_{d}'] = bleu.corpus_bleu(hyps[d], refs, max_n=4)
    scalars.update(reading.scalars())
    return scalars, samples

  def format_samples(self, samples: dict[str, Any]) -> str:
    """Plain text: per image its true captions, then each decoder's caption."""
    names = {'true': 'true', 'greedy': 'greedy', 'beam': f'beam{self.beam_size}'}
    width = max(len(n) for n in names.values()) + 1

    def line(name, ids):
      return f'  {names[name] + ":":{width}} {self.vocab.decode(ids)}'

    blocks = []
    for i, references in enumerate(samples['references']):
      lines = [f'[{i}]'] + [line('true', r) for r in references]
      lines += [line(d, samples[d][i]) for d in self.decoders]
      blocks.append('\n'.join(lines))
    return '\n\n'.join(blocks) + '\n'

  def __call__(self, state: StreamState, step: int, writer) -> None:
    """Evaluates and writes scalars, sample texts and images (training-loop hook)."""
    scalars, samples = self.compute(state)
    self.last = scalars
    runner.report_eval('STREAM', step, scalars, writer)
    text = self.format_samples(samples)
    writer.write_texts(step, {'samples/redescriptions': f'```\n{text}```'})
    grid = image_grid.tile(samples['images'][None])  # One row of the sample images.
    writer.write_images(step, {'samples/images': grid[None]})
    if jax.process_index() == 0:
      self.outdir.mkdir(parents=True, exist_ok=True)
      (self.outdir / f'samples_{step}.txt').write_text(text)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: epath.Path | str,
                       vocab: vocab_lib.Vocabulary) -> epath.Path:
  """Pretrains STREAM to `stream.num_epochs` (resuming) and writes its artifact.

  Args:
    config: experiment config (`model.captioner`, `stream`, `data`, `train` cadences).
    workdir: run directory; the phase uses `<workdir>/stream`.
    vocab: the run's (STEM) vocabulary.
  Returns:
    The artifact directory, `artifacts.directory(workdir, artifacts.STREAM)`.
  """
  workdir = epath.Path(workdir)
  mesh = parallel.create_mesh()
  model = factory.create_models(config, len(vocab)).captioner
  batch_size = config.stream.batch_size
  _, eval_batches, info = input_pipeline.create_datasets(
      config, vocab, batch_size=batch_size)
  num_steps = config.stream.num_epochs * info.steps_per_epoch
  tx = create_optimizer(config, num_steps)
  train_step = make_train_step(config, model, tx, mesh)
  hook = CaptionEvalHook(config, model, vocab, eval_batches, workdir / 'stream', mesh)

  def init_state():
    pretrained = artifacts.pretrained_backbone(workdir, config, 'stream')
    variables = init_variables(config, model, vocab, jax.random.PRNGKey(config.seed),
                               pretrained)
    return train_step.place_state(create_state(variables, tx))

  backbone = 'frozen' if backbone_frozen(config) else 'trained'
  path, final = runner.pretrain(config, workdir, runner.Pretraining(
      kind=artifacts.STREAM, num_steps=num_steps, steps_per_epoch=info.steps_per_epoch,
      eval_every_epochs=config.stream.eval_every_epochs, init_state=init_state,
      train_step=train_step,
      batches=lambda start: input_pipeline.create_datasets(
          config, vocab, start_step=start, batch_size=batch_size)[0],
      hook=hook, parameters=lambda state: {f'captioner (backbone {backbone})': state.params},
      artifact_variables=lambda state: {artifacts.CAPTIONER: {
          'params': state.params, 'batch_stats': state.batch_stats}},
      vocab=vocab,
      meta=lambda final: {
          'source': 'trained', 'vocab_size': len(vocab), 'batch_size': batch_size,
          'init_checkpoint': config.stream.init_checkpoint or None,
          'pretrained_backbone': config.stream.get('pretrained_backbone') or None,
          'eval': final}))
  console.say(f'STREAM artifact written to {path} (test BLEU-4 greedy '
              f"{final['bleu4_greedy']:.4f}).")
  return path
