"""A single-layer LSTM with PyTorch's parameter layout and packed-sequence semantics.

Gates are stacked (input, forget, cell, output) and two biases are added, as in
`torch.nn.LSTM`, so converted weights load without reordering. Steps at or past
a sequence's length neither change the state nor produce output (zeros), which
is what PyTorch's packed sequences compute; `reverse=True` reads each sequence
backwards from its own last real token.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

Carry = tuple[jax.Array, jax.Array]  # (c, h), each [B, H].


def reverse_within_length(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Reverses the first `lengths[b]` steps of each row of `x` [B, T, ...]."""
  t = jnp.arange(x.shape[1])[None, :]
  idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
  return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


class LSTM(nn.Module):
  """Unidirectional LSTM over [B, T, D] inputs with per-example lengths.

  Attributes:
    hidden_size: units H.
    reverse: read each sequence from its last real step to its first.
    dtype: compute dtype; parameters stay float32.
  """
  hidden_size: int
  reverse: bool = False
  dtype: jnp.dtype = jnp.float32

  def _param(self, name: str, shape: tuple[int, ...]) -> jax.Array:
    bound = 1.0 / self.hidden_size**0.5  # PyTorch: U(-1/sqrt(H), 1/sqrt(H)).
    init = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)
    return self.param(name, init, shape)

  def initial_carry(self, batch_size: int) -> Carry:
    """Zero (c, h), as PyTorch uses when no state is given."""
    zeros = jnp.zeros((batch_size, self.hidden_size), jnp.float32)
    return zeros, zeros

  @nn.compact
  def __call__(self, x: jax.Array, lengths: jax.Array,
               carry: Carry | None = None) -> tuple[jax.Array, Carry]:
    """Runs the LSTM.

    Args:
      x: inputs [B, T, D].
      lengths: true lengths [B]; steps t >= lengths[b] are padding.
      carry: initial (c, h), zeros when None. Decoders step one token at a
        time by calling with T = 1 and the previous carry.
    Returns:
      outputs [B, T, H] (zero at padded steps, in input order even when
      `reverse`), and the final (c, h) after each sequence's last real step.
    """
    batch, steps = x.shape[:2]
    if self.reverse:
      x = reverse_within_length(x, lengths)
    h4 = 4 * self.hidden_size
    w_ih = self._param('w_ih', (x.shape[-1], h4)).astype(self.dtype)
    w_hh = self._param('w_hh', (self.hidden_size, h4)).astype(self.dtype)
    bias = (self._param('b_ih', (h4,)) + self._param('b_hh', (h4,)))
    # The input projection of every step at once; only h @ W_hh is sequential.
    x_proj = jnp.dot(x.astype(self.dtype), w_ih) + bias.astype(self.dtype)
    valid = jnp.arange(steps)[None, :] < lengths[:, None]  # [B, T]
    carry = self.initial_carry(batch) if carry is None else carry

    def body(carry, inputs):
      xp, keep = inputs
      c, h = carry
      gates = (xp + jnp.dot(h.astype(self.dtype), w_hh)).astype(jnp.float32)
      i, f, g, o = jnp.split(gates, 4, axis=-1)
      c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
      h = jax.nn.sigmoid(o) * jnp.tanh(c)
      new_carry = (c, h)
      keep = keep[:, None]
      carry = tuple(jnp.where(keep, n, o) for n, o in zip(new_carry, carry))
      return carry, jnp.where(keep, h, 0.0)

    carry, outputs = jax.lax.scan(
        body, carry, (jnp.swapaxes(x_proj, 0, 1), valid.T))
    outputs = jnp.swapaxes(outputs, 0, 1)
    if self.reverse:
      outputs = reverse_within_length(outputs, lengths)
    return outputs, carry
