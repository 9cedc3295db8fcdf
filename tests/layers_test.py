"""Tests of the shared building blocks (the fused upsample-convolution)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.models import layers


def _naive(x, kernel):
  """Upsample by repeating every pixel 2x2, then a padded 3x3 conv."""
  up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return jax.lax.conv_general_dilated(
      up, kernel, (1, 1), [(1, 1), (1, 1)], dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@pytest.mark.parametrize('shape', [(2, 4, 4, 3, 5), (1, 3, 5, 8, 2), (3, 1, 1, 4, 4)])
def test_upsample_conv_equals_conv_of_the_upsampled_input(shape):
  b, h, w, c, o = shape
  rng = np.random.default_rng(0)
  x = rng.standard_normal((b, h, w, c)).astype(np.float32)
  kernel = rng.standard_normal((3, 3, c, o)).astype(np.float32)
  got = layers.upsample_conv3x3(jnp.asarray(x), jnp.asarray(kernel))
  assert got.shape == (b, 2 * h, 2 * w, o)
  np.testing.assert_allclose(got, _naive(x, kernel), rtol=1e-5, atol=1e-5)


def test_upsample_conv_hand_computed_corner():
  """One channel, all-ones kernel: a corner output sums the 2x2 block it sees."""
  x = jnp.arange(4, dtype=jnp.float32).reshape(1, 2, 2, 1)  # [[0, 1], [2, 3]]
  out = layers.upsample_conv3x3(x, jnp.ones((3, 3, 1, 1)))[0, :, :, 0]
  # Upsampled [[0,0,1,1],[0,0,1,1],[2,2,3,3],[2,2,3,3]]; output (0,0) sums the
  # 2x2 top-left window (the rest is padding): 0; output (1,1) sums rows 0-2,
  # cols 0-2: 0+0+1 + 0+0+1 + 2+2+3 = 9; output (3,3): 3*4 = 12.
  assert float(out[0, 0]) == 0.0 and float(out[1, 1]) == 9.0 and float(out[3, 3]) == 12.0


def test_upsample_conv_gradients_match_the_naive_form():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((2, 3, 3, 4)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((3, 3, 4, 6)), jnp.float32)
  cot = jnp.asarray(rng.standard_normal((2, 6, 6, 6)), jnp.float32)

  def loss(f):
    return lambda x, k: jnp.sum(f(x, k) * cot)
  naive = jax.grad(loss(_naive), argnums=(0, 1))(x, kernel)
  fused = jax.grad(loss(layers.upsample_conv3x3), argnums=(0, 1))(x, kernel)
  for a, b in zip(fused, naive):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_upsample_conv_module_keeps_the_conv_parameter_layout():
  """Same parameter name, shape and initial values as nn.Conv under the same name."""
  x = jnp.ones((1, 4, 4, 3))
  fused = layers.UpsampleConv(8, name='conv')
  plain = layers.conv(8, 3, jnp.float32, 'conv')
  key = jax.random.PRNGKey(0)
  v_fused = fused.init(key, x)
  v_plain = plain.init(key, x)
  assert jax.tree.map(jnp.shape, v_fused) == jax.tree.map(jnp.shape, v_plain)
  np.testing.assert_array_equal(v_fused['params']['kernel'], v_plain['params']['kernel'])
