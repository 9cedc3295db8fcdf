"""Max pooling over non-overlapping windows, with a gradient XLA:CPU runs fast.

`flax.linen.max_pool` lowers to `reduce_window`, whose gradient is XLA's
`select_and_scatter`. On CPU that runs as a loop over windows with index
arithmetic (`iota` kernels as large as the pooled input): in the shapes GAN
step, the 2x2 pools of STREAM's frozen small CNN took ~140 of ~475 ms of kernel
time per step (BENCHMARKS.md, section (h)). Where the windows do not overlap
(stride = window) the pool is a reshape and a max, and its gradient is a
handful of element-wise comparisons that XLA fuses.

`max_pool(x, window)` computes what `nn.max_pool(x, window, strides=window)`
computes (VALID padding: rows and columns beyond the last whole window are
dropped), bit for bit, and has the same gradient: each output's gradient goes
to the first maximum of its window in row-major order, as `select_and_scatter`
with `>=` picks it; ties do not split it.
"""

import functools

import jax
import jax.numpy as jnp


def _blocks(x: jax.Array, window: tuple[int, int]) -> jax.Array:
  """x [B, H, W, C] cropped to whole windows, as [B, H // kh, kh, W // kw, kw, C]."""
  b, h, w, c = x.shape
  kh, kw = window
  return x[:, :h // kh * kh, :w // kw * kw].reshape(b, h // kh, kh, w // kw, kw, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool(x: jax.Array, window: tuple[int, int]) -> jax.Array:
  """Max over non-overlapping `window` (kh, kw) patches of x [B, H, W, C].

  Returns [B, H // kh, W // kw, C], as `nn.max_pool(x, window, strides=window)`.
  """
  return jnp.max(_blocks(x, window), axis=(2, 4))


def _max_pool_fwd(x, window):
  return max_pool(x, window), x


def _first_max_masks(elements: list[jax.Array]) -> list[jax.Array]:
  """For each window element: is it the first maximum of its window?

  Element i is iff it is greater than every element before it and at least
  every element after it: pairwise comparisons only, so exactly one element
  of each (NaN-free) window is chosen, whatever the rounding of a recomputed max.
  """
  masks = []
  for i, e in enumerate(elements):
    mask = jnp.ones(e.shape, bool)
    for j, other in enumerate(elements):
      if j != i:
        mask &= (e > other) if j < i else (e >= other)
    masks.append(mask)
  return masks


def _max_pool_bwd(window, x, g):
  kh, kw = window
  zeros = jnp.zeros_like(g)
  blocks = _blocks(x, window)
  elements = [blocks[:, :, i, :, j] for i in range(kh) for j in range(kw)]
  routed = [jnp.where(m, g, zeros) for m in _first_max_masks(elements)]
  rows = [jnp.stack(routed[i * kw:(i + 1) * kw], axis=3) for i in range(kh)]
  b, hp, wp, c = g.shape
  dx = jnp.stack(rows, axis=2).reshape(b, hp * kh, wp * kw, c)
  pad = ((0, 0), (0, x.shape[1] - hp * kh), (0, x.shape[2] - wp * kw), (0, 0))
  return (jnp.pad(dx, pad).astype(x.dtype),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
