"""The DAMSM phase: pretrains STEM, the text and image encoders MirrorGAN keeps frozen.

As the reference's `pretrain_DAMSM.py` (spec sections 1.4-1.6): both encoders
are trained on loss = word_loss0 + word_loss1 + sentence_loss0 + sentence_loss1
(`losses.damsm_*`, gamma1/2/3 from `config.loss`, same-class negatives masked
by the batch's `class_id`), with embedding dropout (rng stream 'dropout') and
Adam (b1 0.5, b2 0.999) at lr = `damsm.learning_rate` * 0.98**epoch until it
first falls to lr0 / 10 or below (the reference multiplies by 0.98 after each
epoch while lr > lr0 / 10, so it settles at 0.98**114 lr0 = 0.09995 lr0).
The reference builds a *fresh Adam every epoch*; we reset the Adam moments and
bias-correction count at every epoch start (`restart_every`). Gradients of the
text encoder only are clipped to global norm `damsm.grad_clip`.

Image backbone: with `model.image_encoder.train_backbone = False` (reference:
ImageNet Inception-v3) it gets no update and no gradient, and its BatchNorm runs
in eval mode, so its statistics stay bit-identical. Departure: the reference
left the whole CNN in train mode, so the frozen Inception normalised with batch
statistics and its running statistics drifted (spec 1.4 caveat); we keep the
statistics the encoder is later frozen with, so the head is trained on the
features it will see. With `train_backbone = True` (small-CNN configs) the
backbone trains, BatchNorm in train mode. The input image is the largest
generator-stage image (CUB 256 px, resized by the encoder to 299), the image
R-precision of generated images feeds it; the reference cropped 299 px from 355.

Every epoch and at the end the test split is evaluated in eval mode: the four
losses over its full batches (the reference's drop_last), R-precision of every
real test image against its first caption and 99 captions of other classes
drawn from all test captions (`evaluation.r_precision`), on captioned_shapes
whether the encoders read each attribute (`swap_accuracy/<attribute>`: the image
is closer to its caption than to the caption with that word swapped, chance 0.5;
`evaluation.attribute_reading`), written as `eval/...` scalars, and a grid of
test images with the DAMSM word-attention maps of their captions. The result is
the artifact `<workdir>/damsm/artifact`: variables {'text_encoder': {params},
'image_encoder': {params, batch_stats}}, vocabulary
and metadata. `damsm.init_text_encoder` / `init_image_encoder` start from such
an artifact (e.g. AttnGAN's, converted by `python -m mirrorgan_jax.pretrained`).
On captioned_shapes there are no ImageNet weights; `damsm.pretrained_backbone =
'classifier'` takes the small-CNN backbone from the image classifier that the
`classifier` phase trained on the labelled train split (`artifacts.classifier_backbone`),
the stand-in for the paper's ImageNet Inception-v3.

Data parallel with jit over a `data` Mesh (parameters replicated, batch
sharded; the contrastive losses and BatchNorm see the global batch).
"""

import functools
from typing import Any, Iterable, NamedTuple

from absl import logging
from etils import epath
import flax
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
from mirrorgan_jax.phases import swap_negatives
from mirrorgan_jax.evaluation import attribute_reading
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.evaluation import r_precision
from mirrorgan_jax.models import factory
from mirrorgan_jax.models import image_encoder as image_encoder_lib

TEXT, IMAGE = artifacts.TEXT, artifacts.IMAGE  # Keys of params and artifact variables.
BACKBONE = image_encoder_lib.BACKBONE
ADAM_B1, ADAM_B2 = 0.5, 0.999  # Reference DAMSM Adam betas.
LR_DECAY = 0.98  # Per-epoch learning-rate factor (reference).
NUM_ATTENTION_IMAGES = 6  # Test images in the word-attention summary.
_TRAIN_KEYS = ('caption_ids', 'caption_len', 'class_id')
_EVAL_KEYS = _TRAIN_KEYS + ('all_caption_ids', 'all_caption_len', 'mask')


@flax.struct.dataclass
class DamsmState:
  """Everything the DAMSM phase checkpoints."""
  step: jax.Array
  rng: jax.Array  # Raw uint32[2] key; per-step dropout keys fold in `step`.
  params: Any  # {TEXT: ..., IMAGE: ...}
  batch_stats: Any  # Of the image encoder (the text encoder has none).
  opt_state: Any


