"""Orthogonal initialisation (the reference `weights_init`) that is fast for large kernels.

`jax.nn.initializers.orthogonal` draws a Gaussian matrix Z ([rows, columns] of the
flattened kernel, the long side first) and keeps the Q of its Householder QR, signs
fixed so that R has a positive diagonal. On CPU that QR is slow for the paper
configs' largest discriminator kernels: D256's [4, 4, 1024, 2048] kernel at the CUB
widths is a [16384, 2048] QR, 137 GFLOP, 27-36 s on 2 loaded cores (BENCHMARKS.md,
section (j)).

`orthogonal` returns the same matrix, up to float32 rounding, from a Cholesky QR:
R = chol(ZᵀZ)ᵀ, Q = Z R⁻¹, a Gram matrix, a Cholesky factorisation and a triangular
solve (the [16384, 2048] case: 5-6 s on the same loaded cores; the two Qs differ by
at most 1.1e-7, and QᵀQ is the identity to 6e-7). Both factorisations give the
unique Q whose R has a positive diagonal, so only the rounding differs. Cholesky
squares Z's condition number, so it is used only where Z is tall (at least 4x as
many rows as columns: condition number about 3 for a Gaussian Z) and large (at
least 256 columns); elsewhere, and so for every kernel of the captioned_shapes
config, the values are `jax.nn.initializers.orthogonal`'s bit for bit.
"""

import math

import jax
import jax.numpy as jnp

# Z at least this many columns and this many times as tall as wide: Cholesky QR.
CHOLESKY_MIN_COLUMNS = 256
CHOLESKY_MIN_ASPECT = 4

_HOUSEHOLDER = jax.nn.initializers.orthogonal()


def _cholesky_qr(z: jax.Array) -> jax.Array:
  """Q of z = QR with R's diagonal positive, from the Cholesky factor of zᵀz."""
  lower = jnp.linalg.cholesky(z.T @ z)  # zᵀz = L Lᵀ, R = Lᵀ.
  # Q = z L⁻ᵀ, i.e. L Qᵀ = zᵀ.
  return jax.scipy.linalg.solve_triangular(lower, z.T, lower=True).T


def orthogonal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """A (semi-)orthogonal kernel: the columns of `shape`'s last axis (or the rows of
  the flattened rest, whichever are fewer) are orthonormal; equal to
  `jax.nn.initializers.orthogonal()(key, shape, dtype)` up to float32 rounding."""
  rows, columns = math.prod(shape[:-1]), shape[-1]
  long, short = max(rows, columns), min(rows, columns)
  if (len(shape) < 2 or jnp.dtype(dtype) != jnp.float32 or short < CHOLESKY_MIN_COLUMNS
      or long < CHOLESKY_MIN_ASPECT * short):
    return _HOUSEHOLDER(key, shape, dtype)
  z = jax.random.normal(key, (long, short), dtype)  # The draw of the Householder path.
  q = _cholesky_qr(z)
  return (q.T if rows < columns else q).reshape(shape)
