"""The GAN train step: updates, frozen networks, compiled-program arguments, devices."""

import json
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.phases import gan_step
from mirrorgan_jax.phases import losses
from mirrorgan_jax.models import factory
from tests import gan_fixtures
from tests.conftest import ROOT


def _setup(**overrides):
  config = gan_fixtures.smoke_config(**overrides)
  models = factory.create_models(config, gan_fixtures.VOCAB)
  frozen = gan_fixtures.random_frozen(config, models)
  state = gan_step.create_state(config, models, jax.random.PRNGKey(0))
  return config, models, frozen, state


def _leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope='module')
def default_step():
  """One compiled step of the smoke config (STREAM's random translation off, so the
  captioner terms can be computed by hand) from a fresh state: inputs and outputs.

  Shared by the tests below, so the module compiles this step once.
  """
  config, models, frozen, state = _setup(**{'loss.stream_translate': 0.0})
  batch = gan_fixtures.random_batch(config)
  state = jax.device_get(state)  # The step donates its input.
  frozen_before = jax.device_get(frozen)
  step = gan_step.make_train_step(config, models, frozen)
  new, metrics = step(step.place_state(state), batch)
  return types.SimpleNamespace(config=config, models=models, frozen=frozen, step=step,
                               state=state, batch=batch, new=jax.device_get(new),
                               metrics=jax.device_get(metrics), frozen_before=frozen_before)


def test_step_updates_g_d_ema_and_never_frozen(default_step):
  step, before = default_step.step, default_step.state
  state, metrics = step(step.place_state(default_step.new),
                        gan_fixtures.random_batch(default_step.config, 1))
  after = jax.device_get(state)
  metrics = jax.device_get(metrics)
  for key in ('d_loss', 'g_loss', 'caption_ce', 'kl', 'd_loss/d16', 'g_adv/d32',
              'g_grad_norm', 'd_grad_norm'):
    assert np.isfinite(metrics[key]), key
  assert int(after.step) == 2
  for name in ('g_params', 'd_params', 'g_batch_stats', 'd_batch_stats'):
    assert not _leaves_equal(getattr(before, name), getattr(after, name)), name
  # The second update's EMA decay is min(ema_decay, 3/12) (warmup; see below).
  assert default_step.config.optim.ema_warmup
  assert default_step.config.optim.ema_decay >= 3 / 12
  for e1, p2, e2 in zip(jax.tree.leaves(default_step.new.ema_g_params),
                        jax.tree.leaves(after.g_params), jax.tree.leaves(after.ema_g_params)):
    np.testing.assert_allclose(e2, 3 / 12 * e1 + 9 / 12 * p2, rtol=1e-5, atol=1e-7)
  # The frozen networks are bit-identical, on the host and on the devices.
  assert _leaves_equal(default_step.frozen_before, jax.device_get(default_step.frozen))
  assert _leaves_equal(default_step.frozen_before, jax.device_get(step.constants[0]))


def test_ema_warmup_by_hand(default_step):
  config = default_step.config.copy_and_resolve_references()
  config.optim.ema_decay = 0.5
  # min(0.5, (1 + n) / (10 + n)): 2/11 at n = 1, 3/12 at n = 2, 0.5 from n = 8.
  for n, want in ((1, 2 / 11), (2, 3 / 12), (8, 0.5), (100, 0.5)):
    assert float(gan_step.ema_decay(config, n)) == pytest.approx(want)
  config.optim.ema_warmup = False
  assert float(gan_step.ema_decay(config, 1)) == 0.5
  # The smoke config's first update (decay >= 2/11, warmup on) averages with 2/11.
  assert default_step.config.optim.ema_warmup
  assert default_step.config.optim.ema_decay >= 2 / 11
  after = default_step.new
  for e0, p1, e1 in zip(jax.tree.leaves(default_step.state.g_params),
                        jax.tree.leaves(after.g_params), jax.tree.leaves(after.ema_g_params)):
    np.testing.assert_allclose(e1, 2 / 11 * e0 + 9 / 11 * p1, rtol=1e-5, atol=1e-7)


