"""GLAM cascaded generator: CA, initial stage, refinement stages, image heads.

Paper Eq. 3: f_0 = F_0(z, s_ca); f_i = F_i(f_{i-1}, F_att_i(f_{i-1}, w, s_ca));
I_i = G_i(f_i). Layers follow reference spec §3 (authors' G_NET), NHWC.

The refinement stage F_i comes in three variants (`glam`):
- 'paper' (default): concat[f, att^w, att^s] (3 ngf channels, paper Eq. 3) ->
  ResBlocks(3 ngf) -> upBlock(3 ngf -> ngf), with att^s as paper Eq. 5 (spatial
  softmax per channel). Differs from the authors' code in: no 1x1 conv before
  the sentence softmax, softmax over positions instead of channels, and no 1x1
  fusion conv (96 -> 64) before the residual blocks, so the residual blocks run
  at 3 ngf channels (more parameters, see tests/generator_test.py).
- 'reference': the authors' NEXT_STAGE_G exactly (extra 1x1 conv, softmax over
  channels, concat -> 1x1 conv to 2 ngf -> ResBlocks(2 ngf) -> upBlock), so
  their checkpoints load and their numbers can be reproduced.
- 'word_only': AttnGAN's stage (concat[f, att^w] -> ResBlocks(2 ngf) ->
  upBlock), the paper's "w/o GA" ablation.
In every variant the word mask is applied per example (glam.py: AttnGAN#93 is
not reproduced).

Other departures from the reference:
- The initial stage runs log2(base_size / 4) upBlocks starting at
  ngf * 2**n channels (n = 4 and 16 ngf for base 64, as the reference), so the
  CPU-sized configs can start at 16 or 32 px. `initial_channels` sets that
  width independently of ngf (halving per upBlock, never below ngf, ending at
  ngf): at base 16 the reference rule gives a starved 4 ngf.
- `normalize_sentence` (off in the paper configs) scales each sentence feature
  vector to unit rms before CA, so the caption is not drowned by the unit CA
  noise when the text encoder's features are small.
- `word_rms` (0, off, in the paper configs) scales each word feature vector to
  that rms before GLAM, so the attention's sharpness and the word context's
  size do not depend on the scale at which DAMSM happened to leave its features
  (DAMSM's losses are cosine similarities, blind to scale).
- Images and attention maps are returned as float32 whatever the compute dtype.
- The sentence-attention maps beta are returned too (for visualisation, paper
  Fig. 5); the reference computes them and drops them.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models import conditioning
from mirrorgan_jax.models import glam as glam_lib
from mirrorgan_jax.models import layers

GLAM_VARIANTS = ('paper', 'reference', 'word_only')


def num_initial_upsamples(base_size: int) -> int:
  """Number n of upBlocks taking 4x4 to base_size (a power of two >= 4)."""
  n = round(math.log2(base_size / 4)) if base_size >= 4 else -1
  if n < 0 or 4 * 2**n != base_size:
    raise ValueError(f'base_size must be 4 * 2**n, got {base_size}')
  return n


class InitialStage(nn.Module):
  """F_0: [c, z] -> Linear -> BN1d -> GLU -> 4x4 -> n upBlocks -> [B, S, S, ngf].

  Attributes:
    ngf: output channels.
    base_size: output side S = 4 * 2**n.
    dtype: compute dtype.
    bn_axis_name: axis for cross-device BatchNorm statistics.
    initial_channels: channels at 4x4 (0 = the reference's ngf * 2**n); each
      upBlock halves them, never below ngf, and the last outputs ngf.
  """
  ngf: int
  base_size: int = 64
  dtype: jnp.dtype = jnp.float32
  bn_axis_name: str | None = None
  initial_channels: int = 0

  @nn.compact
  def __call__(self, condition: jax.Array, z: jax.Array,
               train: bool = False) -> jax.Array:
    """Maps the condition and noise to the first feature map.

    Args:
      condition: CA sample c [B, D'] (placed first, as the reference).
      z: noise [B, Z].
      train: BatchNorm uses (and updates) batch statistics.
    Returns:
      h [B, base_size, base_size, ngf].
    """
    n = num_initial_upsamples(self.base_size)
    channels = self.initial_channels or self.ngf * 2**n
    if channels < self.ngf:
      raise ValueError(f'initial_channels ({channels}) must be >= ngf ({self.ngf})')
    x = jnp.concatenate([condition, z], axis=-1).astype(self.dtype)  # c first.
    x = nn.Dense(
        channels * 16 * 2, use_bias=False, dtype=self.dtype,
        param_dtype=jnp.float32, kernel_init=layers.KERNEL_INIT, name='fc')(x)
    x = layers.glu(layers.batch_norm(train, self.bn_axis_name, self.dtype,
                                     'fc_bn')(x))
    # PyTorch's view(B, C, 4, 4) is channel-major; keep it so weights port.
    x = x.reshape(-1, channels, 4, 4).transpose(0, 2, 3, 1)
    for i in range(n):
      width = self.ngf if i == n - 1 else max(self.ngf, channels // 2**(i + 1))
      x = layers.UpBlock(width, self.dtype, self.bn_axis_name,
                         name=f'upsample{i + 1}')(x, train)
    return x


class RefinementStage(nn.Module):
  """F_i with GLAM: [B, H, W, ngf] -> [B, 2H, 2W, ngf] and the word attention.

  Attributes:
    ngf: feature channels M.
    num_res_blocks: residual blocks (ref R_NUM 2).
    glam: 'paper', 'reference' or 'word_only' (see the module docstring).
    dtype: compute dtype.
    bn_axis_name: axis for cross-device BatchNorm statistics.
  """
  ngf: int
  num_res_blocks: int = 2
  glam: str = 'paper'
  dtype: jnp.dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, h: jax.Array, condition: jax.Array, words: jax.Array,
               mask: jax.Array, train: bool = False
               ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Refines and upsamples `h`.

    Args:
      h: previous features [B, H, W, ngf].
      condition: CA sample c [B, D'].
      words: word features [B, T, E].
      mask: [B, T] bool, True at padding.
      train: BatchNorm uses batch statistics.
    Returns:
      h_next [B, 2H, 2W, ngf], word attention [B, H, W, T] float32, and the
      sentence attention beta [B, H, W, ngf] float32 (None for 'word_only').
    """
    if self.glam not in GLAM_VARIANTS:
      raise ValueError(f'glam must be one of {GLAM_VARIANTS}, got {self.glam!r}')
    h = h.astype(self.dtype)
    word_ctx, word_att = glam_lib.WordAttention(
        self.ngf, self.dtype, name='word_attention')(h, words, mask)
    parts, beta = [h, word_ctx], None
    if self.glam != 'word_only':
      sent_ctx, beta = glam_lib.SentenceAttention(
          self.ngf, self.glam, self.dtype, name='sentence_attention')(
              h, condition)
      parts.append(sent_ctx)
    x = jnp.concatenate(parts, axis=-1)
    if self.glam == 'reference':
      x = layers.conv(2 * self.ngf, 1, self.dtype, 'fusion', padding=0)(x)
    for i in range(self.num_res_blocks):
      x = layers.ResBlock(self.dtype, self.bn_axis_name, name=f'residual{i}')(
          x, train)
    x = layers.UpBlock(self.ngf, self.dtype, self.bn_axis_name,
                       name='upsample')(x, train)
    return x, word_att, beta


class Generator(nn.Module):
  """The full multi-stage generator G (CA + F_0 + GLAM stages + image heads).

  Attributes mirror `config.model.generator`:
    ngf: feature channels M (paper 32).
    z_dim: noise size (ref 100).
    condition_dim: CA size D' (paper 100).
    num_stages: number of images (paper 3).
    base_size: first image side (paper 64); stage i is base_size * 2**i.
    num_res_blocks: residual blocks per refinement stage (ref 2).
    glam: 'paper', 'reference' or 'word_only'.
    dtype: compute dtype; params stay float32.
    bn_axis_name: axis for cross-device BatchNorm statistics.
    initial_channels: F_0 width at 4x4 (0 = reference rule, see InitialStage).
    normalize_sentence: unit-rms sentence features into CA (see module doc).
    word_rms: word features rescaled to this rms for GLAM (0 = as given).
  """
  ngf: int = 32
  z_dim: int = 100
  condition_dim: int = 100
  num_stages: int = 3
  base_size: int = 64
  num_res_blocks: int = 2
  glam: str = 'paper'
  dtype: jnp.dtype = jnp.float32
  bn_axis_name: str | None = None
  initial_channels: int = 0
  normalize_sentence: bool = False
  word_rms: float = 0.0

  @nn.compact
  def __call__(self, z: jax.Array, sentence: jax.Array, words: jax.Array,
               word_mask: jax.Array | None = None,
               lengths: jax.Array | None = None, train: bool = False,
               eps: jax.Array | None = None) -> dict:
    """Generates one image per stage.

    Args:
      z: noise [B, z_dim].
      sentence: sentence features [B, D] (from the frozen text encoder).
      words: word features [B, T, E].
      word_mask: [B, T] bool, True at padding. Give this or `lengths`.
      lengths: caption lengths [B]; position t is padding when t >= lengths[b].
      train: BatchNorm uses (and updates) batch statistics.
      eps: CA noise [B, condition_dim]; drawn from the 'noise' rng if None.
    Returns:
      {'images': list of [B, S_i, S_i, 3] float32 in [-1, 1], S_i =
      base_size * 2**i; 'attention': list (one per refinement stage) of word
      attention maps [B, H_i, W_i, T]; 'sentence_attention': list of beta maps
      [B, H_i, W_i, ngf] (empty for 'word_only'); 'mu', 'logvar': [B, D']}.
    """
    if self.num_stages < 1:
      raise ValueError(f'num_stages must be >= 1, got {self.num_stages}')
    if z.ndim != 2 or z.shape[-1] != self.z_dim:
      raise ValueError(f'z must be [B, {self.z_dim}], got {z.shape}')
    if words.ndim != 3 or sentence.ndim != 2:
      raise ValueError(
          f'expected sentence [B, D] and words [B, T, E], got {sentence.shape}'
          f' and {words.shape}')
    if (word_mask is None) == (lengths is None):
      raise ValueError('give exactly one of word_mask and lengths')
    if word_mask is None:
      word_mask = jnp.arange(words.shape[1])[None, :] >= lengths[:, None]
    if word_mask.shape != words.shape[:2]:
      raise ValueError(
          f'word mask {word_mask.shape} does not match words {words.shape}')

    if self.normalize_sentence:
      sentence = layers.rescale_rms(sentence, 1.0)
    if self.word_rms:
      words = layers.rescale_rms(words, self.word_rms)
    c, mu, logvar = conditioning.ConditioningAugmentation(
        self.condition_dim, self.dtype, name='ca')(sentence, eps)
    h = InitialStage(self.ngf, self.base_size, self.dtype, self.bn_axis_name,
                     self.initial_channels, name='stage0')(c, z, train)
    images = [layers.ImageHead(self.dtype, name='image0')(h)]
    attention, sentence_attention = [], []
    for i in range(1, self.num_stages):
      h, att, beta = RefinementStage(
          self.ngf, self.num_res_blocks, self.glam, self.dtype,
          self.bn_axis_name, name=f'stage{i}')(h, c, words, word_mask, train)
      images.append(layers.ImageHead(self.dtype, name=f'image{i}')(h))
      attention.append(att)
      if beta is not None:
        sentence_attention.append(beta)
    return {'images': images, 'attention': attention,
            'sentence_attention': sentence_attention, 'mu': mu, 'logvar': logvar}
