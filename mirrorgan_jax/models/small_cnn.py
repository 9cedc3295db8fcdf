"""The small CPU-sized CNN that both image encoders use when `backbone == 'small_cnn'`.

It stands in for Inception-v3 (DAMSM image encoder) and ResNet-152 (STREAM
captioner) in the shapes and smoke configs: a few 3x3 convolutions, each followed
by BatchNorm and ReLU, halving the map at every layer either by a stride of 2
('stride') or by a stride-1 convolution and a 2x2 max pool ('maxpool': 4x the
convolution FLOPs, but it keeps the detail of 10-pixel shapes, which the stride
drops). It has no pretrained weights, so unlike the big backbones it is trained
together with the encoder head.

Its global feature is the spatial mean of the last map ('mean', as the big
backbones' average pool), the whole last map flattened ('flatten'), or the
spatial max concatenated with the flattened map ('max_flatten'). A mean forgets
where things are, so a captioner on it cannot say 'on the left'; a flattened map
keeps where, but a shape must then be learnt at every place separately, which
the max (the same feature wherever the object is) spares.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models import max_pool

POOLINGS = ('mean', 'flatten', 'max_flatten')
DOWNSAMPLES = ('stride', 'maxpool')


class SmallCNN(nn.Module):
  """conv3x3 (no bias) -> BatchNorm -> ReLU, halving the map, once per width.

  Attributes:
    features: output channels of each layer, e.g. (32, 64, 128); the spatial
      size halves at every layer (PyTorch-style padding 1, so H -> ceil(H / 2)
      with 'stride'; H -> floor(H / 2) with 'maxpool').
    pooling: global feature, 'mean' (spatial mean), 'flatten' (the last map
      flattened, H' * W' * features[-1] values) or 'max_flatten' (the spatial
      max, then the flattened map: (1 + H' * W') * features[-1] values).
    downsample: 'stride' (stride-2 convolutions) or 'maxpool' (stride-1
      convolutions, each block ending in a 2x2 max pool).
    dtype: compute dtype; parameters stay float32.
    bn_axis_name: axis name for cross-device BatchNorm statistics, or None.
  """
  features: Sequence[int] = (32, 64, 128, 256)
  pooling: str = 'mean'
  downsample: str = 'stride'
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Runs the CNN.

    Args:
      images: [B, H, W, C] (any value range; no normalisation is applied).
      train: BatchNorm uses batch statistics (and updates its running ones).
    Returns:
      The last layer's map [B, H', W', features[-1]] (local / region features)
      and the global feature [B, features[-1]] ('mean'),
      [B, H' * W' * features[-1]] ('flatten') or [B, (1 + H' * W') * features[-1]]
      ('max_flatten'), in `dtype`.
    """
    if not self.features:
      raise ValueError('SmallCNN needs at least one layer width.')
    if self.pooling not in POOLINGS:
      raise ValueError(f'small CNN pooling must be one of {POOLINGS}, got {self.pooling!r}')
    if self.downsample not in DOWNSAMPLES:
      raise ValueError(f'small CNN downsample must be one of {DOWNSAMPLES}, '
                       f'got {self.downsample!r}')
    stride = 2 if self.downsample == 'stride' else 1
    x = images.astype(self.dtype)
    for i, width in enumerate(self.features):
      x = nn.Conv(width, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)),
                  use_bias=False, dtype=self.dtype,
                  kernel_init=nn.initializers.he_normal(), name=f'conv{i}')(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                       epsilon=1e-5, dtype=self.dtype,
                       axis_name=self.bn_axis_name, name=f'bn{i}')(x)
      x = nn.relu(x)
      if stride == 1:
        x = max_pool.max_pool(x, (2, 2))
    flat = x.reshape(x.shape[0], -1)
    if self.pooling == 'flatten':
      return x, flat
    if self.pooling == 'max_flatten':
      # A max pool over the whole map, not jnp.max: jnp.max's gradient divides by
      # the count of maxima, which XLA CPU without optimisations can find to be 0.
      peak = nn.max_pool(x, x.shape[1:3]).reshape(x.shape[0], -1)
      return x, jnp.concatenate([peak, flat], axis=-1)
    return x, jnp.mean(x, axis=(1, 2))
