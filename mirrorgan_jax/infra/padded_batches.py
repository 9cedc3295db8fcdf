"""Runs a jitted image network over any number of images in fixed-size batches.

Evaluation and sampling networks (Inception-v3, the oracle, the generator and
the captioner) see every input set cut into batches of one size; the last one is
padded, so one compiled program serves every call, and the padding rows are
dropped from the outputs.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

RANGE_TOLERANCE = 1e-3  # [-1, 1] inputs may overshoot by float round-off.


def check_images(images: Any) -> None:
  """Raises ValueError unless `images` is float [N>0, H, W, 3] within [-1, 1]."""
  shape = tuple(np.shape(images))
  if len(shape) != 4 or shape[-1] != 3 or 0 in shape:
    raise ValueError(f'expected images [N>0, H, W, 3], got shape {shape}')
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f'expected float images in [-1, 1], got dtype {images.dtype} '
                     '(convert uint8 images with x / 127.5 - 1)')
  low, high = float(images.min()), float(images.max())
  if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
    raise ValueError(f'expected images in [-1, 1], got values in [{low:.4g}, {high:.4g}]')


def map_batches(fn: Callable[[Any], Any], rows: Any, batch_size: int) -> Any:
  """`fn` over `rows` in fixed-size batches; the outputs joined, in input order.

  The last batch is padded with copies of its first row (a real input, so the
  networks see nothing degenerate); the outputs of the padding are dropped.

  Args:
    fn: maps a batch (`rows`' structure, `batch_size` rows per leaf) to a
      pytree of arrays with a leading batch axis (typically a jitted network
      with its weights bound).
    rows: a numpy or jax array [N, ...], or a pytree of them with a common N >= 1.
    batch_size: rows per call of `fn`.
  Returns:
    The pytree of numpy arrays with N rows.
  """
  n, parts = jax.tree.leaves(rows)[0].shape[0], []
  for start in range(0, n, batch_size):
    index = np.arange(start, start + batch_size)
    index = np.where(index < n, index, start)
    parts.append(fn(jax.tree.map(lambda x, index=index: x[index], rows)))
  parts = jax.device_get(parts)
  return jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *parts)
