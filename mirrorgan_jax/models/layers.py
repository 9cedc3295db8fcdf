"""Building blocks shared by the generator and the discriminators (NHWC).

Blocks follow the authors' code (reference spec §3.1): convolutions have no
bias, BatchNorm uses PyTorch's defaults (momentum 0.1, eps 1e-5) and GLU halves
the channel axis as `first_half * sigmoid(second_half)`. Initialisers follow
the reference `weights_init` (spec §3.6): orthogonal conv and linear weights
(gain 1), linear biases 0, BatchNorm scale ~ N(1, 0.02) and bias 0.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models import orthogonal_init

Initializer = Callable[..., jax.Array]
Dtype = Any

# PyTorch's `orthogonal_` flattens a conv weight to [out, in*kh*kw]; Flax
# flattens [kh, kw, in, out] to [kh*kw*in, out]. Both draw a (semi-)orthogonal
# matrix of the same size, so the distributions agree up to a row permutation.
# `orthogonal_init.orthogonal` is `nn.initializers.orthogonal()`, fast for the
# paper configs' large kernels.
KERNEL_INIT = orthogonal_init.orthogonal


def bn_scale_init(key: jax.Array, shape: tuple[int, ...],
                  dtype: Dtype = jnp.float32) -> jax.Array:
  """BatchNorm scale ~ N(1, 0.02), as the reference `weights_init`."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def uniform_init(low: float, high: float) -> Initializer:
  """U(low, high), e.g. PyTorch's default bias or the embedding init."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, low, high)

  return init


def torch_bias_init(fan_in: int) -> Initializer:
  """PyTorch's default bias init for conv/linear layers: U(+-1/sqrt(fan_in))."""
  bound = 1.0 / fan_in**0.5
  return uniform_init(-bound, bound)


def rescale_rms(x: jax.Array, rms: float) -> jax.Array:
  """Each vector (last axis) of `x` scaled to root-mean-square `rms` (zeros stay ~0)."""
  return x * (rms * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-8))


def glu(x: jax.Array) -> jax.Array:
  """Gated linear unit on the channel (last) axis: [..., 2C] -> a * sigmoid(b) [..., C]."""
  if x.shape[-1] % 2:
    raise ValueError(f'GLU needs an even channel count, got shape {x.shape}')
  a, b = jnp.split(x, 2, axis=-1)
  return a * jax.nn.sigmoid(b)


# Taps of a 3x3 kernel (along one axis) seen by output phase a of a nearest x2
# upsampling: output row 2i+a reads upsampled rows 2i+a-1 .. 2i+a+1, i.e. input
# rows (i-1, i, i) for a = 0 and (i, i, i+1) for a = 1. _PHASE_TAPS[a] maps the
# kernel's 3 taps onto the 2 input rows (i-1+a, i+a) of a 2-tap kernel.
_PHASE_TAPS = (((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)),
               ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0)))


