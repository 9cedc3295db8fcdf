"""The small CPU-sized CNN that both image encoders use when `backbone == 'small_cnn'`.

It stands in for Inception-v3 (DAMSM image encoder) and ResNet-152 (STREAM
captioner) in the shapes and smoke configs: a few stride-2 3x3 convolutions,
each followed by BatchNorm and ReLU. It has no pretrained weights, so unlike the
big backbones it is trained together with the encoder head.

Its global feature is the spatial mean of the last map ('mean', as the big
backbones' average pool) or the whole last map flattened ('flatten'): a mean
forgets where things are, so a captioner on it cannot say 'on the left'.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

POOLINGS = ('mean', 'flatten')


class SmallCNN(nn.Module):
  """Stride-2 conv3x3 (no bias) -> BatchNorm -> ReLU, once per width.

  Attributes:
    features: output channels of each layer, e.g. (32, 64, 128); the spatial
      size halves at every layer (PyTorch-style padding 1, so H -> ceil(H / 2)).
    pooling: global feature, 'mean' (spatial mean) or 'flatten' (the last
      map flattened, H' * W' * features[-1] values).
    dtype: compute dtype; parameters stay float32.
    bn_axis_name: axis name for cross-device BatchNorm statistics, or None.
  """
  features: Sequence[int] = (32, 64, 128, 256)
  pooling: str = 'mean'
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
      and the global feature [B, features[-1]] ('mean') or
      [B, H' * W' * features[-1]] ('flatten'), in `dtype`.
    """
    if not self.features:
      raise ValueError('SmallCNN needs at least one layer width.')
    if self.pooling not in POOLINGS:
      raise ValueError(f'small CNN pooling must be one of {POOLINGS}, got {self.pooling!r}')
    x = images.astype(self.dtype)
    for i, width in enumerate(self.features):
      x = nn.Conv(width, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                  use_bias=False, dtype=self.dtype,
                  kernel_init=nn.initializers.he_normal(), name=f'conv{i}')(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                       epsilon=1e-5, dtype=self.dtype,
                       axis_name=self.bn_axis_name, name=f'bn{i}')(x)
      x = nn.relu(x)
    if self.pooling == 'flatten':
      return x, x.reshape(x.shape[0], -1)
    return x, jnp.mean(x, axis=(1, 2))
