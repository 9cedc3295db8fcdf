"""The MirrorGAN train step: update every D, then G against the updated Ds.

`make_train_step(config, models, frozen)` returns `train_step(state, batch) ->
(state, metrics)`. The frozen text encoder and captioner variables live in that
closure but enter the compiled program as an argument (never as constants,
never donated, never checkpointed). Per step (reference §6 order):

1. Encode the caption and the mismatched caption with the frozen text encoder.
2. Run G once under `jax.vjp` (BatchNorm in train mode, statistics updated once).
3. D update: real, generated (gradient stopped) and real-with-wrong-caption
   logits at every scale; one Adam over all Ds (= one Adam per D).
4. G update: the G loss is a function of G's outputs, scored by the *updated* Ds
   (train mode, their BN statistics move, as in the reference), plus
   lambda * L_stream of the frozen captioner on the last image (gradients flow
   through the captioner's activations into the image) and the KL term; its
   gradient w.r.t. the outputs is pulled back through G.
5. EMA of G's parameters.

With `loss.d_translate` / `loss.stream_translate` (0 by default, as the paper),
every D input and STREAM's input are randomly translated first
(`random_translation`). With `loss.stream_lower_weight` (0 by default, as the
paper), STREAM also redescribes lower stages' images, upsampled to the last size.

Besides the losses, the metrics show whether the game is learning: D accuracy
on real / fake / wrong-caption inputs per scale and the CA mean's rms against
the CA noise's (is the caption reaching G?). The level the generated images'
`caption_ce` should approach, the frozen captioner's cross-entropy on real
images (`real_caption_ce`), is a constant of the data: the GAN phase computes
it at evaluations, not in every step.

Data parallel: `parallel.mode='jit'` compiles the global-batch program over a
`data` Mesh; `'pmap'` runs the same function per device with `axis_name`, so
gradients, the token-mean caption loss and BatchNorm statistics are averaged
over devices, and the noise of each device is its slice of the global draw:
both modes compute what one device computes on the same global batch.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mirrorgan_jax.phases import losses
from mirrorgan_jax.infra import parallel
from mirrorgan_jax.phases import random_translation
from mirrorgan_jax.data import batch_keys
from mirrorgan_jax.models import factory


@flax.struct.dataclass
class GanState:
  """Everything the GAN phase checkpoints (frozen networks excluded)."""
  step: jax.Array
  rng: jax.Array  # Raw uint32[2] key; per-step keys fold in `step`.
  g_params: Any
  g_batch_stats: Any
  g_opt_state: Any
  ema_g_params: Any
  d_params: dict[str, Any]  # Keyed 'd<size>', e.g. 'd64'.
  d_batch_stats: dict[str, Any]
  d_opt_state: Any


@flax.struct.dataclass
class Frozen:
  """Variables of the pretrained, frozen networks (not trained, not saved here)."""
  text_encoder: Any
  captioner: Any


def _adam(config: ml_collections.ConfigDict, learning_rate: float):
  return optax.adam(learning_rate, b1=config.optim.b1, b2=config.optim.b2)


def create_state(config: ml_collections.ConfigDict, models: factory.Models,
                 rng: jax.Array) -> GanState:
  """Fresh G and D variables and optimiser states (reference initialisation)."""
  g_key, d_key, state_key = jax.random.split(rng, 3)
  g_vars = factory.init_variables(config, models.generator, g_key)
  d_params, d_stats = {}, {}
  for key, disc in models.discriminators.items():
    d_key, sub = jax.random.split(d_key)
    v = factory.init_variables(config, disc, sub)
    d_params[key], d_stats[key] = v['params'], v['batch_stats']
  g_tx = _adam(config, config.optim.g_learning_rate)
  d_tx = _adam(config, config.optim.d_learning_rate)
  return GanState(
      step=jnp.zeros((), jnp.int32), rng=state_key,
      g_params=g_vars['params'], g_batch_stats=g_vars['batch_stats'],
      g_opt_state=g_tx.init(g_vars['params']),
      ema_g_params=jax.tree.map(jnp.copy, g_vars['params']),  # Own buffers (donation).
      d_params=d_params, d_batch_stats=d_stats, d_opt_state=d_tx.init(d_params))


def ema_decay(config: ml_collections.ConfigDict, num_updates: jax.Array) -> jax.Array:
  """Decay of the generator EMA at its `num_updates`-th update (1, 2, ...).

  `optim.ema_decay` (ref 0.999); with `optim.ema_warmup`, at most
  (1 + n) / (10 + n) as tf.train.ExponentialMovingAverage's num_updates, so the
  EMA forgets the random initial weights within ~1/(1 - decay) steps instead of
  keeping 0.999^n of them (29% after 1,250 steps). The reference (650 epochs)
  uses the fixed decay, where the difference vanishes.
  """
  decay = jnp.asarray(config.optim.ema_decay, jnp.float32)
  if config.optim.ema_warmup:
    n = jnp.asarray(num_updates, jnp.float32)
    decay = jnp.minimum(decay, (1 + n) / (10 + n))
  return decay


def _draw(sample, key, local_shape, axis_name):
  """`sample(key, shape)`; under pmap, this device's slice of the global draw."""
  if axis_name is None:
    return sample(key, local_shape)
  n = jax.lax.psum(1, axis_name)
  full = sample(key, (local_shape[0] * n,) + tuple(local_shape[1:]))
  start = jax.lax.axis_index(axis_name) * local_shape[0]
  return jax.lax.dynamic_slice_in_dim(full, start, local_shape[0])


