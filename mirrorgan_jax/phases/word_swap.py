"""Attribute-swapped captions: hard wrong-caption negatives for D's matching term.

The reference's wrong pair is a real image with the caption of another image.
Random captions differ from the true one in many words, so on captioned_shapes D
can reject them by the background or the colour alone, and its sentence-
conditioned head never needs to read the shape: G's conditional adversarial loss
then carries no gradient about the shape. A swapped caption is the true caption
with one attribute word replaced by a word of another class of the same
attribute ('a red star on the left' -> 'a red heart on the left'): D can only
reject it by reading that attribute in the image (the idea of NegCLIP's swapped
hard negatives, Yuksekgonul et al. 2023, used here for the matching-aware D of
GAN-INT-CLS, Reed et al. 2016).

With `loss.swap_attributes` (empty by default: the reference's negatives only),
each row's wrong caption is, with probability `loss.swap_fraction`, its own
caption with one word of those attributes swapped (a row with no such word keeps
its random wrong caption). Word classes come from the dataset's vocabulary
tables (captioned_shapes only: `shapes_scene`); a class's synonyms ('circle',
'disk') are never swapped for each other.
"""

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import shapes_scene

DATASET = 'captioned_shapes'  # The only dataset with word classes.
# Attribute -> its classes, each class the tuple of words that name it.
_WORD_CLASSES = {
    'shape': tuple(shapes_scene.SHAPE_WORDS.get(s, (s,)) for s in shapes_scene.SHAPES),
    'color': tuple((c,) for c in shapes_scene.COLORS),
    'size': tuple(shapes_scene.SIZE_WORDS[s] for s in shapes_scene.SIZES),
    'background': tuple(shapes_scene.BACKGROUND_WORDS.get(b, (b,))
                        for b in shapes_scene.BACKGROUNDS),
}
ATTRIBUTES = tuple(_WORD_CLASSES)


class SwapTable(NamedTuple):
  """Token-id tables of the swappable words (all int32).

  attribute: [V] attribute index of each vocabulary id, -1 if not swappable.
  word_class: [V] class index of each id within its attribute.
  class_word: [A, C] the id that names class c of attribute a (its first word).
  num_classes: [A] classes per attribute.
  """
  attribute: np.ndarray
  word_class: np.ndarray
  class_word: np.ndarray
  num_classes: np.ndarray


def make_table(attributes: Sequence[str], vocab: vocab_lib.Vocabulary) -> SwapTable:
  """The swap table of `attributes` (names of `_WORD_CLASSES`) over `vocab`."""
  unknown = [a for a in attributes if a not in _WORD_CLASSES]
  if unknown:
    raise ValueError(f'loss.swap_attributes: unknown {unknown}; expected names from '
                     f'{ATTRIBUTES}')
  ids = vocab.index
  attribute = np.full(len(vocab), -1, np.int32)
  word_class = np.zeros(len(vocab), np.int32)
  width = max(len(_WORD_CLASSES[a]) for a in attributes)
  class_word = np.zeros((len(attributes), width), np.int32)
  for a, name in enumerate(attributes):
    for c, words in enumerate(_WORD_CLASSES[name]):
      if words[0] not in ids:
        raise ValueError(f'loss.swap_attributes: the {name} word {words[0]!r} is not in '
                         'the vocabulary; swapping needs the captioned_shapes vocabulary')
      class_word[a, c] = ids[words[0]]
      for w in words:
        if w in ids:
          attribute[ids[w]], word_class[ids[w]] = a, c
  num_classes = np.array([len(_WORD_CLASSES[a]) for a in attributes], np.int32)
  return SwapTable(attribute, word_class, class_word, num_classes)


def table_from_config(config: ml_collections.ConfigDict,
                      vocab: vocab_lib.Vocabulary) -> SwapTable | None:
  """The run's swap table, or None when `loss.swap_attributes` is empty."""
  attributes = tuple(config.loss.swap_attributes)
  if not attributes:
    return None
  if config.data.name != DATASET:
    raise ValueError(f'loss.swap_attributes needs word classes; only {DATASET} has '
                     f'them, not {config.data.name!r}')
  return make_table(attributes, vocab)


def swap_one_word(ids: jax.Array, lengths: jax.Array, table: SwapTable,
                  noise: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Each caption with one swappable word replaced by another class's word.

  Args:
    ids: int [B, T] token ids; lengths: int [B].
    table: the swap table.
    noise: float [B, T + 1] uniform in [0, 1): columns :T choose the word (uniform
      over the swappable words of the caption), column T the new class (uniform
      over the attribute's other classes).
  Returns:
    (swapped ids [B, T], has [B]: whether the caption had a swappable word; rows
    without one are returned unchanged).
  """
  steps = ids.shape[1]
  attribute = jnp.asarray(table.attribute)[ids]
  swappable = (attribute >= 0) & (jnp.arange(steps)[None, :] < lengths[:, None])
  has = swappable.any(axis=1)
  position = jnp.argmax(jnp.where(swappable, noise[:, :steps], -1.0), axis=1)
  rows = jnp.arange(ids.shape[0])
  old = ids[rows, position]
  a = jnp.maximum(jnp.asarray(table.attribute)[old], 0)
  n = jnp.asarray(table.num_classes)[a]
  shift = 1 + jnp.floor(noise[:, steps] * (n - 1)).astype(jnp.int32)  # In [1, n - 1].
  new_class = (jnp.asarray(table.word_class)[old] + shift) % n
  new = jnp.asarray(table.class_word)[a, new_class]
  swapped = ids.at[rows, position].set(jnp.where(has, new, old))
  return swapped, has


def wrong_captions(ids: jax.Array, lengths: jax.Array, mismatch_ids: jax.Array,
                   mismatch_lengths: jax.Array, table: SwapTable, fraction: float,
                   noise: jax.Array) -> tuple[jax.Array, jax.Array]:
  """D's wrong captions: a swapped own caption with probability `fraction`.

  `noise`: uniform [B, T + 2]; its last column picks the rows that swap. Rows
  that do not swap, or have nothing to swap, keep their random wrong caption.
  """
  swapped, has = swap_one_word(ids, lengths, table, noise[:, :-1])
  use = has & (noise[:, -1] < fraction)
  return (jnp.where(use[:, None], swapped, mismatch_ids),
          jnp.where(use, lengths, mismatch_lengths))
