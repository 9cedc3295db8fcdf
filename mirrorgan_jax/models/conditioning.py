"""Conditioning augmentation (CA_NET, reference spec §2).

Linear(text_dim -> 4 * condition_dim, bias) -> GLU -> [mu; logvar], then one
reparameterised sample c = mu + eps * exp(logvar / 2). As in the reference, mu
and logvar are GLU outputs (value * sigmoid(gate)), not raw linear outputs.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models import layers


class ConditioningAugmentation(nn.Module):
  """Samples the augmented sentence code s_ca.

  Attributes:
    condition_dim: size D' of c, mu and logvar (paper 100).
    dtype: compute dtype; mu, logvar and c are returned as float32.
  """
  condition_dim: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, sentence: jax.Array, eps: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Computes (c, mu, logvar).

    Args:
      sentence: sentence features [B, D].
      eps: standard normal noise [B, D']; drawn from the 'noise' rng if None.
    Returns:
      (c, mu, logvar), each [B, D'] float32.
    """
    if sentence.ndim != 2:
      raise ValueError(f'sentence must be [B, D], got {sentence.shape}')
    x = nn.Dense(
        4 * self.condition_dim, dtype=self.dtype, param_dtype=jnp.float32,
        kernel_init=layers.KERNEL_INIT, name='fc')(sentence.astype(self.dtype))
    x = layers.glu(x).astype(jnp.float32)
    mu, logvar = x[:, :self.condition_dim], x[:, self.condition_dim:]
    if eps is None:
      eps = jax.random.normal(self.make_rng('noise'), mu.shape, jnp.float32)
    elif eps.shape != mu.shape:
      raise ValueError(f'eps must be {mu.shape}, got {eps.shape}')
    return mu + eps * jnp.exp(0.5 * logvar), mu, logvar
