"""Per-example tf.data operations: images to a [-1, 1] pyramid, captions to ids.

Every random choice takes an explicit stateless seed (a [2] int64 tensor), so an
example's preprocessing depends only on (run seed, epoch, position) and a resumed
run sees exactly the batches an uninterrupted one would.
"""

from typing import Sequence

import tensorflow as tf

from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import batch_keys


def split_seed(seed: tf.Tensor, n: int) -> list[tf.Tensor]:
  """Splits a stateless seed into `n` independent seeds."""
  return tf.unstack(tf.random.experimental.stateless_split(seed, num=n))


def to_unit_range(image: tf.Tensor) -> tf.Tensor:
  """uint8 [H, W, 3] -> float32 in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
  return tf.cast(image, tf.float32) / 127.5 - 1.0


def _resize_shorter_side(image: tf.Tensor, size: int) -> tf.Tensor:
  """Resizes so the shorter side is `size` (bilinear, antialiased as PIL)."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = tf.cast(size, tf.float32) / tf.reduce_min(shape)
  new = tf.cast(tf.round(shape * scale), tf.int32)
  new = tf.maximum(new, size)
  return tf.image.resize(image, new, method='bilinear', antialias=True)


def crop_and_flip(image: tf.Tensor, size: int, seed: tf.Tensor | None) -> tf.Tensor:
  """Reference augmentation: shorter side to int(size*76/64), crop `size`, flip.

  With `seed=None` (evaluation) the crop is central and there is no flip.

  Args:
    image: uint8 or float [H, W, 3].
    size: output side in px.
    seed: stateless seed, or None for the deterministic variant.
  Returns:
    float32 [size, size, 3] on the input's value scale.
  """
  image = _resize_shorter_side(tf.cast(image, tf.float32), int(size * 76 / 64))
  if seed is None:
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return image[top:top + size, left:left + size]
  crop_seed, flip_seed = split_seed(seed, 2)
  image = tf.image.stateless_random_crop(image, (size, size, 3), seed=crop_seed)
  return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def resize_square(image: tf.Tensor, size: int) -> tf.Tensor:
  """Resizes to [size, size] (bilinear, antialiased); a no-op at the same size."""
  if image.shape[0] == size and image.shape[1] == size:
    return image
  return tf.image.resize(image, (size, size), method='bilinear', antialias=True)


def image_pyramid(image: tf.Tensor, sizes: Sequence[int]) -> dict[str, tf.Tensor]:
  """The largest-size float image -> {'image_<s>': [s, s, 3] in [-1, 1]}."""
  return {batch_keys.image_key(s): tf.clip_by_value(to_unit_range(resize_square(image, s)), -1, 1)
          for s in sizes}


def tf_tokenize(text: tf.Tensor) -> tf.Tensor:
  """`tokenizer.tokenize` for a scalar tf.string: a 1-D tf.string tensor of tokens."""
  text = tf.strings.regex_replace(text, '\ufffd\ufffd', ' ')
  text = tf.strings.lower(text, encoding='utf-8')
  # Python's `\w` is Unicode letters, digits and numbers (str.isalnum) plus '_'.
  text = tf.strings.regex_replace(text, r'[^\p{L}\p{N}_]+', ' ')
  text = tf.strings.regex_replace(text, r'[^\x00-\x7f]', '')
  return tf.strings.split(text)


def make_lookup_table(vocab: vocab_lib.Vocabulary) -> tf.lookup.StaticHashTable:
  """A word -> id table; words outside the vocabulary map to -1."""
  init = tf.lookup.KeyValueTensorInitializer(
      tf.constant(vocab.words[1:]), tf.range(1, len(vocab), dtype=tf.int32))
  return tf.lookup.StaticHashTable(init, default_value=-1)


def encode_caption(text: tf.Tensor, table: tf.lookup.StaticHashTable,
                   words_num: int, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Caption text -> (ids [words_num] int32 zero-padded, length int32).

  Unknown words are dropped (as the reference does at inference). Captions
  longer than `words_num` keep a random subset of `words_num` words in their
  original order (reference §1.2: random dropping, not truncation).
  """
  ids = table.lookup(tf_tokenize(text))
  ids = tf.boolean_mask(ids, ids >= 0)
  n = tf.shape(ids)[0]

  def drop_words():
    scores = tf.random.stateless_uniform([n], seed=seed)
    keep = tf.sort(tf.math.top_k(scores, k=words_num).indices)
    return tf.gather(ids, keep)

  ids = tf.cond(n > words_num, drop_words, lambda: ids)
  length = tf.shape(ids)[0]
  ids = tf.pad(ids, [[0, words_num - length]])
  return tf.ensure_shape(ids, [words_num]), length
