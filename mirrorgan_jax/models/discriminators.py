"""One discriminator per image scale (reference spec §4: D_NET64/128/256).

Trunk for 64/128/256 px exactly as the reference: four conv4x4/2 layers
(ndf, 2, 4, 8 ndf; BatchNorm on all but the first; LeakyReLU 0.2), then for
128 px one more downBlock (16 ndf) and a conv3x3 back to 8 ndf, for 256 px two
downBlocks (16, 32 ndf) and conv3x3s to 16 and 8 ndf. The image code is
[B, 4, 4, 8 ndf]. Heads: unconditional conv4x4/4 (with bias) to one logit;
conditional: tile the raw sentence feature to 4x4, concat after the code,
conv3x3 + BN + LeakyReLU to 8 ndf, conv4x4/4 (with bias).

Departures from the reference:
- Logits are returned before the sigmoid (the reference returns
  probabilities); losses use log-sigmoid for stability.
- Images smaller than 64 px (the CPU configs) use log2(S / 4) stride-2 convs
  with the LAST widths of the 64-px trunk (32 px: 2, 4, 8 ndf; 16 px: 4, 8 ndf;
  8 px: 8 ndf), the first still without BatchNorm, so the code is again
  [B, 4, 4, 8 ndf]. Sizes above 256 continue the 128/256 pattern.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models import layers


def trunk_layout(image_size: int, ndf: int) -> list[tuple[int, int, bool]]:
  """The trunk's conv layers as (out_channels, kernel_size, use_bn), in order.

  Kernel 4 layers have stride 2, kernel 3 layers stride 1; all pad by 1.
  """
  steps = round(math.log2(image_size / 4)) if image_size >= 8 else 0
  if steps < 1 or 4 * 2**steps != image_size:
    raise ValueError(f'image_size must be 4 * 2**n with n >= 1, got {image_size}')
  down = min(steps, 4)  # The reference's x16 downsampler, shortened below 64 px.
  widths = [8 * ndf // 2**(down - 1 - i) for i in range(down)]
  out = [(w, 4, i > 0) for i, w in enumerate(widths)]
  extra = steps - down  # 1 for 128 px, 2 for 256 px.
  out += [(8 * ndf * 2**(j + 1), 4, True) for j in range(extra)]
  out += [(8 * ndf * 2**(extra - 1 - j), 3, True) for j in range(extra)]
  return out


class ConvBlock(nn.Module):
  """conv (4x4 stride 2, or 3x3 stride 1; pad 1; no bias) -> BN? -> LeakyReLU 0.2.

  Attributes:
    features: output channels.
    kernel_size: 4 (halves the size) or 3 (keeps it).
    use_bn: apply BatchNorm after the conv.
    dtype: compute dtype.
    bn_axis_name: axis for cross-device BatchNorm statistics.
  """
  features: int
  kernel_size: int
  use_bn: bool = True
  dtype: jnp.dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    stride = 2 if self.kernel_size == 4 else 1
    x = layers.conv(self.features, self.kernel_size, self.dtype, 'conv',
                    stride=stride)(x)
    if self.use_bn:
      x = layers.batch_norm(train, self.bn_axis_name, self.dtype, 'bn')(x)
    return nn.leaky_relu(x, 0.2)


class LogitHead(nn.Module):
  """conv4x4 stride 4 (no padding, with bias) to 1 channel: [B, 4, 4, C] -> [B] float32.

  Attributes:
    dtype: compute dtype.
  """
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.shape[1:3] != (4, 4):
      raise ValueError(f'expected a [B, 4, 4, C] code, got {x.shape}')
    fan_in = x.shape[-1] * 16
    x = layers.conv(1, 4, self.dtype, 'conv', stride=4, padding='VALID',
                    use_bias=True, bias_init=layers.torch_bias_init(fan_in))(x)
    return x.reshape(x.shape[0]).astype(jnp.float32)


class Discriminator(nn.Module):
  """D for one image size: image code, unconditional and conditional logits.

  Call `encode` once per image batch, then `uncond_logits` / `cond_logits`
  (e.g. with matched and with mismatched captions) without recomputing the
  trunk: `d.apply(variables, image, train, method='encode')`.

  Attributes:
    image_size: input side S (4 * 2**n, n >= 1; ref 64, 128, 256).
    ndf: base width (ref CUB 64).
    dtype: compute dtype; logits are float32.
    bn_axis_name: axis for cross-device BatchNorm statistics.
    sentence_rms: sentence features rescaled to this rms in the conditional
      head (0 = as given, the reference).
  """
  image_size: int
  ndf: int = 64
  dtype: jnp.dtype = jnp.float32
  bn_axis_name: str | None = None
  sentence_rms: float = 0.0

  def setup(self):
    self.trunk = [
        ConvBlock(f, k, bn, self.dtype, self.bn_axis_name)
        for f, k, bn in trunk_layout(self.image_size, self.ndf)]
    self.uncond_head = LogitHead(self.dtype)
    self.joint = ConvBlock(8 * self.ndf, 3, True, self.dtype, self.bn_axis_name)
    self.cond_head = LogitHead(self.dtype)

  def encode(self, image: jax.Array, train: bool = False) -> jax.Array:
    """Image code: [B, S, S, 3] in [-1, 1] -> [B, 4, 4, 8 ndf]."""
    if image.ndim != 4 or image.shape[1:] != (self.image_size,) * 2 + (3,):
      raise ValueError(
          f'image must be [B, {self.image_size}, {self.image_size}, 3], got '
          f'{image.shape}')
    x = image.astype(self.dtype)
    for block in self.trunk:
      x = block(x, train)
    return x

  def uncond_logits(self, code: jax.Array) -> jax.Array:
    """Unconditional logits [B] (pre-sigmoid) of a code [B, 4, 4, 8 ndf]."""
    return self.uncond_head(code.astype(self.dtype))

  def cond_logits(self, code: jax.Array, sentence: jax.Array,
                  train: bool = False) -> jax.Array:
    """Conditional logits [B] (pre-sigmoid) of a code and sentence features [B, D]."""
    if sentence.ndim != 2 or sentence.shape[0] != code.shape[0]:
      raise ValueError(
          f'sentence must be [{code.shape[0]}, D], got {sentence.shape}')
    if self.sentence_rms:
      sentence = layers.rescale_rms(sentence, self.sentence_rms)
    s = jnp.broadcast_to(sentence.astype(self.dtype)[:, None, None, :],
                         code.shape[:3] + sentence.shape[-1:])
    x = jnp.concatenate([code.astype(self.dtype), s], axis=-1)  # Code first.
    return self.cond_head(self.joint(x, train))

  def __call__(self, image: jax.Array, sentence: jax.Array,
               train: bool = False) -> dict[str, jax.Array]:
    """Scores images with their captions.

    Args:
      image: [B, S, S, 3] in [-1, 1].
      sentence: raw sentence features [B, D] (not the CA sample).
      train: BatchNorm uses (and updates) batch statistics.
    Returns:
      {'uncond': [B], 'cond': [B]} float32 logits.
    """
    code = self.encode(image, train)
    return {'uncond': self.uncond_logits(code),
            'cond': self.cond_logits(code, sentence, train)}