# ----------------------------------------------------------------- optimiser
def decay_epochs(base_lr: float) -> int:
  """Epochs whose end multiplies the lr by 0.98 (reference: while lr > lr0 / 10)."""
  lr, n = base_lr, 0
  while lr > base_lr / 10.0:
    lr *= LR_DECAY
    n += 1
  return n


def learning_rate(base_lr: float, epoch: int | jax.Array) -> jax.Array:
  """Learning rate of a (0-based) epoch: base * 0.98**min(epoch, decay_epochs)."""
  return base_lr * LR_DECAY ** jnp.minimum(epoch, decay_epochs(base_lr))


class RestartState(NamedTuple):
  """State of `restart_every`: updates so far and the inner state."""
  count: jax.Array
  inner: Any


def restart_every(inner: optax.GradientTransformation,
                  period: int) -> optax.GradientTransformation:
  """Runs `inner` from a freshly initialised state every `period` updates.

  The reference creates a new Adam at every epoch start; with `period` =
  steps per epoch, the moments and the bias-correction count restart there.
  """
  if period < 1:
    raise ValueError(f'restart period must be >= 1, got {period}')

  def init(params):
    return RestartState(jnp.zeros([], jnp.int32), inner.init(params))

  def update(updates, state, params=None):
    restart = state.count % period == 0
    fresh = inner.init(updates)  # Only shapes are read (Adam's zero moments).
    inner_state = jax.tree.map(lambda f, s: jnp.where(restart, f, s), fresh, state.inner)
    updates, inner_state = inner.update(updates, inner_state, params)
    return updates, RestartState(state.count + 1, inner_state)

  return optax.GradientTransformation(init, update)


def clip_text_encoder(max_norm: float) -> optax.GradientTransformation:
  """Clips the global norm of the TEXT subtree's updates; the rest pass unchanged."""
  return optax.masked(optax.clip_by_global_norm(max_norm),
                      lambda params: {k: k == TEXT for k in params})


