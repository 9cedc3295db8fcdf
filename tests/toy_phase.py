"""A toy training phase (gradient descent on (w - batch)^2) for training-loop tests.

Run as a script (`python -m tests.toy_phase WORKDIR STEPS`) it trains slowly and
prints each batch index, so a test can signal it mid-run.
"""

import itertools
import sys
import time

import jax
import jax.numpy as jnp

from mirrorgan_jax.phases import runner


def make_phase(num_steps, nan_at=None, delay=0.0, **kw):
  """Batches 0, 1, 2, ... by step; `nan_at` poisons that step; `delay` slows batches."""

  @jax.jit
  def step(state, batch):
    loss, grad = jax.value_and_grad(lambda w: jnp.sum((w - batch) ** 2))(state['w'])
    w = state['w'] - 0.1 * grad
    if nan_at is not None:
      w = jnp.where(state['step'] + 1 == nan_at, jnp.nan, w)
      loss = jnp.where(state['step'] + 1 == nan_at, jnp.nan, loss)
    return {'w': w, 'step': state['step'] + 1}, {'loss': loss}

  def batches(start):
    for i in itertools.count(start):
      if delay:
        time.sleep(delay)
        print(f'batch {i}', flush=True)
      yield jnp.full((2,), float(i))

  return runner.Phase(
      name='toy', num_steps=num_steps,
      init_state=lambda: {'w': jnp.zeros((2,)), 'step': jnp.array(0)},
      train_step=step, batches=batches, **kw)


if __name__ == '__main__':
  runner.run(make_phase(int(sys.argv[2]), delay=0.2, checkpoint_every=10_000),
                    sys.argv[1])