def _mean(x, axis_name):
  return x if axis_name is None else jax.lax.pmean(x, axis_name)


def _token_mean_weight(lengths, axis_name):
  """Rescales a device's token-mean loss so the device mean is the global token mean."""
  if axis_name is None:
    return 1.0
  count = jnp.sum(lengths).astype(jnp.float32)
  return count / jax.lax.pmean(count, axis_name)


def _d_scores(disc, variables, real, fake, sentence, wrong_sentence):
  """Logits of one D on real, fake and real-with-wrong-caption inputs.

  Each call runs in train mode and threads the BatchNorm statistics through,
  as the reference calls its D separately on real and on fake images.
  """
  params, stats = variables['params'], variables['batch_stats']

  def call(method, *args):
    nonlocal stats
    out, mutated = disc.apply({'params': params, 'batch_stats': stats}, *args,
                              method=method, mutable=['batch_stats'])
    stats = mutated['batch_stats']
    return out

  real_code = call('encode', real, True)
  fake_code = call('encode', fake, True)
  logits = {
      'real_uncond': disc.apply({'params': params}, real_code, method='uncond_logits'),
      'real_cond': call('cond_logits', real_code, sentence, True),
      'wrong_cond': call('cond_logits', real_code, wrong_sentence, True),
      'fake_uncond': disc.apply({'params': params}, fake_code, method='uncond_logits'),
      'fake_cond': call('cond_logits', fake_code, sentence, True),
  }
  return logits, stats