def create_optimizer(config: ml_collections.ConfigDict,
                     steps_per_epoch: int) -> optax.GradientTransformation:
  """The reference DAMSM optimiser over {TEXT: ..., IMAGE: ...} parameters.

  Text-encoder clip -> Adam restarted every epoch -> -lr(epoch); the image
  backbone gets zero updates (and no Adam state) unless it is trained.
  """
  base_lr = config.damsm.learning_rate
  tx = optax.chain(
      clip_text_encoder(config.damsm.grad_clip),
      restart_every(optax.scale_by_adam(b1=ADAM_B1, b2=ADAM_B2), steps_per_epoch),
      optax.scale_by_schedule(
          lambda count: -learning_rate(base_lr, count // steps_per_epoch)))
  if config.model.image_encoder.train_backbone:
    return tx

  def labels(params):
    return jax.tree.map(lambda trainable: 'train' if trainable else 'frozen',
                        image_encoder_lib.trainable_mask(params))
  return optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, labels)


# ----------------------------------------------------------------- steps
def damsm_losses(loss_config: ml_collections.ConfigDict, regions: jax.Array,
                 code: jax.Array, words: jax.Array, sentence: jax.Array,
                 lengths: jax.Array, class_ids: jax.Array
                 ) -> tuple[dict[str, jax.Array], jax.Array]:
  """The four DAMSM loss terms of a batch and the word-attention maps.

  Args:
    loss_config: `config.loss` (gamma1, gamma2, gamma3).
    regions: [B, h, w, D] region features; code: [B, D] image codes.
    words: [B, T, D] word features; sentence: [B, D] sentence features.
    lengths: [B] caption lengths; class_ids: [B] (same-class pairs masked).
  Returns:
    ({'word_loss0', 'word_loss1', 'sentence_loss0', 'sentence_loss1'} scalars,
     attention maps [B, T, h, w] of each image with its own caption).
  """
  g = loss_config
  w0, w1, maps = losses.damsm_word_loss(regions, words, lengths, class_ids,
                                        g.gamma1, g.gamma2, g.gamma3)
  s0, s1 = losses.damsm_sentence_loss(code, sentence, class_ids, g.gamma3)
  return {'word_loss0': w0, 'word_loss1': w1, 'sentence_loss0': s0,
          'sentence_loss1': s1}, maps


def _train_step(models, tx, loss_config, train_backbone, lr_at, key, swap_tables,
                state: DamsmState, batch):
  ids, lengths = batch['caption_ids'], batch['caption_len']
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    def encode(token_ids):
      return models.text_encoder.apply({'params': params[TEXT]}, token_ids, lengths,
                                       train=True, rngs={'dropout': dropout_rng})
    words, sentence = encode(ids)
    image_vars = {'params': params[IMAGE], 'batch_stats': state.batch_stats}
    if train_backbone:
      (regions, code), mutated = models.image_encoder.apply(
          image_vars, batch[key], train=True, mutable=['batch_stats'])
      stats = mutated['batch_stats']
    else:  # Eval-mode BatchNorm: the frozen backbone's statistics stay (see above).
      regions, code = models.image_encoder.apply(image_vars, batch[key], train=False)
      stats = state.batch_stats
    terms, _ = damsm_losses(loss_config, regions, code, words, sentence, lengths,
                            batch['class_id'])
    if swap_tables:  # `damsm.swap_negatives`: near-copy captions as hard negatives.
      terms['swap_loss'] = swap_negatives.loss(
          lambda swapped: encode(swapped)[1], ids, lengths, code, sentence, swap_tables,
          loss_config.gamma3, jax.random.fold_in(dropout_rng, 1))
    return sum(terms.values()), (terms, stats)

  (loss, (terms, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = runner.apply_gradients(state, tx, grads, batch_stats=stats)
  metrics = {'loss': loss, **terms, 'learning_rate': lr_at(state.step),
             'text_grad_norm': optax.global_norm(grads[TEXT]),
             'image_grad_norm': optax.global_norm(grads[IMAGE])}
  return new_state, metrics


def make_train_step(config: ml_collections.ConfigDict, models: factory.Models,
                    tx: optax.GradientTransformation, steps_per_epoch: int,
                    mesh: jax.sharding.Mesh | None = None,
                    swap_tables: dict[str, attribute_reading.SwapTable] | None = None):
  """Compiles the DAMSM step over a `data` Mesh.

  Args:
    config: experiment config.
    models: from `factory.create_models` (text and image encoder are used).
    tx: `create_optimizer(config, steps_per_epoch)`.
    steps_per_epoch: train steps per epoch (for the logged learning rate).
    mesh: device mesh (default: all devices).
    swap_tables: with `damsm.swap_negatives`, the vocabulary's word tables
      (`attribute_reading.tables`): the loss gets `swap_negatives.loss` as
      'swap_loss'. None or empty: the reference's four terms only.
  Returns:
    train_step(state, batch) -> (state, metrics), taking a host numpy batch and
    a state placed with `train_step.place_state`.
  """
  mesh = mesh or parallel.create_mesh()
  key = input_pipeline.final_image_key(config)
  base_lr = config.damsm.learning_rate
  return parallel.compile_step(
      functools.partial(
          _train_step, models, tx, ml_collections.FrozenConfigDict(config.loss),
          config.model.image_encoder.train_backbone,
          lambda step: learning_rate(base_lr, step // steps_per_epoch), key,
          swap_tables or {}),
      mesh, batch_keys=(key,) + _TRAIN_KEYS)


# ----------------------------------------------------------------- state
def _init_fns(config, models, rng):
  text_key, image_key_ = jax.random.split(rng)
  return {TEXT: functools.partial(factory.init_variables, config, models.text_encoder,
                                  text_key),
          IMAGE: functools.partial(factory.init_variables, config, models.image_encoder,
                                   image_key_)}


def init_variables(config: ml_collections.ConfigDict, models: factory.Models,
                   vocab: vocab_lib.Vocabulary, rng: jax.Array,
                   backbone: dict[str, Any] | None = None) -> dict[str, Any]:
  """{TEXT: variables, IMAGE: variables}: fresh, or from `damsm.init_*` artifacts.

  `backbone` ({'params', 'batch_stats'} of the image backbone, from
  `artifacts.classifier_backbone`) replaces the fresh image backbone.

  Raises:
    ValueError: an artifact's vocabulary is not `vocab`, its recorded model
      config differs from the config, or its variables do not fit the model.
  """
  fresh = _init_fns(config, models, rng)
  sources = {TEXT: config.damsm.init_text_encoder, IMAGE: config.damsm.init_image_encoder}
  loaded, out = {}, {}
  for name, path in sources.items():
    if not path:
      out[name] = fast_init.run(fresh[name])
      continue
    if path not in loaded:
      variables, artifact_vocab, _ = artifacts.read(path, artifacts.DAMSM, config)
      if artifact_vocab != vocab:
        raise ValueError(
            f'damsm.init_{name} {path} was trained with a different vocabulary '
            f'({len(artifact_vocab)} words) than this run ({len(vocab)} words): use its '
            f'vocabulary (--config.data.vocab_path={epath.Path(path) / "vocab.json"})')
      loaded[path] = variables
    artifacts.check_tree(loaded[path][name], jax.eval_shape(fresh[name]),
                         f'damsm.init_{name} {path}')
    logging.info('DAMSM %s starts from %s.', name, path)
    out[name] = jax.tree.map(jnp.asarray, loaded[path][name])
  if backbone is not None:
    out[IMAGE] = artifacts.with_backbone(out[IMAGE], backbone, (), 'the DAMSM image encoder')
  return out


def create_state(variables: dict[str, Any], tx: optax.GradientTransformation,
                 rng: jax.Array) -> DamsmState:
  """Step 0 state from {TEXT, IMAGE} variables."""
  params = {TEXT: variables[TEXT]['params'], IMAGE: variables[IMAGE]['params']}
  return DamsmState(step=jnp.zeros((), jnp.int32), rng=rng, params=params,
                    batch_stats=variables[IMAGE].get('batch_stats', {}),
                    opt_state=tx.init(params))


def encoder_variables(state: DamsmState) -> dict[str, Any]:
  """The artifact's variables {TEXT: {params}, IMAGE: {params, batch_stats}}."""
  return {TEXT: {'params': state.params[TEXT]},
          IMAGE: {'params': state.params[IMAGE], 'batch_stats': state.batch_stats}}


# ----------------------------------------------------------------- evaluation
def _eval_step(models, loss_config, key, swap_tables, variables, batch):
  """Losses, codes, attention maps and attribute reading of one (padded) eval batch."""
  ids, lengths = batch['caption_ids'], jnp.maximum(batch['caption_len'], 1)
  words, sentence = models.text_encoder.apply(variables[TEXT], ids, lengths)
  regions, code = models.image_encoder.apply(variables[IMAGE], batch[key])
  terms, maps = damsm_losses(loss_config, regions, code, words, sentence, lengths,
                             batch['class_id'])
  terms.update(attribute_reading.read(
      lambda swapped: models.text_encoder.apply(variables[TEXT], swapped, lengths)[1],
      ids, lengths, code, sentence, swap_tables,
      jax.random.uniform(jax.random.PRNGKey(0), (ids.shape[0], ids.shape[1] + 1))))
  b, n, t = batch['all_caption_ids'].shape
  pool_len = batch['all_caption_len'].reshape(b * n)
  _, pool = models.text_encoder.apply(variables[TEXT],
                                      batch['all_caption_ids'].reshape(b * n, t),
                                      jnp.maximum(pool_len, 1))
  passed = {k: batch[k] for k in _EVAL_KEYS if k != 'all_caption_ids'}
  return {**terms, **passed, 'code': code, 'sentence': sentence,
          'pool': pool.reshape(b, n, -1), 'attention': maps}


class RetrievalEvalHook:
  """Test-split DAMSM losses, R-precision of real images and attention maps."""

  def __init__(self, config: ml_collections.ConfigDict, models: factory.Models,
               vocab: vocab_lib.Vocabulary, eval_batches: Iterable[dict[str, np.ndarray]],
               outdir: epath.Path, mesh: jax.sharding.Mesh | None = None):
    self.config, self.vocab, self.eval_batches, self.outdir = (
        config, vocab, eval_batches, outdir)
    self.key = input_pipeline.final_image_key(config)
    self.mesh = mesh or parallel.create_mesh()
    rep = parallel.replicated(self.mesh)
    loss_config = ml_collections.FrozenConfigDict(config.loss)
    # On captioned_shapes: does DAMSM read each attribute (attribute_reading.read)?
    self.swap_tables = attribute_reading.dataset_tables(config.data.name, vocab)
    # Outputs replicated: every process gets the global batch for R-precision.
    self.step = jax.jit(functools.partial(_eval_step, models, loss_config, self.key,
                                          self.swap_tables),
                        in_shardings=(rep, parallel.batch_sharded(self.mesh)),
                        out_shardings=rep)
    self.last: dict[str, float] | None = None  # Scalars of the latest evaluation.

  def compute(self, state: DamsmState) -> tuple[dict[str, float], dict[str, Any]]:
    """Evaluates `state` on the whole eval split.

    Returns:
      (scalars: the four losses, 'word_loss', 'sentence_loss', 'loss' (means
       over full batches) and 'r_precision/top{1,2,3}_{mean,std}',
       'r_precision/num_images', 'r_precision/num_mismatched'; on captioned_shapes
       'swap_accuracy/<attribute>' and 'swap_distance/<attribute>' (means of
       `evaluation.attribute_reading` over test captions with such a word);
       sample: 'images' uint8, 'attention', 'caption_ids', 'caption_len' of up
       to NUM_ATTENTION_IMAGES test images).
    """
    variables = encoder_variables(state)
    sums, full_batches = {}, 0
    codes, sentences, classes, pool, pool_classes = [], [], [], [], []
    reading = attribute_reading.Tally(self.swap_tables, 'distance')
    sample = None
    for batch in self.eval_batches:
      images = batch[self.key]
      batch = {k: batch[k] for k in (self.key,) + _EVAL_KEYS}
      out = jax.device_get(self.step(variables, parallel.global_batch(batch, self.mesh)))
      mask = out['mask'].astype(bool)
      if mask.all():  # Contrastive losses need a whole batch (reference: drop_last).
        full_batches += 1
        for k in ('word_loss0', 'word_loss1', 'sentence_loss0', 'sentence_loss1'):
          sums[k] = sums.get(k, 0.0) + float(out[k])
      reading.add(out, mask)
      codes.append(out['code'][mask])
      sentences.append(out['sentence'][mask])
      classes.append(out['class_id'][mask])
      real = out['all_caption_len'][mask] > 0  # [rows, captions per image]
      pool.append(out['pool'][mask][real])
      pool_classes.append(np.repeat(out['class_id'][mask], real.sum(axis=1)))
      if sample is None:  # This process's first images (its rows come first).
        n = min(NUM_ATTENTION_IMAGES, int(np.sum(batch['mask'])))
        sample = {'images': image_grid.to_uint8(images[:n]),
                  **{k: out[k][:n] for k in ('attention', 'caption_ids', 'caption_len')}}
    if sample is None or not sum(len(c) for c in codes):
      raise ValueError('the eval split gave no example to evaluate DAMSM on')
    scalars = {k: v / full_batches for k, v in sums.items()}
    if full_batches:
      scalars['word_loss'] = scalars['word_loss0'] + scalars['word_loss1']
      scalars['sentence_loss'] = scalars['sentence_loss0'] + scalars['sentence_loss1']
      scalars['loss'] = scalars['word_loss'] + scalars['sentence_loss']
    else:
      logging.warning('DAMSM eval: no full eval batch, so no losses (only R-precision).')
    scalars.update(reading.scalars())
    scalars.update(self._r_precision(*(np.concatenate(x) for x in (
        codes, sentences, classes, pool, pool_classes))))
    return scalars, sample

  def _r_precision(self, codes, sentences, classes, pool,
                   pool_classes) -> dict[str, float]:
    wanted = self.config.eval.r_precision_mismatched
    available = int(r_precision.eligible_counts(pool_classes, classes).min())
    num = min(wanted, available)
    if num < wanted:
      logging.warning('DAMSM eval: only %d test captions of another class for some '
                      'image; R-precision uses %d mismatched captions instead of %d.',
                      available, num, wanted)
    if num < 1:
      return {}
    out = r_precision.r_precision(codes, sentences, pool, pool_classes, classes,
                                  np.random.default_rng(self.config.seed),
                                  num_mismatched=num)
    return {'r_precision/num_mismatched': num,
            **{f'r_precision/{k}': v for k, v in out.items() if k != 'num_folds'}}

  def __call__(self, state: DamsmState, step: int, writer) -> None:
    """Evaluates and writes scalars and the attention summary (training-loop hook)."""
    scalars, sample = self.compute(state)
    self.last = scalars
    runner.report_eval('DAMSM', step, scalars, writer)
    grid = image_grid.attention_grid(sample['images'], sample['attention'], sample['caption_len'],
                          self.config.data.words_num)
    captions = [f'{i}: {self.vocab.decode(ids)}'
                for i, ids in enumerate(sample['caption_ids'])]
    writer.write_images(step, {'attention/word_maps': grid[None]})
    writer.write_texts(step, {'attention/captions': '\n\n'.join(captions)})
    if jax.process_index() == 0:
      image_grid.save_png(grid, self.outdir / f'attention_{step}.png')


# ----------------------------------------------------------------- phase
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: epath.Path | str,
                       vocab: vocab_lib.Vocabulary) -> epath.Path:
  """Pretrains the DAMSM encoders to `damsm.num_epochs` (resuming), writes the artifact.

  Args:
    config: experiment config (`model.text_encoder`, `model.image_encoder`,
      `damsm`, `loss`, `data`, `train` cadences).
    workdir: run directory; the phase uses `<workdir>/damsm`.
    vocab: the run's vocabulary (saved with the encoders).
  Returns:
    The artifact directory, `artifacts.directory(workdir, artifacts.DAMSM)`.
  """
  workdir = epath.Path(workdir)
  mesh = parallel.create_mesh()
  models = factory.create_models(config, len(vocab))
  batch_size = config.damsm.batch_size
  _, eval_batches, info = input_pipeline.create_datasets(config, vocab,
                                                         batch_size=batch_size)
  num_steps = config.damsm.num_epochs * info.steps_per_epoch
  tx = create_optimizer(config, info.steps_per_epoch)
  swap_tables = None
  if config.damsm.get('swap_negatives'):
    swap_tables = attribute_reading.tables(vocab)
    if not swap_tables:
      raise ValueError('damsm.swap_negatives needs the captioned_shapes vocabulary (its '
                       'attribute words); set it to False for other data')
  train_step = make_train_step(config, models, tx, info.steps_per_epoch, mesh, swap_tables)
  hook = RetrievalEvalHook(config, models, vocab, eval_batches, workdir / 'damsm', mesh)

  def init_state():
    rng, init_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    pretrained = artifacts.pretrained_backbone(workdir, config, 'damsm')
    variables = init_variables(config, models, vocab, init_rng, pretrained)
    return train_step.place_state(create_state(variables, tx, rng))

  backbone = 'trained' if config.model.image_encoder.train_backbone else 'frozen'
  path, final = runner.pretrain(config, workdir, runner.Pretraining(
      kind=artifacts.DAMSM, num_steps=num_steps, steps_per_epoch=info.steps_per_epoch,
      eval_every_epochs=config.damsm.eval_every_epochs, init_state=init_state,
      train_step=train_step,
      batches=lambda start: input_pipeline.create_datasets(
          config, vocab, start_step=start, batch_size=batch_size)[0],
      hook=hook, parameters=lambda state: {TEXT: state.params[TEXT],
                                           f'{IMAGE} (backbone {backbone})':
                                           state.params[IMAGE]},
      artifact_variables=encoder_variables, vocab=vocab,
      meta=lambda final: {
          'source': 'trained', 'vocab_size': len(vocab), 'batch_size': batch_size,
          'init_text_encoder': config.damsm.init_text_encoder or None,
          'init_image_encoder': config.damsm.init_image_encoder or None,
          'pretrained_backbone': config.damsm.get('pretrained_backbone') or None,
          'eval': final}))
  console.say(f'DAMSM artifact written to {path} (test R-precision '
              f"top-1 {final.get('r_precision/top1_mean', float('nan')):.4f}).")
  return path
