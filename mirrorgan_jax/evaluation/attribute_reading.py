"""Do the DAMSM encoders and STREAM read each attribute? Captions with one word swapped.

DAMSM learns from in-batch negatives. A word that rarely tells two captions of a
batch apart gets little training signal, so STEM can reach a high R-precision
while ignoring it, and then nothing downstream (the CA input of G, the sentence
head of D) is conditioned on it. On captioned_shapes this is measurable: swap one
attribute word of a test caption for a word of another class of the same
attribute ('a red star on the left' -> 'a red heart on the left'; synonyms such
as 'circle' / 'disk' are one class, never swapped for each other; a position is
its key word: 'left', 'top' / 'upper', ...) and ask

  swap_accuracy/<a>: is the image code closer (cosine) to its caption than to
    the swapped one? 0.5 = the encoders cannot tell the attribute;
  swap_distance/<a>: 1 - cos(sentence, swapped sentence); near 0 = the text
    encoder's sentence vector ignores the word.

The captioner (STREAM) is asked the same question through its likelihood
(`read_by_likelihood`): is the image's caption more probable, teacher-forced,
than the swapped one? That is exactly what the GAN's redescription loss can
teach G about a word, whatever the captioner's greedy caption happens to state.

  swap_accuracy/<a>: NLL(caption | image) < NLL(swapped caption | image);
  swap_margin/<a>: NLL(swapped) - NLL(caption), in nats (0 = the word is ignored).

Word classes come from the dataset's vocabulary tables (`shapes_scene`).
"""

from typing import Callable, Iterable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import shapes_scene

_COSINE_EPS = 1e-8  # As DAMSM's cosine: dot / max(|x| |y|, eps).


def _position_words(position: str) -> tuple[str, ...]:
  """Words of `position`'s phrases that no other position's phrases use.

  'left': ('left',); 'top': ('top', 'upper'); 'center': ('center', 'middle'). A
  swap turns 'in the upper part' into 'in the left part'; 'left' / 'right' also
  occur in relation phrases ('left of'), whose swap is as false of the image.
  """
  def words(p):
    return [w for phrase in shapes_scene.POSITION_PHRASES[p]
            for w in shapes_scene.tokenize(phrase)]
  others = {w for p in shapes_scene.POSITIONS if p != position for w in words(p)}
  return tuple(dict.fromkeys(w for w in words(position) if w not in others))


# Attribute -> its classes, each class the tuple of words that name it.
_WORD_CLASSES = {
    'shape': tuple(shapes_scene.SHAPE_WORDS.get(s, (s,)) for s in shapes_scene.SHAPES),
    'color': tuple((c,) for c in shapes_scene.COLORS),
    'size': tuple(shapes_scene.SIZE_WORDS[s] for s in shapes_scene.SIZES),
    'background': tuple(shapes_scene.BACKGROUND_WORDS.get(b, (b,))
                        for b in shapes_scene.BACKGROUNDS),
    'position': tuple(_position_words(p) for p in shapes_scene.POSITIONS),
}
ATTRIBUTES = tuple(_WORD_CLASSES)


class SwapTable(NamedTuple):
  """Token-id tables of one attribute's words (int32 numpy arrays).

  word_class: [V] class index of each vocabulary id, -1 for other words.
  class_word: [C] the id that names each class (its first word).
  """
  word_class: np.ndarray
  class_word: np.ndarray


def make_table(attribute: str, vocab: vocab_lib.Vocabulary) -> SwapTable:
  """The swap table of `attribute` (one of ATTRIBUTES) over `vocab`."""
  if attribute not in _WORD_CLASSES:
    raise ValueError(f'unknown attribute {attribute!r}; expected one of {ATTRIBUTES}')
  word_class = np.full(len(vocab), -1, np.int32)
  class_word = []
  for c, words in enumerate(_WORD_CLASSES[attribute]):
    if words[0] not in vocab.index:
      raise ValueError(f'the {attribute} word {words[0]!r} is not in the vocabulary')
    class_word.append(vocab.index[words[0]])
    for w in words:
      if w in vocab.index:
        word_class[vocab.index[w]] = c
  return SwapTable(word_class, np.asarray(class_word, np.int32))


def tables(vocab: vocab_lib.Vocabulary) -> dict[str, SwapTable]:
  """Tables of every attribute whose class words `vocab` has (test data may lack some)."""
  out = {}
  for attribute in ATTRIBUTES:
    try:
      out[attribute] = make_table(attribute, vocab)
    except ValueError:
      continue
  return out


def dataset_tables(data_name: str, vocab: vocab_lib.Vocabulary) -> dict[str, SwapTable]:
  """`tables(vocab)` on captioned_shapes; {} (nothing to read) on other data."""
  return tables(vocab) if data_name == shapes_scene.DATASET else {}


def cosine(x: jax.Array, y: jax.Array) -> jax.Array:
  """Row-wise cosine similarity of [B, D] arrays (DAMSM's: eps 1e-8 on the norms)."""
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
  norms = jnp.linalg.norm(x, axis=-1) * jnp.linalg.norm(y, axis=-1)
  return jnp.sum(x * y, axis=-1) / jnp.maximum(norms, _COSINE_EPS)


