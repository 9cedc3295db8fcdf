"""GLAM: word-level (paper Eq. 4) and sentence-level (paper Eq. 5) attention.

Word attention (`WordAttention`) is AttnGAN's GlobalAttentionGeneral, as in
the authors' code, except:
- the padding mask is applied per example (mask[b] for every pixel of image
  b). The reference tiles the [B, T] mask so that pixel q of image b gets the
  mask of caption (b * H * W + q) mod B (AttnGAN#93); that bug is NOT
  reproduced. Padded words get exactly zero weight, and a caption with no
  real word gets zero context instead of NaN.
- layout only: words enter as [B, T, E] and the map is returned [B, H, W, T];
  the reference uses [B, E, T] and [B, T, H, W].

Sentence attention (`SentenceAttention`) has two variants:
- 'paper' (Eq. 5 as written, decisions.md §2): s' = V s_ca (Linear with bias),
  beta = softmax over the H*W positions, separately per channel, of f o s',
  att_s = s' o beta. Each channel's map sums to 1 over the image.
- 'reference' (the authors' GLAttentionGeneral, for their checkpoints): an
  extra learned 1x1 conv (no bias) on f o s' before the softmax, and the
  softmax runs over CHANNELS at each pixel (PyTorch's implicit-dim rule on a
  4-D tensor; a known bug per reference spec §10.5).
In both, s_ca is the conditioning-augmentation sample c (not the raw sentence).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models import layers

SENTENCE_VARIANTS = ('paper', 'reference')


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
  """Softmax over the last axis with `mask` (True = excluded) given weight 0.

  Excluded entries get exactly 0; a row with every entry excluded gets all
  zeros (not NaN). Computed in float32.
  """
  scores = jnp.where(mask, -jnp.inf, scores.astype(jnp.float32))
  peak = jnp.max(scores, axis=-1, keepdims=True)
  peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
  e = jnp.exp(scores - jax.lax.stop_gradient(peak))
  total = jnp.sum(e, axis=-1, keepdims=True)
  return e / jnp.where(total > 0, total, 1.0)


class WordAttention(nn.Module):
  """Word-context features att^w (paper Eq. 4).

  Attributes:
    features: image feature channels M (= ngf); words are projected to it.
    dtype: compute dtype; the softmax runs in float32.
  """
  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, words: jax.Array, mask: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
    """Attends from every pixel of `h` to the words.

    Args:
      h: image features [B, H, W, M].
      words: word features [B, T, E].
      mask: [B, T] bool, True at padding.
    Returns:
      context [B, H, W, M] = sum_t weight_t * U w_t, and the weights
      [B, H, W, T] float32 (sum 1 over real words, exactly 0 on padding).
    """
    if h.ndim != 4 or h.shape[-1] != self.features:
      raise ValueError(f'h must be [B, H, W, {self.features}], got {h.shape}')
    if words.ndim != 3 or mask.shape != words.shape[:2]:
      raise ValueError(
          f'expected words [B, T, E] and mask [B, T], got {words.shape} and '
          f'{mask.shape}')
    # U: the reference's 1x1 conv over words, i.e. a bias-free dense layer.
    projected = nn.Dense(
        self.features, use_bias=False, dtype=self.dtype,
        param_dtype=jnp.float32, kernel_init=layers.KERNEL_INIT,
        name='conv_context')(words.astype(self.dtype))  # [B, T, M]
    scores = jnp.einsum('bhwm,btm->bhwt', h.astype(self.dtype), projected)
    weights = masked_softmax(scores, mask[:, None, None, :])
    context = jnp.einsum('bhwt,btm->bhwm', weights.astype(self.dtype), projected)
    return context, weights


class SentenceAttention(nn.Module):
  """Sentence-context features att^s (paper Eq. 5 or the authors' variant).

  Attributes:
    features: image feature channels M (= ngf).
    variant: 'paper' (spatial softmax per channel) or 'reference' (extra 1x1
      conv, softmax over channels); see the module docstring.
    dtype: compute dtype; the softmax runs in float32.
  """
  features: int
  variant: str = 'paper'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, condition: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
    """Weights the projected sentence code by its agreement with `h`.

    Args:
      h: image features [B, H, W, M].
      condition: the conditioning-augmentation sample s_ca [B, D'].
    Returns:
      context [B, H, W, M] = s' o beta, and beta [B, H, W, M] float32
      ('paper': sums to 1 over H, W per channel; 'reference': over M per pixel).
    """
    if self.variant not in SENTENCE_VARIANTS:
      raise ValueError(
          f'variant must be one of {SENTENCE_VARIANTS}, got {self.variant!r}')
    if h.ndim != 4 or h.shape[-1] != self.features or condition.ndim != 2:
      raise ValueError(
          f'expected h [B, H, W, {self.features}] and condition [B, D], got '
          f'{h.shape} and {condition.shape}')
    # V: Linear(D' -> M) with bias (reference init: orthogonal weight, zero bias).
    s = nn.Dense(
        self.features, dtype=self.dtype, param_dtype=jnp.float32,
        kernel_init=layers.KERNEL_INIT, name='linear')(
            condition.astype(self.dtype))[:, None, None, :]  # [B, 1, 1, M]
    u = h.astype(self.dtype) * s
    if self.variant == 'paper':
      b, height, width, m = u.shape
      flat = u.reshape(b, height * width, m).astype(jnp.float32)
      beta = jax.nn.softmax(flat, axis=1).reshape(b, height, width, m)
    else:
      u = nn.Dense(
          self.features, use_bias=False, dtype=self.dtype,
          param_dtype=jnp.float32, kernel_init=layers.KERNEL_INIT,
          name='conv_sentence_vis')(u)
      beta = jax.nn.softmax(u.astype(jnp.float32), axis=-1)
    return s * beta.astype(self.dtype), beta
