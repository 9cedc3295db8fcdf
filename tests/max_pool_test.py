"""Tests of models/max_pool.py: values and gradients of the non-overlapping max pool.

References: windows enumerated by hand on small arrays (which element is the
first maximum of its row-major window), `flax.linen.max_pool` (XLA's
reduce_window and select_and_scatter) on random inputs with many ties, and the
numpy max pool of resnet_test (PyTorch's max_pool2d written out).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.models import max_pool
from tests import resnet_test


def _pool(x):
  return max_pool.max_pool(x, (2, 2))


def test_value_and_gradient_by_hand():
  # One 2x2 window per case, [1, 2, 2, 1]; the gradient goes to the first
  # maximum in row-major order (top-left, top-right, bottom-left, bottom-right).
  cases = {
      (1., 3., 3., 2.): (3., (0, 1, 0, 0)),  # tie of 3s: the top-right one
      (5., 5., 5., 5.): (5., (1, 0, 0, 0)),  # all equal: the first
      (0., -1., 2., 2.): (2., (0, 0, 1, 0)),
      (-4., -3., -2., -1.): (-1., (0, 0, 0, 1)),
  }
  for window, (peak, routed) in cases.items():
    x = jnp.asarray(window, jnp.float32).reshape(1, 2, 2, 1)
    assert float(_pool(x)[0, 0, 0, 0]) == peak
    grad = jax.grad(lambda v: 7.0 * jnp.sum(_pool(v)))(x)
    np.testing.assert_array_equal(np.asarray(grad).reshape(4), 7.0 * np.array(routed))


@pytest.mark.parametrize('shape', [(3, 8, 8, 5), (2, 9, 7, 3)])  # even and odd sides
def test_matches_flax_max_pool_with_ties(shape):
  # Integer-valued inputs in a small range: most windows hold ties.
  x = jnp.round(2 * jax.random.normal(jax.random.PRNGKey(0), shape))
  weights = jax.random.normal(jax.random.PRNGKey(1), (shape[0], shape[1] // 2,
                                                      shape[2] // 2, shape[3]))
  ref = nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(_pool(x), ref)
  np.testing.assert_array_equal(
      max_pool.max_pool(x.astype(jnp.bfloat16), (2, 2)), ref.astype(jnp.bfloat16))
  grad = jax.grad(lambda v: jnp.sum(_pool(v) * weights))(x)
  ref_grad = jax.grad(lambda v: jnp.sum(nn.max_pool(v, (2, 2), strides=(2, 2)) * weights))(x)
  np.testing.assert_array_equal(grad, ref_grad)
  if shape[1] % 2:  # The dropped last row gets no gradient.
    assert not np.any(np.asarray(grad)[:, -1])


def test_other_windows_match_numpy():
  x = np.random.default_rng(0).normal(size=(4, 12, 9, 3)).astype(np.float32)
  for window in ((3, 3), (4, 3), (1, 2)):
    out = max_pool.max_pool(jnp.asarray(x), window)
    if window[0] == window[1]:
      # resnet_test's numpy pool is NCHW with square windows.
      ref = resnet_test.np_max_pool(x.transpose(0, 3, 1, 2), window[0], window[0])
      np.testing.assert_array_equal(out, ref.transpose(0, 2, 3, 1))
    ref = nn.max_pool(jnp.asarray(x), window, strides=window)
    np.testing.assert_array_equal(out, ref)
    grad = jax.grad(lambda v: jnp.sum(max_pool.max_pool(v, window) ** 2))(jnp.asarray(x))
    ref_grad = jax.grad(lambda v: jnp.sum(nn.max_pool(v, window, strides=window) ** 2))(
        jnp.asarray(x))
    np.testing.assert_array_equal(grad, ref_grad)
