"""Random image translation with edge padding: the augmentation of the GAN step.

Used (off by default: neither the paper nor the reference augment) in two
places of `gan_step`:
- before the frozen captioner (`loss.stream_translate`): a G that must please
  STREAM at any small shift of its image cannot do it with a pixel pattern
  tied to STREAM's stride-2 grid, only by drawing what STREAM reads;
- before every D (`loss.d_translate`, DiffAugment's translation, Zhao et al.
  2020): real, generated and wrong-caption inputs all move, so D cannot win by
  memorising pixel positions and G's gradient passes through the same shift.

Offsets are fractions of the image side, drawn once per image, so every scale of
a cascade moves its images by the same fraction (rounded to whole pixels).
Edge padding keeps the uniform backgrounds of the shapes data uniform.
"""

import jax
import jax.numpy as jnp


def draw_offsets(key: jax.Array, batch: int, max_fraction: float) -> jax.Array:
  """float32[batch, 2] (dy, dx), uniform in [-max_fraction, max_fraction]."""
  return jax.random.uniform(key, (batch, 2), minval=-max_fraction, maxval=max_fraction)


def translate(images: jax.Array, offsets: jax.Array, max_fraction: float) -> jax.Array:
  """Shifts each NHWC image by `offsets` (fractions of its side), edge-padded.

  Args:
    images: [B, H, W, C] with H == W.
    offsets: [B, 2] (dy, dx) from `draw_offsets` with the same `max_fraction`;
      positive moves the content down / right.
    max_fraction: bound of the offsets; sets the (static) padding.
  Returns:
    [B, H, W, C]: the translated images, differentiable w.r.t. `images`.
  """
  size = images.shape[1]
  if images.shape[2] != size:
    raise ValueError(f'translate expects square images, got {images.shape}')
  pad = int(round(max_fraction * size))
  if pad == 0:
    return images
  pixels = jnp.clip(jnp.round(offsets * size).astype(jnp.int32), -pad, pad)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='edge')

  def crop(image, shift):
    start = pad - shift  # Content moves by +shift: the window starts shift earlier.
    return jax.lax.dynamic_slice(image, (start[0], start[1], 0), (size, size, image.shape[-1]))

  return jax.vmap(crop)(padded, pixels)
