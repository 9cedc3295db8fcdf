"""Tests of `random_translation`: shifts and edge padding worked out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.phases import random_translation


def _ramp(size):
  """[1, size, size, 1] image whose pixel (i, j) holds 10 * i + j."""
  i, j = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  return jnp.asarray((10 * i + j)[None, :, :, None], jnp.float32)


def test_shift_down_left_with_edge_padding():
  image = _ramp(4)
  # Fractions 0.25 of 4 px: one pixel down (dy = +1), one pixel left (dx = -1).
  out = random_translation.translate(image, jnp.array([[0.25, -0.25]]), 0.25)[0, :, :, 0]
  expected = np.array([[1, 2, 3, 3],      # Row 0 repeats the old top row (edge).
                       [1, 2, 3, 3],      # Old row 0 moved down; column 3 is the edge.
                       [11, 12, 13, 13],
                       [21, 22, 23, 23]], np.float32)
  np.testing.assert_array_equal(out, expected)


def test_each_image_has_its_own_offset_and_scales_share_fractions():
  images = jnp.concatenate([_ramp(8), _ramp(8)])
  offsets = jnp.array([[0.0, 0.0], [-0.25, 0.0]])  # Second: 2 px up at 8 px.
  out = random_translation.translate(images, offsets, 0.25)[..., 0]
  np.testing.assert_array_equal(out[0], images[0, ..., 0])
  np.testing.assert_array_equal(out[1, :6], images[1, 2:, :, 0])
  np.testing.assert_array_equal(out[1, 6:], images[1, 7:8, :, 0].repeat(2, axis=0))
  # The same fraction at 16 px is 4 px.
  out16 = random_translation.translate(_ramp(16), offsets[1:], 0.25)[0, ..., 0]
  np.testing.assert_array_equal(out16[0], _ramp(16)[0, 4, :, 0])


def test_zero_fraction_is_identity_and_gradient_counts_copies():
  image = _ramp(4)
  offsets = jnp.array([[0.25, 0.0]])
  assert random_translation.translate(image, offsets, 0.0) is image
  grad = jax.grad(lambda x: random_translation.translate(x, offsets, 0.25).sum())(image)
  # Shifted down by one: the top row is used twice, the bottom row not at all.
  np.testing.assert_array_equal(grad[0, :, 0, 0], [2, 1, 1, 0])


def test_offsets_are_bounded_and_non_square_images_are_refused():
  offsets = random_translation.draw_offsets(jax.random.PRNGKey(0), 1000, 0.1)
  assert offsets.shape == (1000, 2)
  assert float(jnp.max(jnp.abs(offsets))) <= 0.1
  assert float(jnp.std(offsets)) > 0.04  # Uniform on [-0.1, 0.1]: std 0.058.
  with pytest.raises(ValueError, match='square'):
    random_translation.translate(jnp.zeros((1, 4, 6, 3)), jnp.zeros((1, 2)), 0.25)
