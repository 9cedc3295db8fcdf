"""Pure image generation from token ids, shared by summaries, evaluation and CLIs."""

import functools

import flax.linen as nn
import jax


@functools.partial(jax.jit, static_argnames=('generator', 'text_encoder'))
def generate(generator: nn.Module, text_encoder: nn.Module, g_variables, text_variables,
             ids: jax.Array, lengths: jax.Array, z: jax.Array, eps: jax.Array) -> dict:
  """Generates every stage's image for captions (inference mode, BN running stats).

  Args:
    generator: the G module; `g_variables` its {'params', 'batch_stats'}
      (pass the EMA parameters for samples and evaluation).
    text_encoder: the frozen STEM text encoder; `text_variables` its variables.
    ids: token ids [B, T] (0 = padding); lengths [B].
    z: noise [B, z_dim]; eps: conditioning-augmentation noise [B, condition_dim].
  Returns:
    {'images': list per stage of [B, S, S, 3] in [-1, 1], 'attention': list per
    refinement stage of word-attention maps [B, H, W, T]}.
  """
  words, sentence = text_encoder.apply(text_variables, ids, lengths, train=False)
  out = generator.apply(g_variables, z, sentence, words, lengths=lengths, train=False,
                        eps=eps)
  return {'images': out['images'], 'attention': out['attention']}
