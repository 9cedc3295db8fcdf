"""Tests of `fast_init`: the one-program initialisation equals eager `init`."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax.infra import fast_init


class _Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Conv(4, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=False)(x)
    return nn.Dense(2)(x.mean(axis=(1, 2)))


def test_same_variables_as_eager_init():
  x = jnp.ones((2, 8, 8, 3))
  key = jax.random.PRNGKey(3)
  eager = _Net().init(key, x)
  compiled = fast_init.run(lambda k, inputs: _Net().init(k, inputs), key, x)
  assert jax.tree.structure(eager) == jax.tree.structure(compiled)
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(compiled)):
    np.testing.assert_array_equal(a, b)
  # A different key gives different weights (the key is an argument, not a constant).
  other = fast_init.run(lambda k, inputs: _Net().init(k, inputs), jax.random.PRNGKey(4), x)
  assert not np.array_equal(other['params']['Conv_0']['kernel'],
                            compiled['params']['Conv_0']['kernel'])
  # A closure over arrays (how the phases call it) gives the same variables too.
  closed = fast_init.run(lambda: _Net().init(key, x))
  np.testing.assert_array_equal(closed['params']['Dense_0']['kernel'],
                                eager['params']['Dense_0']['kernel'])