def lower_stream_images(config: ml_collections.ConfigDict,
                        images: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
  """The stages' images below the last that STREAM also redescribes, lowest first.

  `loss.stream_lower_stages` of them, just below the last (none while
  `loss.stream_lower_weight` is 0, as the paper: only the last image).
  """
  count = config.loss.stream_lower_stages if config.loss.stream_lower_weight else 0
  if count > len(images) - 1:
    raise ValueError(f'loss.stream_lower_stages={count}, but G has only '
                     f'{len(images) - 1} stage(s) below the last')
  return tuple(images[len(images) - 1 - count:-1])


def upsample_to(image: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Bilinear upsampling of a lower stage's [B, h, w, 3] image to the last stage's shape."""
  return jax.image.resize(image, shape, 'bilinear').astype(image.dtype)


def _gan_step(config, models, axis_name, state: GanState, frozen: Frozen, batch):
  """One MirrorGAN step (see the module docstring); `axis_name` set under pmap."""
  g_cfg = config.model.generator
  ids, lengths = batch['caption_ids'], batch['caption_len']
  local_batch = ids.shape[0]
  key = jax.random.fold_in(state.rng, state.step)
  z_key, eps_key = jax.random.split(key)
  z = _draw(jax.random.normal, z_key, (local_batch, g_cfg.z_dim), axis_name)
  eps = _draw(jax.random.normal, eps_key, (local_batch, g_cfg.condition_dim), axis_name)
  # Random translations (off by default): D inputs in the D update, D inputs in
  # the G update, STREAM input. A fold-in keeps z and eps as without them.
  d_shift, stream_shift = config.loss.d_translate, config.loss.stream_translate
  offsets = [_draw(lambda k, shape, f=f: random_translation.draw_offsets(k, shape[0], f),
                   k, (local_batch, 2), axis_name)
             for k, f in zip(jax.random.split(jax.random.fold_in(key, 2), 4),
                             (d_shift, d_shift, d_shift, stream_shift))]
  d_offsets = {'real': offsets[0], 'fake': offsets[1], 'g': offsets[2]}

  targets = losses.caption_target_lengths(lengths, ids.shape[1],
                                          config.loss.stream_end_token)
  with jax.named_scope('text_encoder'):
    encode = functools.partial(models.text_encoder.apply, frozen.text_encoder, train=False)
    words, sentence = jax.lax.stop_gradient(encode(ids, lengths))
    _, wrong_sentence = jax.lax.stop_gradient(
        encode(batch['mismatch_ids'], batch['mismatch_len']))

  def generate(g_params):
    out, mutated = models.generator.apply(
        {'params': g_params, 'batch_stats': state.g_batch_stats}, z, sentence, words,
        lengths=lengths, train=True, eps=eps, mutable=['batch_stats'])
    return (tuple(out['images']), out['mu'], out['logvar']), mutated['batch_stats']

  with jax.named_scope('G_forward'):
    g_outputs, g_pullback, g_batch_stats = jax.vjp(generate, state.g_params, has_aux=True)
  fakes = g_outputs[0]
  reals = [batch[batch_keys.image_key(d.image_size)]
           for d in models.discriminators.values()]

  def d_loss_fn(d_params):
    total, aux, new_stats = 0.0, {}, {}
    for (name, disc), real, fake in zip(models.discriminators.items(), reals, fakes):
      with jax.named_scope(name):  # Per-D parts in profiles (benchmark.step_profile).
        logits, new_stats[name] = _d_scores(
            disc, {'params': d_params[name], 'batch_stats': state.d_batch_stats[name]},
            random_translation.translate(real, d_offsets['real'], d_shift),
            random_translation.translate(jax.lax.stop_gradient(fake), d_offsets['fake'],
                                         d_shift),
            sentence, wrong_sentence)
      loss, terms = losses.discriminator_loss(
          **logits, mismatch_term=config.loss.d_mismatch_term)
      total += loss
      aux[f'd_loss/{name}'] = loss
      aux.update({f'{k}/{name}': v for k, v in terms.items() if k.startswith('acc')})
    return total, (aux, new_stats)

  d_tx = _adam(config, config.optim.d_learning_rate)
  with jax.named_scope('D_update'):
    (d_loss, (d_aux, d_batch_stats)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(state.d_params)
    d_grads = _mean(d_grads, axis_name)
    with jax.named_scope('adam'):
      d_updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state, state.d_params)
      d_params = optax.apply_updates(state.d_params, d_updates)

  def g_loss_fn(outputs):
    images, mu, logvar = outputs
    adv, aux, stats = [], {}, {}
    for (name, disc), fake in zip(models.discriminators.items(), images):
      with jax.named_scope(name):
        v = {'params': d_params[name], 'batch_stats': d_batch_stats[name]}
        fake = random_translation.translate(fake, d_offsets['g'], d_shift)
        code, mutated = disc.apply(v, fake, True, method='encode', mutable=['batch_stats'])
        v = {'params': d_params[name], 'batch_stats': mutated['batch_stats']}
        uncond = disc.apply(v, code, method='uncond_logits')
        cond, mutated = disc.apply(v, code, sentence, True, method='cond_logits',
                                   mutable=['batch_stats'])
        stats[name] = mutated['batch_stats']
        adv.append(losses.generator_adversarial_loss(uncond, cond))
      aux[f'g_adv/{name}'] = adv[-1]
    def stream_ce(image):
      """The frozen captioner's token-mean cross-entropy of the caption on `image`."""
      seen = random_translation.translate(image, offsets[3], stream_shift)
      logits = models.captioner.apply(frozen.captioner, seen, ids, targets, train=False)
      return (losses.caption_loss(logits, ids, targets)
              * _token_mean_weight(targets, axis_name))

    with jax.named_scope('STREAM'):
      caption_ce = stream_ce(images[-1])
    lower_ce = []
    for image in lower_stream_images(config, images):
      with jax.named_scope(f'STREAM_{image.shape[1]}px'):
        lower_ce.append(stream_ce(upsample_to(image, images[-1].shape)))
        aux[f'caption_ce/{image.shape[1]}px'] = lower_ce[-1]
    color_weight = config.loss.color_consistency
    total, g_aux = losses.generator_loss(
        adv, caption_ce, losses.kl_loss(mu, logvar), config.loss.stream_weight,
        config.loss.kl_weight, losses.color_consistency(images) if color_weight else None,
        color_weight, lower_ce, config.loss.stream_lower_weight)
    aux.update({k: g_aux[k] for k in ('caption_ce', 'kl', 'color_consistency')
                if k in g_aux})
    # How strongly the caption reaches G: CA mean against the CA noise's scale.
    # Mean squares here; the square roots after the device mean (global rms).
    aux['ca/mu_rms'] = jnp.mean(jnp.square(mu))
    aux['ca/sigma_rms'] = jnp.mean(jnp.exp(logvar))
    return total, (aux, stats)

  g_tx = _adam(config, config.optim.g_learning_rate)
  with jax.named_scope('G_update'):
    (g_loss, (g_aux, d_batch_stats)), out_grads = jax.value_and_grad(
        g_loss_fn, has_aux=True)(g_outputs)
    (g_grads,) = g_pullback(out_grads)
    g_grads = _mean(g_grads, axis_name)
    with jax.named_scope('adam'):
      g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params)
      g_params = optax.apply_updates(state.g_params, g_updates)
  with jax.named_scope('ema'):
    decay = ema_decay(config, state.step + 1)
    ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state.ema_g_params,
                       g_params)

  new_state = state.replace(
      step=state.step + 1, g_params=g_params, g_batch_stats=g_batch_stats,
      g_opt_state=g_opt_state, ema_g_params=ema, d_params=d_params,
      d_batch_stats=d_batch_stats, d_opt_state=d_opt_state)
  metrics = {'d_loss': d_loss, 'g_loss': g_loss, **d_aux, **g_aux,
             'g_grad_norm': optax.global_norm(g_grads),
             'd_grad_norm': optax.global_norm(d_grads),
             'g_learning_rate': jnp.asarray(config.optim.g_learning_rate),
             'd_learning_rate': jnp.asarray(config.optim.d_learning_rate)}
  metrics = _mean(metrics, axis_name)
  for key in ('ca/mu_rms', 'ca/sigma_rms'):
    metrics[key] = jnp.sqrt(metrics[key])
  return new_state, metrics