def upsample_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """conv3x3 (padding 1, no bias) of the nearest x2 upsampling of `x`, without it.

  Equals the padded conv3x3 of `x` with every pixel repeated 2x2 (nearest x2
  upsampling), up to float summation order: each
  of the 4 output phases (row and column parity) is a 2x2 convolution of the
  zero-padded input with folded taps, and the phases are interleaved. That is
  4/9 of the multiply-adds, and neither pass materialises the 4x larger
  upsampled input; on XLA:CPU the forward and backward of the GAN's up-blocks
  run 1.5-3x faster (BENCHMARKS.md).

  Args:
    x: [B, H, W, C].
    kernel: [3, 3, C, O] (HWIO), in x's dtype.
  Returns:
    [B, 2H, 2W, O].
  """
  b, h, w, _ = x.shape
  taps = jnp.asarray(_PHASE_TAPS, kernel.dtype)  # [phase, new tap, old tap]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = []
  for a in range(2):
    cols = []
    for c in range(2):
      folded = jnp.einsum('st,uv,tvio->suio', taps[a], taps[c], kernel)
      cols.append(jax.lax.conv_general_dilated(
          padded[:, a:a + h + 1, c:c + w + 1], folded, (1, 1), 'VALID',
          dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
    rows.append(jnp.stack(cols, axis=3))  # [B, H, W, col phase, O]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, kernel.shape[-1])


class UpsampleConv(nn.Module):
  """Nearest x2 then conv3x3 (no bias), computed by `upsample_conv3x3`.

  Its parameter is an `nn.Conv` kernel ([3, 3, C, features], same initialiser and
  name), so checkpoints and converted weights are those of `conv(...)`.

  Attributes:
    features: output channels.
    dtype: compute dtype (the kernel stays float32).
  """
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', KERNEL_INIT, (3, 3, x.shape[-1], self.features),
                        jnp.float32)
    return upsample_conv3x3(x.astype(self.dtype), kernel.astype(self.dtype))


def batch_norm(train: bool, axis_name: str | None, dtype: Dtype,
               name: str) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults and the reference initialisation.

  Must be called inside a compact method (the module binds to the caller).
  """
  return nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5,
      axis_name=axis_name, dtype=dtype, param_dtype=jnp.float32,
      scale_init=bn_scale_init, name=name)


def conv(features: int, kernel_size: int, dtype: Dtype, name: str,
         stride: int = 1, padding: int | str = 1, use_bias: bool = False,
         bias_init: Initializer = nn.initializers.zeros) -> nn.Conv:
  """Square conv with an orthogonal kernel and PyTorch-style symmetric padding.

  Args:
    features: output channels.
    kernel_size: side of the square kernel.
    dtype: compute dtype (parameters stay float32).
    name: submodule name.
    stride: spatial stride.
    padding: pixels added on every side (PyTorch's `padding`), or 'VALID'.
    use_bias: add a bias (the reference convs have none, except D's logits).
    bias_init: initialiser of the bias.
  Returns:
    The `nn.Conv` module (call it on [B, H, W, C]).
  """
  pad = padding if isinstance(padding, str) else [(padding, padding)] * 2
  return nn.Conv(
      features, (kernel_size, kernel_size), strides=(stride, stride),
      padding=pad, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
      kernel_init=KERNEL_INIT, bias_init=bias_init, name=name)


class UpBlock(nn.Module):
  """Nearest x2 -> conv3x3 (to 2 features) -> BN -> GLU: [B,H,W,C] -> [B,2H,2W,features].

  Attributes:
    features: output channels.
    dtype: compute dtype.
    bn_axis_name: axis for cross-device BatchNorm statistics.
  """
  features: int
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = UpsampleConv(2 * self.features, self.dtype, name='conv')(x)
    x = batch_norm(train, self.bn_axis_name, self.dtype, 'bn')(x)
    return glu(x)


class ResBlock(nn.Module):
  """conv3x3 (C -> 2C) -> BN -> GLU -> conv3x3 (C -> C) -> BN, plus the input.

  No activation after the addition (reference). Channels C come from the input.

  Attributes:
    dtype: compute dtype.
    bn_axis_name: axis for cross-device BatchNorm statistics.
  """
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    channels = x.shape[-1]
    x = x.astype(self.dtype)
    y = conv(2 * channels, 3, self.dtype, 'conv1')(x)
    y = glu(batch_norm(train, self.bn_axis_name, self.dtype, 'bn1')(y))
    y = conv(channels, 3, self.dtype, 'conv2')(y)
    y = batch_norm(train, self.bn_axis_name, self.dtype, 'bn2')(y)
    return x + y


class ImageHead(nn.Module):
  """conv3x3 (no bias) to RGB, then tanh: [B,H,W,ngf] -> [B,H,W,3] float32 in [-1, 1].

  Attributes:
    dtype: compute dtype (the image is returned as float32).
  """
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = conv(3, 3, self.dtype, 'conv')(x.astype(self.dtype))
    return jnp.tanh(x.astype(jnp.float32))