def test_stream_gradient_reaches_generator(default_step):
  """lambda changes G's update (the smoke config's lambda against lambda = 0)."""
  assert default_step.config.loss.stream_weight > 0
  config, models, frozen, state = _setup(**{'loss.stream_weight': 0.0})
  assert _leaves_equal(jax.device_get(state.g_params), default_step.state.g_params)
  step = gan_step.make_train_step(config, models, frozen)
  new, _ = step(step.place_state(state), default_step.batch)
  assert not _leaves_equal(jax.device_get(new.g_params), default_step.new.g_params)


def test_upsample_to_by_hand():
  """2x bilinear (half-pixel centres): 3/4 of the nearest pixel, 1/4 of the next, edges held."""
  x = np.random.default_rng(3).normal(size=(2, 4, 4, 3)).astype(np.float32)
  padded = np.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
  rows = np.empty((2, 8, 4, 3), np.float32)
  rows[:, 0::2] = 0.75 * x + 0.25 * padded[:, :-2]
  rows[:, 1::2] = 0.75 * x + 0.25 * padded[:, 2:]
  padded = np.concatenate([rows[:, :, :1], rows, rows[:, :, -1:]], axis=2)
  want = np.empty((2, 8, 8, 3), np.float32)
  want[:, :, 0::2] = 0.75 * rows + 0.25 * padded[:, :, :-2]
  want[:, :, 1::2] = 0.75 * rows + 0.25 * padded[:, :, 2:]
  np.testing.assert_allclose(gan_step.upsample_to(jnp.asarray(x), (2, 8, 8, 3)), want,
                             rtol=1e-5, atol=1e-6)


def test_color_consistency_and_lower_stage_stream_terms_by_hand(default_step):
  """The optional G terms: from the smoke config's weights (colour consistency c, no
  lower-stage STREAM) to c + 1 and 5 (STREAM on the 16 px image of 16 / 32), g_loss
  grows by 1 x the logged colour consistency + 5 x the logged lower-stage CE, which is
  the captioner's CE on the upsampled 16 px image."""
  color = default_step.config.loss.color_consistency
  assert default_step.config.loss.stream_lower_weight == 0
  config, models, frozen, _ = _setup(**{
      'loss.stream_translate': 0.0, 'loss.color_consistency': color + 1.0,
      'loss.stream_lower_weight': 5.0, 'loss.stream_lower_stages': 1})
  batch = default_step.batch
  step = gan_step.make_train_step(config, models, frozen)
  metrics = jax.device_get(step(step.place_state(default_step.state), batch)[1])
  assert not any(k.startswith('caption_ce/') for k in default_step.metrics)
  ids, lengths = batch['caption_ids'], batch['caption_len']
  targets = losses.caption_target_lengths(lengths, ids.shape[1], True)
  images = _generated(config, models, frozen, default_step.state, batch)['images']
  up = gan_step.upsample_to(images[0], images[-1].shape)
  logits = models.captioner.apply(frozen.captioner, up, ids, targets)
  lower_ce = float(losses.caption_loss(logits, ids, targets))
  np.testing.assert_allclose(metrics['caption_ce/16px'], lower_ce, rtol=1e-4)
  assert float(metrics['color_consistency']) > 0
  np.testing.assert_allclose(metrics['color_consistency'],
                             default_step.metrics['color_consistency'], rtol=1e-6)
  np.testing.assert_allclose(
      metrics['g_loss'] - default_step.metrics['g_loss'],
      float(metrics['color_consistency']) + 5.0 * lower_ce, rtol=1e-4)
  config.loss.stream_lower_stages = 2
  with pytest.raises(ValueError, match=r'only 1 stage\(s\) below'):
    gan_step.lower_stream_images(config, images)