def swap_one_word(ids: jax.Array, lengths: jax.Array, table: SwapTable,
                  noise: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Each caption with one of the attribute's words replaced by another class's word.

  Args:
    ids: int [B, T] token ids; lengths: int [B].
    table: the attribute's swap table.
    noise: float [B, T + 1] uniform in [0, 1): columns :T choose the word (uniform
      over the caption's words of the attribute), column T the new class (uniform
      over the other classes).
  Returns:
    (swapped ids [B, T], has [B]: whether the caption had such a word; rows
    without one are returned unchanged).
  """
  steps = ids.shape[1]
  word_class = jnp.asarray(table.word_class)
  swappable = (word_class[ids] >= 0) & (jnp.arange(steps)[None, :] < lengths[:, None])
  has = swappable.any(axis=1)
  position = jnp.argmax(jnp.where(swappable, noise[:, :steps], -1.0), axis=1)
  rows = jnp.arange(ids.shape[0])
  old = ids[rows, position]
  n = len(table.class_word)
  shift = 1 + jnp.floor(noise[:, steps] * (n - 1)).astype(jnp.int32)  # In [1, n - 1].
  new = jnp.asarray(table.class_word)[(word_class[old] + shift) % n]
  return ids.at[rows, position].set(jnp.where(has, new, old)), has


def read(encode: Callable[[jax.Array], jax.Array], ids: jax.Array, lengths: jax.Array,
         image_code: jax.Array, sentence: jax.Array, swap_tables: dict[str, SwapTable],
         noise: jax.Array) -> dict[str, jax.Array]:
  """Per-row scores of each attribute (averaged by the caller over `swap_has`).

  Args:
    encode: swapped ids [B, T] -> sentence vectors [B, D] (the text encoder).
    ids, lengths: the captions; image_code, sentence: their images' codes and
      sentence vectors [B, D].
    swap_tables: attribute -> SwapTable (`tables`).
    noise: uniform [B, T + 1], as `swap_one_word`'s.
  Returns:
    {'swap_has/<a>': [B] bool, 'swap_right/<a>': [B] bool (image closer to its
     caption than to the swap), 'swap_distance/<a>': [B] float} per attribute.
  """
  out = {}
  own = cosine(image_code, sentence)
  for name, table in swap_tables.items():
    swapped, has = swap_one_word(ids, lengths, table, noise)
    other = encode(swapped)
    out[f'swap_has/{name}'] = has
    out[f'swap_right/{name}'] = own > cosine(image_code, other)
    out[f'swap_distance/{name}'] = 1.0 - cosine(sentence, other)
  return out


def read_by_likelihood(caption_nll: Callable[[jax.Array], jax.Array], own: jax.Array,
                       ids: jax.Array, lengths: jax.Array,
                       swap_tables: dict[str, SwapTable],
                       noise: jax.Array) -> dict[str, jax.Array]:
  """Per-row scores of each attribute for a captioner (averaged by the caller).

  Args:
    caption_nll: ids [B, T] -> [B] negative log-likelihood of each caption given
      its image (teacher-forced, summed over the caption's scored tokens).
    own: [B] `caption_nll(ids)`, which the caller has already computed.
    ids, lengths: the images' captions.
    swap_tables: attribute -> SwapTable (`tables`).
    noise: uniform [B, T + 1], as `swap_one_word`'s.
  Returns:
    {'swap_has/<a>': [B] bool, 'swap_right/<a>': [B] bool (the caption is more
     probable than the swap), 'swap_margin/<a>': [B] float (NLL difference)}.
  """
  out = {}
  for name, table in swap_tables.items():
    swapped, has = swap_one_word(ids, lengths, table, noise)
    margin = caption_nll(swapped) - own
    out[f'swap_has/{name}'] = has
    out[f'swap_right/{name}'] = margin > 0
    out[f'swap_margin/{name}'] = margin
  return out


class Tally:
  """Collects per-row scores of `read` / `read_by_likelihood` over eval batches."""

  def __init__(self, attributes: Iterable[str], measure: str):
    """`measure`: the per-row float next to `swap_right` ('distance' or 'margin')."""
    self.measure = measure
    self.rows = {name: ([], []) for name in attributes}

  def add(self, out: Mapping[str, np.ndarray], mask: np.ndarray) -> None:
    """Adds one batch's host outputs; `mask` marks its real (non-padding) rows."""
    for name, (right, value) in self.rows.items():
      rows = mask & out[f'swap_has/{name}']
      right.append(out[f'swap_right/{name}'][rows])
      value.append(out[f'swap_{self.measure}/{name}'][rows])

  def scalars(self) -> dict[str, float]:
    """{'swap_accuracy/<a>', 'swap_<measure>/<a>'}: means over rows with such a word."""
    out = {}
    for name, (right, value) in self.rows.items():
      if sum(len(r) for r in right):
        out[f'swap_accuracy/{name}'] = float(np.mean(np.concatenate(right)))
        out[f'swap_{self.measure}/{name}'] = float(np.mean(np.concatenate(value)))
    return out
