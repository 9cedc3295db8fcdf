"""STEM text encoder: AttnGAN's DAMSM RNN_ENCODER (reference spec §1.3).

Embedding (U(-0.1, 0.1) init) -> dropout (training only) -> bidirectional
single-layer LSTM with packed-sequence semantics. Padded steps (t >= length)
are never read, so a padded batch gives exactly what each caption gives alone.

Departure from the reference: the outputs keep the input's T steps (the
reference pads to the longest length in the batch); callers slice if needed.
Layout is [B, T, D] (the reference returns words as [B, D, T]).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models import layers
from mirrorgan_jax.models import lstm


class TextEncoder(nn.Module):
  """Word and sentence features of tokenised captions.

  Attributes:
    vocab_size: number of tokens V (index 0 is padding).
    embedding_dim: word embedding size (ref 300).
    hidden_size: LSTM units per direction H (ref 128); features are 2H.
    dropout_rate: dropout on the embeddings when `train` (ref 0.5).
    dtype: compute dtype; parameters stay float32.
  """
  vocab_size: int
  embedding_dim: int = 300
  hidden_size: int = 128
  dropout_rate: float = 0.5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array, lengths: jax.Array,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Encodes captions.

    Args:
      tokens: int token ids [B, T]; entries at t >= lengths[b] are ignored.
      lengths: true caption lengths [B], each in [1, T].
      train: apply embedding dropout (needs the 'dropout' rng).
    Returns:
      words [B, T, 2H]: [forward h_t; backward h_t], exact zeros at padding;
      sentence [B, 2H]: [forward state after the last real token;
      backward state after reading token 0].
    """
    if tokens.ndim != 2 or lengths.shape != tokens.shape[:1]:
      raise ValueError(
          f'expected tokens [B, T] and lengths [B], got {tokens.shape} and '
          f'{lengths.shape}')
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise ValueError(f'tokens must be integers, got {tokens.dtype}')
    x = nn.Embed(
        self.vocab_size, self.embedding_dim, param_dtype=jnp.float32,
        embedding_init=layers.uniform_init(-0.1, 0.1), name='embedding')(tokens)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = x.astype(self.dtype)
    fwd, (_, h_fwd) = lstm.LSTM(
        self.hidden_size, dtype=self.dtype, name='forward_lstm')(x, lengths)
    bwd, (_, h_bwd) = lstm.LSTM(
        self.hidden_size, reverse=True, dtype=self.dtype,
        name='backward_lstm')(x, lengths)
    words = jnp.concatenate([fwd, bwd], axis=-1)
    sentence = jnp.concatenate([h_fwd, h_bwd], axis=-1)
    return words, sentence