def _generated(config, models, frozen, state, batch):
  """G's outputs in the step from `state` on `batch` (the step's z and CA noise)."""
  ids, lengths = batch['caption_ids'], batch['caption_len']
  z_key, eps_key = jax.random.split(jax.random.fold_in(state.rng, state.step))
  words, sentence = models.text_encoder.apply(frozen.text_encoder, ids, lengths)
  g = config.model.generator
  return models.generator.apply(
      {'params': state.g_params, 'batch_stats': state.g_batch_stats},
      jax.random.normal(z_key, (len(ids), g.z_dim)), sentence, words, lengths=lengths,
      train=True, eps=jax.random.normal(eps_key, (len(ids), g.condition_dim)),
      mutable=['batch_stats'])[0]


def test_learning_diagnostics_by_hand(default_step):
  """real_caption_ce is the captioner's CE on the real images; CA rms from G's outputs."""
  config, models, frozen = default_step.config, default_step.models, default_step.frozen
  batch, metrics = default_step.batch, default_step.metrics
  assert 'caption_ce_real' not in metrics  # A constant of the data: not per step.
  ids, lengths = batch['caption_ids'], batch['caption_len']
  targets = losses.caption_target_lengths(lengths, ids.shape[1], True)
  final = max(d.image_size for d in models.discriminators.values())
  logits = models.captioner.apply(frozen.captioner, batch[f'image_{final}'], ids, targets)
  np.testing.assert_allclose(float(gan_step.real_caption_ce(models, True, frozen, batch)),
                             float(losses.caption_loss(logits, ids, targets)), rtol=1e-5)
  out = _generated(config, models, frozen, default_step.state, batch)
  np.testing.assert_allclose(float(metrics['ca/mu_rms']),
                             np.sqrt(np.mean(np.square(out['mu']))), rtol=1e-4)
  np.testing.assert_allclose(float(metrics['ca/sigma_rms']),
                             np.sqrt(np.mean(np.exp(out['logvar']))), rtol=1e-4)


def test_frozen_params_are_arguments_not_constants():
  """The compiled program takes the frozen variables as inputs; it bakes none in."""
  sizes = {}
  for hidden in (16, 128):
    config, models, frozen, state = _setup(**{'model.captioner.hidden_size': hidden})
    step = gan_step.make_train_step(config, models, frozen)
    batch = gan_fixtures.random_batch(config)
    jaxpr = jax.make_jaxpr(lambda s, f, b: gan_step._gan_step(config, models, None, s, f, b))(
        state, frozen, batch)
    big_consts = [c for c in jaxpr.consts if np.size(c) > 64]
    assert not big_consts, [np.shape(c) for c in big_consts]
    n_frozen = len(jax.tree.leaves(frozen))
    assert len(jaxpr.jaxpr.invars) >= n_frozen
    text = step.lower(step.place_state(state), batch).as_text()
    sizes[hidden] = (len(text), sum(np.size(x) for x in jax.tree.leaves(frozen.captioner)))
  (text16, params16), (text128, params128) = sizes[16], sizes[128]
  assert params128 > 4 * params16
  # Parameter values would add at least several characters each; shapes alone add few.
  assert abs(text128 - text16) < 0.05 * text16


@pytest.mark.slow  # `make test-slow`: bfloat16 layers run in CI (generator_test, oracle_test).
def test_bfloat16_compute_runs():
  config, models, frozen, state = _setup(**{'model.compute_dtype': 'bfloat16'})
  step = gan_step.make_train_step(config, models, frozen)
  state, metrics = step(step.place_state(state), gan_fixtures.random_batch(config))
  assert all(np.isfinite(float(v)) for v in jax.device_get(metrics).values())
  assert jax.tree.leaves(state.g_params)[0].dtype == jnp.float32


def test_eight_devices_match_one_device():
  """jit over an 8-device Mesh and pmap on 8 devices equal one device (subprocess)."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-m', 'tests.multi_device_check'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['devices'] == 8
  for mode in ('jit', 'pmap'):
    assert result[mode]['max_metric_diff'] < 1e-5, result
    assert result[mode]['max_param_diff'] < 1e-5, result
