"""`orthogonal_init.orthogonal` against `jax.nn.initializers.orthogonal` (Householder)."""

import functools
import math

import jax
import numpy as np
import pytest

from configs import shapes
from mirrorgan_jax.models import factory
from mirrorgan_jax.models import orthogonal_init
from mirrorgan_jax.phases import gan_step

_HOUSEHOLDER = jax.nn.initializers.orthogonal()


def _no_householder(*args):
  raise AssertionError(f'Householder QR called for {args[1]}')


@pytest.mark.parametrize('shape', [(4, 4, 64, 256), (256, 1024)])
def test_large_tall_kernels_match_householder_without_running_it(shape, monkeypatch):
  key = jax.random.PRNGKey(7)
  want = np.asarray(_HOUSEHOLDER(key, shape))
  monkeypatch.setattr(orthogonal_init, '_HOUSEHOLDER', _no_householder)
  got = np.asarray(orthogonal_init.orthogonal(key, shape))
  assert got.shape == shape
  # The same Q (positive diagonal of R), computed another way: rounding apart.
  np.testing.assert_allclose(got, want, rtol=0, atol=5e-7)
  flat = got.reshape(-1, shape[-1])
  gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
  np.testing.assert_allclose(gram, np.eye(len(gram)), rtol=0, atol=3e-6)


@pytest.mark.parametrize('shape', [(3, 3, 16, 32), (2, 300), (300, 600), (17, 255)])
def test_small_or_square_kernels_are_householders_bit_for_bit(shape):
  # Fewer than 256 columns, or not 4x as tall as wide: Cholesky would square a
  # large condition number, so these keep the Householder values.
  key = jax.random.PRNGKey(3)
  np.testing.assert_array_equal(orthogonal_init.orthogonal(key, shape),
                                _HOUSEHOLDER(key, shape))


def test_no_shapes_config_kernel_reaches_the_cholesky_path():
  """So the quickstart's initial G and D are Householder's, bit for bit."""
  config = shapes.get_config()
  models = factory.create_models(config, 80)
  state = jax.eval_shape(functools.partial(gan_step.create_state, config, models),
                         jax.random.PRNGKey(0))
  kernels = [leaf.shape for path, leaf in
             jax.tree_util.tree_flatten_with_path((state.g_params, state.d_params))[0]
             if path[-1].key == 'kernel' and leaf.ndim >= 2]
  assert len(kernels) > 20
  shortest_sides = [min(math.prod(s[:-1]), s[-1]) for s in kernels]
  assert max(shortest_sides) < orthogonal_init.CHOLESKY_MIN_COLUMNS, kernels
