"""Image grids for summaries and sample files: [-1, 1] float batches -> uint8 PNGs."""

import io

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[..., H, W, 3] floats in [-1, 1] -> uint8, as the reference ((x + 1) * 127.5)."""
  return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def upscale(images: np.ndarray, size: int) -> np.ndarray:
  """Nearest-neighbour upscaling of [N, h, w, C] to [N, size, size, C] (integer factor)."""
  factor = size // images.shape[1]
  if factor * images.shape[1] != size:
    raise ValueError(f'cannot upscale {images.shape[1]} px to {size} px by an integer factor')
  return images.repeat(factor, axis=1).repeat(factor, axis=2)


def stage_grid(stages: list[np.ndarray], pad: int = 2) -> np.ndarray:
  """One row per example, one column per stage, every stage shown at the largest size.

  Args:
    stages: per stage, uint8 [N, S_i, S_i, 3].
    pad: pixels of white between cells.
  Returns:
    uint8 [N * (S + pad) + pad, len(stages) * (S + pad) + pad, 3].
  """
  size = max(s.shape[1] for s in stages)
  cells = np.stack([upscale(s, size) for s in stages], axis=1)  # [N, stages, S, S, 3]
  return tile(cells, pad)


def tile(cells: np.ndarray, pad: int = 2) -> np.ndarray:
  """uint8 [rows, cols, S, S, C] -> one image with `pad` white pixels between cells."""
  rows, cols, h, w, c = cells.shape
  out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
  for r in range(rows):
    for k in range(cols):
      y, x = pad + r * (h + pad), pad + k * (w + pad)
      out[y:y + h, x:x + w] = cells[r, k]
  return out


def attention_overlays(images: np.ndarray, maps: np.ndarray) -> np.ndarray:
  """Attention maps drawn in red over their images.

  Args:
    images: uint8 [n, S, S, 3].
    maps: attention maps [n, T, h, w] (resized bilinearly to S x S).
  Returns:
    float32 [n, T, S, S, 3] in [0, 255]; each map is min-max normalised (a
    uniform map shows nothing).
  """
  n, size, cols = images.shape[0], images.shape[1], maps.shape[1]
  heat = np.asarray(jax.image.resize(jnp.asarray(maps, jnp.float32),
                                     (n, cols, size, size), 'bilinear'))
  low = heat.min(axis=(2, 3), keepdims=True)
  heat = (heat - low) / np.maximum(heat.max(axis=(2, 3), keepdims=True) - low, 1e-12)
  base = images[:, None].astype(np.float32)
  return base * (1.0 - 0.7 * heat[..., None]) + 0.7 * heat[..., None] * np.array(
      [255.0, 40.0, 0.0])


def attention_grid(images: np.ndarray, maps: np.ndarray, lengths: np.ndarray,
                   max_words: int) -> np.ndarray:
  """One row per image: the image, then its attention map over each word.

  Args:
    images: uint8 [n, S, S, 3].
    maps: word-attention maps [n, T, h, w] (attention over regions per word).
    lengths: [n] caption lengths; cells past a caption's end stay white.
    max_words: columns of maps shown.
  Returns:
    uint8 grid (see `image_grid.tile`) of `attention_overlays`.
  """
  cols = min(max_words, maps.shape[1])
  overlay = attention_overlays(images, maps[:, :cols])
  overlay = np.where((np.arange(cols)[None, :] < lengths[:, None])[..., None, None, None],
                     overlay, 255.0)
  cells = np.concatenate([images[:, None].astype(np.float32), overlay], axis=1)
  return tile(np.clip(np.rint(cells), 0, 255).astype(np.uint8))


def save_png(image: np.ndarray, path: epath.Path | str) -> None:
  """Writes a uint8 [H, W, 3] image as PNG (local path or gs://)."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  path.write_bytes(buffer.getvalue())
