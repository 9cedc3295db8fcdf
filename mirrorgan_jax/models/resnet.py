"""Bottleneck ResNet backbone with torchvision's layout (ResNet-152 for STREAM).

torchvision v1.5 layout: stem conv 7x7/2 -> BN -> ReLU -> max-pool 3x3/2 (pad 1),
then stages of bottleneck blocks (1x1 -> 3x3 with the stride -> 1x1 expanding
4x, projection shortcut where the shape changes), then global average pooling.
The classifier `fc` is left out: STREAM uses the pooled feature.

Flax names map to torchvision's as `conv1`, `bn1`, `layer{i}_{j}/conv1` ->
`layer{i}.{j}.conv1`, `layer{i}_{j}/downsample_conv` -> `layer{i}.{j}.downsample.0`
and `downsample_bn` -> `downsample.1` (`pretrained/vision_from_torch.py`).
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

RESNET152_STAGES = (3, 8, 36, 3)  # Bottleneck blocks per stage.
# torchvision's init (kaiming normal, fan_out); real use loads converted weights.
_KERNEL_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


@jax.custom_vjp
def residual_relu(y: jax.Array, x: jax.Array) -> jax.Array:
  """relu(y + x), written so that XLA:CPU computes it once per block.

  XLA:CPU's instruction fusion may duplicate a producer whose only full-size
  operand is one array (`max(z, 0)` is one) into each of its consumers. A block
  output `relu(y + x)` feeds the next block's convolution and its residual add,
  so each block's output fusion recomputed every earlier block of its stage:
  36 blocks of ResNet-152's third stage cost 36 * 37 / 2 passes instead of 36,
  forward and backward (BENCHMARKS.md, section (g)). `max(y, -x) + x` has two
  full-size operands, so XLA materialises it once; it is bit-for-bit relu(y + x)
  (for y > -x it is the same rounded sum, otherwise -x + x = 0). The backward
  pass is `jax.nn.relu`'s (gradient 0 where the output is 0), applied to the
  saved output for the same reason.
  """
  return jnp.maximum(y, -x) + x


def _residual_relu_fwd(y, x):
  out = residual_relu(y, x)
  return out, out


def _residual_relu_bwd(out, g):
  g = jnp.where(out > 0, g, jnp.zeros_like(g))
  return g, g


residual_relu.defvjp(_residual_relu_fwd, _residual_relu_bwd)


class Bottleneck(nn.Module):
  """One bottleneck block; output has 4 * `width` channels.

  Attributes:
    width: channels of the inner 1x1 / 3x3 convolutions.
    strides: stride of the 3x3 convolution and of the shortcut.
    dtype: compute dtype.
    bn_axis_name: axis name for cross-device BatchNorm, or None.
  """
  width: int
  strides: int = 1
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             kernel_init=_KERNEL_INIT)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                             axis_name=self.bn_axis_name)
    s = (self.strides, self.strides)
    y = nn.relu(norm(name='bn1')(conv(self.width, (1, 1), name='conv1')(x)))
    y = conv(self.width, (3, 3), strides=s, padding=((1, 1), (1, 1)), name='conv2')(y)
    y = nn.relu(norm(name='bn2')(y))
    y = norm(name='bn3')(conv(4 * self.width, (1, 1), name='conv3')(y))
    if self.strides != 1 or x.shape[-1] != 4 * self.width:
      x = conv(4 * self.width, (1, 1), strides=s, name='downsample_conv')(x)
      x = norm(name='downsample_bn')(x)
    return residual_relu(y, x)


class ResNet(nn.Module):
  """Bottleneck ResNet trunk with global average pooling (no classifier).

  Attributes:
    stage_sizes: blocks per stage; (3, 8, 36, 3) is ResNet-152, (3, 4, 6, 3)
      ResNet-50. Tests use tiny ones.
    width: channels of the stem and of the first stage's inner convs (64).
    dtype: compute dtype; parameters stay float32, the output is float32.
    bn_axis_name: axis name for cross-device BatchNorm, or None.
  """
  stage_sizes: Sequence[int] = RESNET152_STAGES
  width: int = 64
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    """Runs the trunk.

    Args:
      images: [B, H, W, 3], normalised as the weights expect (torchvision
        ImageNet weights: mean/std-normalised [0, 1] RGB).
      train: BatchNorm uses batch statistics (and updates its running ones).
    Returns:
      Pooled features [B, 4 * width * 2**(len(stage_sizes) - 1)] (2048 for
      ResNet-152), float32.
    """
    if images.ndim != 4:
      raise ValueError(f'ResNet expects [B, H, W, C] images, got {images.shape}')
    x = nn.Conv(self.width, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)),
                use_bias=False, dtype=self.dtype, kernel_init=_KERNEL_INIT,
                name='conv1')(images.astype(self.dtype))
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, axis_name=self.bn_axis_name, name='bn1')(x)
    x = nn.relu(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        x = Bottleneck(self.width * 2**i, strides=2 if i > 0 and j == 0 else 1,
                       dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                       name=f'layer{i + 1}_{j}')(x, train)
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