def real_caption_ce(models: factory.Models, end_token: bool, frozen: Frozen,
                    batch: dict[str, Any]) -> jax.Array:
  """The frozen captioner's token-mean cross-entropy on a batch of real images.

  Scores the final stage's real images with their captions, as `caption_ce`
  scores the generated ones: the level that `caption_ce` should approach.
  """
  ids, lengths = batch['caption_ids'], batch['caption_len']
  targets = losses.caption_target_lengths(lengths, ids.shape[1], end_token)
  final = max(d.image_size for d in models.discriminators.values())
  logits = models.captioner.apply(frozen.captioner, batch[batch_keys.image_key(final)],
                                  ids, targets, train=False)
  return losses.caption_loss(logits, ids, targets)


def make_train_step(config: ml_collections.ConfigDict, models: factory.Models,
                    frozen: Frozen, mesh: jax.sharding.Mesh | None = None
                    ) -> parallel.CompiledStep:
  """Compiles the GAN step for `config.parallel.mode` and binds the frozen nets.

  Args:
    config: experiment config.
    models: modules built by `factory.create_models` (with `bn_axis_name` =
      `parallel.PMAP_AXIS` for pmap mode).
    frozen: text encoder and captioner variables; placed on the devices once
      (replicated) and passed to the compiled step as an argument each call
      (`train_step.constants[0]`).
    mesh: the device mesh for 'jit' mode (default: all devices).
  Returns:
    train_step(state, host batch) -> (state, metrics of scalars, in both modes).
  """
  mode = config.parallel.mode
  axis_name = parallel.PMAP_AXIS if mode == 'pmap' else None
  return parallel.compile_step(functools.partial(_gan_step, config, models, axis_name),
                               mesh, constants=(frozen,), mode=mode)
