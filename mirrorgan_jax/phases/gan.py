"""The GAN phase: MirrorGAN trained against frozen STEM (DAMSM) and STREAM.

Loads the DAMSM and STREAM artifacts of the workdir (their vocabularies must be
the run's), builds the state and the compiled step of `gan_step`, and runs the
shared training loop. Every `train.eval_every_steps` and at the end it writes
image grids of fixed test captions (fixed noise) at every stage, from the raw
and the EMA generator, with the captions as text, to TensorBoard and as PNGs
under `<workdir>/gan/samples/`, and on captioned_shapes a semantic score of the
EMA generator (`semantic_probe`).
"""

import functools

from etils import epath
import jax
import jax.numpy as jnp
import ml_collections

from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import console
from mirrorgan_jax.infra import fast_init
from mirrorgan_jax.phases import gan_step
from mirrorgan_jax.infra import image_grid
from mirrorgan_jax.infra import parallel
from mirrorgan_jax import sampling
from mirrorgan_jax.phases import semantic_probe
from mirrorgan_jax.phases import runner
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.models import factory

NUM_SAMPLE_CAPTIONS = 8  # Captions shown in the sample grids.


class SampleGridHook:
  """Grids of fixed captions and noise at every stage, from raw and EMA G."""

  def __init__(self, config, models: factory.Models, frozen: gan_step.Frozen,
               vocab: vocab_lib.Vocabulary, eval_batches, outdir: epath.Path):
    batch = next(iter(eval_batches))
    n = min(NUM_SAMPLE_CAPTIONS, batch['caption_ids'].shape[0])
    self.ids = jnp.asarray(batch['caption_ids'][:n])
    self.lengths = jnp.asarray(batch['caption_len'][:n])
    self.captions = [vocab.decode(ids) for ids in batch['caption_ids'][:n]]
    key = jax.random.PRNGKey(config.seed + 1)
    z_key, eps_key = jax.random.split(key)
    g = config.model.generator
    self.z = jax.random.normal(z_key, (n, g.z_dim))
    self.eps = jax.random.normal(eps_key, (n, g.condition_dim))
    self.models, self.frozen, self.outdir = models, frozen, outdir
    self.pmap = config.parallel.mode == 'pmap'

  def __call__(self, state: gan_step.GanState, step: int, writer) -> None:
    state = jax.device_get(parallel.unreplicate(state) if self.pmap else state)
    images = {}
    for name, params in (('raw', state.g_params), ('ema', state.ema_g_params)):
      out = sampling.generate(
          self.models.generator, self.models.text_encoder,
          {'params': params, 'batch_stats': state.g_batch_stats},
          self.frozen.text_encoder, self.ids, self.lengths, self.z, self.eps)
      stages = [image_grid.to_uint8(jax.device_get(x)) for x in out['images']]
      grid = image_grid.stage_grid(stages)
      image_grid.save_png(grid, self.outdir / f'step{step:07d}_{name}.png')
      images[f'samples/{name}'] = grid[None]
    writer.write_images(step, images)
    writer.write_texts(step, {'samples/captions': '\n\n'.join(
        f'{i}: {c}' for i, c in enumerate(self.captions))})
    (self.outdir / f'step{step:07d}_captions.txt').write_text(
        '\n'.join(self.captions) + '\n')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: epath.Path | str,
                       vocab: vocab_lib.Vocabulary) -> gan_step.GanState:
  """Trains MirrorGAN to `train.num_epochs`, resuming from the workdir's checkpoints."""
  workdir = epath.Path(workdir)
  pretrained = artifacts.load_pretrained(workdir, config, vocab)
  frozen = gan_step.Frozen(text_encoder=pretrained.text_encoder,
                           captioner=pretrained.captioner)
  pmap = config.parallel.mode == 'pmap'
  models = factory.create_models(
      config, len(vocab), bn_axis_name=parallel.PMAP_AXIS if pmap else None)
  train_step = gan_step.make_train_step(config, models, frozen)
  _, _, info = input_pipeline.create_datasets(config, vocab)
  num_steps = config.train.num_epochs * info.steps_per_epoch

  def init_state():
    state = fast_init.run(functools.partial(gan_step.create_state, config, models),
                          jax.random.PRNGKey(config.seed))
    return train_step.place_state(state)

  def on_start(state, writer):
    state = parallel.unreplicate(state) if pmap else state
    runner.log_parameters('GAN', {'generator': state.g_params,
                                  'discriminators': state.d_params}, writer)

  # The hooks run on each process alone: the eval split in file order, not this
  # process's rows of it.
  in_order = input_pipeline.eval_batches(config, vocab, config.train.batch_size)
  samples = SampleGridHook(config, models, frozen, vocab, in_order,
                           workdir / 'gan' / 'samples')
  probe = semantic_probe.SemanticProbe(config, models, frozen, vocab, workdir,
                                       in_order, pmap=pmap)

  # The captioner's CE on real test images: the level `caption_ce` should approach.
  real_ce = float(jax.jit(functools.partial(
      gan_step.real_caption_ce, models, config.loss.stream_end_token))(
          frozen, next(iter(in_order))))

  def evaluate(state, step, writer):
    writer.write_scalars(step, {'train/caption_ce_real': real_ce})
    samples(state, step, writer)
    probe(state, step, writer)

  phase = runner.Phase(
      name='gan', num_steps=num_steps, init_state=init_state, train_step=train_step,
      batches=lambda start: input_pipeline.create_datasets(config, vocab, start_step=start)[0],
      evaluate=evaluate,
      eval_every=config.train.eval_every_steps, log_every=config.train.log_every_steps,
      checkpoint_every=config.train.checkpoint_every_steps,
      keep_checkpoints=config.train.keep_checkpoints,
      profile_steps=tuple(config.train.profile_steps), on_start=on_start,
      to_checkpoint=train_step.to_checkpoint, from_checkpoint=train_step.from_checkpoint)
  state = runner.run(phase, workdir)
  console.say(f'GAN training finished after {num_steps} steps '
              f'({config.train.batch_size} examples per step).')
  return state

