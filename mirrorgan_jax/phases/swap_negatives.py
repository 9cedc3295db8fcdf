"""Hard negatives for DAMSM's sentence loss: captions with one attribute word swapped.

DAMSM learns from in-batch negatives. In a batch of 32 captioned_shapes scenes
the colour and shape words already tell almost every pair of captions apart,
so the background word gets little training signal, least of all where it is
not at the end of the caption: with the classifier's backbone frozen, changing
the background word moves the sentence vector of 'a big red star on the left on
a grey background' by 0.16 (1 - cos), but that of 'a grey background with a big
red star on the left' by 0.045. The GAN's first stage draws the background from
the sentence alone, and it drew it right for 49% of such captions against 94%
for the others.

`loss` adds, for each image, its caption with one attribute word swapped for
another class's word (`evaluation.attribute_reading.swap_one_word`, one swap per
attribute) as extra candidates of the image-to-sentence softmax: the image
must prefer its caption to each near copy that says another colour, shape,
size, background or position. Swapping only some attributes teaches the
sentence to drop the others: with shape, colour, size and background swaps but
no position swaps, the position swap distance fell from 0.16 to 0.04 and the
GAN drew the stated position 0.71 of the time instead of 0.97. This is the
hard-negative construction of NegCLIP (Yuksekgonul et al., ICLR 2023, "When and
why vision-language models behave like bags-of-words"), applied to DAMSM's
sentence loss. It needs the dataset's word tables,
so it is a captioned_shapes option (`damsm.swap_negatives`; the paper has none).
"""

from typing import Callable

import jax
import jax.numpy as jnp

from mirrorgan_jax.evaluation import attribute_reading


def loss(encode: Callable[[jax.Array], jax.Array], ids: jax.Array, lengths: jax.Array,
         image_code: jax.Array, sentence: jax.Array,
         swap_tables: dict[str, attribute_reading.SwapTable], gamma3: float,
         key: jax.Array) -> jax.Array:
  """Mean cross-entropy of each image choosing its caption over its swapped copies.

  Args:
    encode: ids [B, T] -> sentence vectors [B, D] (the text encoder being trained).
    ids, lengths: the batch's captions [B, T], [B].
    image_code: the images' codes [B, D]; sentence: their captions' vectors [B, D].
    swap_tables: attribute -> SwapTable (`attribute_reading.tables`).
    gamma3: DAMSM's logit scale (ref 10).
    key: PRNG key of the swaps (which word, which new class).
  Returns:
    Scalar: over images, -log softmax(gamma3 * [cos(code, sentence), cos(code,
    swap_a) for each attribute a the caption has a word of])[0]; a caption with
    no swappable word adds 0 (and rows of no swap at all count as 0 in the mean).
  """
  if not swap_tables:
    raise ValueError('swap negatives need word tables (captioned_shapes vocabulary)')
  own = gamma3 * attribute_reading.cosine(image_code, sentence)
  logits, valid = [own], [jnp.ones_like(own, bool)]
  for i, table in enumerate(swap_tables.values()):
    noise = jax.random.uniform(jax.random.fold_in(key, i), (ids.shape[0], ids.shape[1] + 1))
    swapped, has = attribute_reading.swap_one_word(ids, lengths, table, noise)
    logits.append(gamma3 * attribute_reading.cosine(image_code, encode(swapped)))
    valid.append(has)
  logits, valid = jnp.stack(logits, axis=1), jnp.stack(valid, axis=1)  # [B, 1 + A]
  log_p = jax.nn.log_softmax(jnp.where(valid, logits, -jnp.inf), axis=1)[:, 0]
  return -jnp.mean(log_p)
