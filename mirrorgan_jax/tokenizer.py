"""The caption tokenizer of the reference code, in Python and in TensorFlow.

Reference (AttnGAN/MirrorGAN `datasets.py`): the two-character sequence
U+FFFD U+FFFD becomes a space, the line is lower-cased, tokens are the runs of
word characters (`\\w+`), and each token loses its non-ASCII characters (tokens
left empty are dropped). `tokenize` does this in Python (vocabulary building,
user text); `tf_tokenize` does the same inside tf.data. Tests check that the two
agree, including on non-ASCII text.
"""

import re

import tensorflow as tf

_WORD = re.compile(r'\w+')
_NON_ASCII = re.compile(r'[^\x00-\x7f]')
# Python's `\w` is Unicode letters, digits and numbers (str.isalnum) plus '_'.
_TF_NON_WORD = r'[^\p{L}\p{N}_]+'


def tokenize(text: str) -> list[str]:
  """Splits a caption into lower-case ASCII word tokens, as the reference does."""
  text = text.replace('\ufffd\ufffd', ' ').lower()
  tokens = (_NON_ASCII.sub('', token) for token in _WORD.findall(text))
  return [token for token in tokens if token]


def tf_tokenize(text: tf.Tensor) -> tf.Tensor:
  """`tokenize` for a scalar tf.string: returns a 1-D tf.string tensor of tokens."""
  text = tf.strings.regex_replace(text, '\ufffd\ufffd', ' ')
  text = tf.strings.lower(text, encoding='utf-8')
  text = tf.strings.regex_replace(text, _TF_NON_WORD, ' ')
  text = tf.strings.regex_replace(text, r'[^\x00-\x7f]', '')
  return tf.strings.split(text)
