"""Runs a jitted image network over any number of images in fixed-size batches.

Evaluation networks (Inception-v3, the oracle) see every image set cut into
batches of one size; the last one is zero-padded, so one compiled program serves
every call, and the padding rows are dropped from the outputs.
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


def map_batches(fn: Callable[[jax.Array], Any], images: Any, batch_size: int) -> Any:
  """`fn` over `images` [N, ...] in zero-padded batches of `batch_size`.

  Args:
    fn: maps a batch [batch_size, ...] to a pytree of arrays with a leading
      batch axis (typically a jitted network with its weights bound).
    images: numpy or jax array [N, ...].
    batch_size: rows per call of `fn`.
  Returns:
    The pytree of numpy arrays with N rows, in input order.
  """
  n, parts = images.shape[0], []
  for start in range(0, n, batch_size):
    chunk = jnp.asarray(images[start:start + batch_size])
    pad = batch_size - chunk.shape[0]
    if pad:
      chunk = jnp.concatenate([chunk, jnp.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    parts.append(fn(chunk))
  parts = jax.device_get(parts)
  return jax.tree.map(lambda *rows: np.concatenate(rows)[:n], *parts)
