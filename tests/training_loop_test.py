"""The shared training loop: resume, NaN guard, summaries, profiler traces."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax import checkpointing
from mirrorgan_jax import training_loop


def _phase(num_steps, nan_at=None, **kw):
  """Gradient descent on (w - batch)^2 with batches 0, 1, 2, ... by step."""

  @jax.jit
  def step(state, batch):
    loss, grad = jax.value_and_grad(lambda w: jnp.sum((w - batch) ** 2))(state['w'])
    w = state['w'] - 0.1 * grad
    if nan_at is not None:
      w = jnp.where(state['step'] + 1 == nan_at, jnp.nan, w)
      loss = jnp.where(state['step'] + 1 == nan_at, jnp.nan, loss)
    return {'w': w, 'step': state['step'] + 1}, {'loss': loss}

  def batches(start):
    return (jnp.full((2,), float(i)) for i in itertools.count(start))

  return training_loop.Phase(
      name='toy', num_steps=num_steps,
      init_state=lambda: {'w': jnp.zeros((2,)), 'step': jnp.array(0)},
      train_step=step, batches=batches, **kw)


def test_resume_equals_uninterrupted(tmp_path):
  full = training_loop.run(_phase(7, checkpoint_every=3, log_every=2), tmp_path / 'a')
  training_loop.run(_phase(4, checkpoint_every=3, log_every=2), tmp_path / 'b')
  resumed = training_loop.run(_phase(7, checkpoint_every=3, log_every=2), tmp_path / 'b')
  np.testing.assert_array_equal(full['w'], resumed['w'])
  assert int(resumed['step']) == 7
  # Summaries were written for TensorBoard.
  assert list((tmp_path / 'a' / 'toy').glob('events.out.tfevents*'))


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
  with pytest.raises(training_loop.NonFiniteLossError, match='loss at step 5'):
    training_loop.run(_phase(10, nan_at=5, checkpoint_every=2, log_every=100), tmp_path)
  ckpt = checkpointing.Checkpointer(tmp_path / 'toy' / 'checkpoints')
  state, _, step = ckpt.restore({'w': jnp.zeros((2,)), 'step': jnp.array(0)})
  assert step == 4 and np.all(np.isfinite(state['w']))


def test_profiler_writes_a_trace(tmp_path):
  training_loop.run(_phase(4, profile_steps=(2, 3)), tmp_path)
  assert list((tmp_path / 'toy' / 'profile').rglob('*.xplane.pb'))
