"""Runs two GAN steps on one device and on 8 devices (jit Mesh and pmap); prints JSON diffs.

Run with XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/gan_step_test.py).
"""

import functools
import json
import sys

import jax
import numpy as np

from mirrorgan_jax.phases import gan_step
from mirrorgan_jax.infra import parallel
from mirrorgan_jax.models import factory
from tests import gan_fixtures


def _reference(config, batches):
  """The same steps on one device, no mesh, no collectives: (state, metrics)."""
  models = factory.create_models(config, gan_fixtures.VOCAB)
  frozen = gan_fixtures.random_frozen(config, models)
  single = jax.jit(functools.partial(gan_step._gan_step, config, models, None))
  state = gan_step.create_state(config, models, jax.random.PRNGKey(0))
  for b in batches:
    state, metrics = single(state, frozen, b)
  return jax.device_get((state, metrics))


# Random translations on, so the per-device slices of their offsets are checked too.
AUGMENT = {'loss.d_translate': 0.25, 'loss.stream_translate': 0.25}


def _parallel(mode, batches):
  """The steps through `make_train_step` in `mode` on every device: (state, metrics)."""
  config = gan_fixtures.smoke_config(**{'parallel.mode': mode}, **AUGMENT)
  axis = parallel.PMAP_AXIS if mode == 'pmap' else None
  models = factory.create_models(config, gan_fixtures.VOCAB, bn_axis_name=axis)
  frozen = gan_fixtures.random_frozen(config, models)
  step = gan_step.make_train_step(config, models, frozen)
  state = step.place_state(gan_step.create_state(config, models, jax.random.PRNGKey(0)))
  for b in batches:
    state, metrics = step(state, b)
  # One value per metric (pmap: this process's first copy, shape [1]), not one per device.
  assert all(np.size(v) == 1 for v in metrics.values()), 'metrics must be one value each'
  if mode == 'pmap':
    state = parallel.unreplicate(state)
  return jax.device_get((state, metrics))


def run(modes) -> dict:
  """{'devices': n, mode: {'max_metric_diff' (relative), 'max_param_diff'} per mode}."""
  config = gan_fixtures.smoke_config(**AUGMENT)
  batches = [gan_fixtures.random_batch(config, seed) for seed in range(2)]
  ref, ref_metrics = _reference(config, batches)
  result = {'devices': jax.device_count()}
  for mode in modes:
    state, metrics = _parallel(mode, batches)
    result[mode] = {
        # Relative to the metric's size (at least 1): g_loss is ~90, where float32
        # summation order alone moves the 5th decimal.
        'max_metric_diff': max(abs(float(ref_metrics[k]) - float(np.asarray(metrics[k]).reshape(())))
                               / max(1.0, abs(float(ref_metrics[k]))) for k in ref_metrics),
        'max_param_diff': max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                              for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(state)))}
  return result


if __name__ == '__main__':
  print(json.dumps(run(sys.argv[1:] or ('jit', 'pmap'))))
