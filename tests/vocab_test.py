"""Tokenizer and vocabulary: reference tokenization, JSON round trip, errors."""

import json

import pytest
import tensorflow as tf

from mirrorgan_jax import tokenizer
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import preprocessing

TRICKY = [
    'A small RED star, on a grey background.',
    'this bird has a white-ish belly and\ufffd\ufffdyellow crown',
    'café au lait — naïve bird’s wing',
    'under_score 3rd x2 ...  ',
    'ÀÉÎ ÖÜ ß',  # Only non-ASCII letters: tokens vanish.
    '',
]


def test_tokenize_matches_hand_tokens():
  assert tokenizer.tokenize('A small RED star, on a grey background.') == [
      'a', 'small', 'red', 'star', 'on', 'a', 'grey', 'background']
  # U+FFFD U+FFFD is a separator; hyphens split words; apostrophes too.
  assert tokenizer.tokenize('white-ish belly and\ufffd\ufffdyellow') == [
      'white', 'ish', 'belly', 'and', 'yellow']
  # Non-ASCII letters are deleted inside a token, non-word characters split.
  assert tokenizer.tokenize('café au lait — naïve') == ['caf', 'au', 'lait', 'nave']


@pytest.mark.parametrize('text', TRICKY)
def test_tf_tokenize_agrees_with_python(text):
  got = [t.decode() for t in preprocessing.tf_tokenize(tf.constant(text)).numpy()]
  assert got == tokenizer.tokenize(text)


def _vocab():
  return vocab_lib.Vocabulary.build(['a red star', 'a blue star', 'a red circle'])


def test_build_orders_by_count_then_alphabet():
  v = _vocab()
  # counts: a 3, red 2, star 2, blue 1, circle 1.
  assert v.words == ['<end>', 'a', 'red', 'star', 'blue', 'circle']
  assert v.encode('A Red Star').ids == [1, 2, 3]
  assert v.decode([1, 2, 3, 0, 5]) == 'a red star'


def test_json_round_trip(tmp_path):
  v = _vocab()
  path = tmp_path / 'sub' / 'vocab.json'
  v.save(path)
  assert vocab_lib.Vocabulary.load(path) == v
  assert json.loads(path.read_text())['words'][0] == '<end>'


def test_strict_encoding_names_every_unknown_word():
  with pytest.raises(vocab_lib.UnknownWordsError) as e:
    _vocab().encode('a purple stra and a reed circle')
  assert e.value.unknown == ['purple', 'stra', 'and', 'reed']
  assert 'star' in e.value.suggestions['stra']
  assert 'red' in e.value.suggestions['reed']
  assert "'purple'" in str(e.value)


def test_lenient_encoding_drops_and_reports():
  enc = _vocab().encode('a purple star', unknown='drop')
  assert enc.ids == [1, 3] and enc.dropped == ['purple']


@pytest.mark.parametrize('text', ['', '  ... !!', 'purple green'])
def test_empty_or_all_unknown_captions_raise(text):
  with pytest.raises(ValueError):
    _vocab().encode(text, unknown='drop')


def test_bad_files_give_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='not found'):
    vocab_lib.Vocabulary.load(tmp_path / 'missing.json')
  bad = tmp_path / 'bad.json'
  bad.write_text('{not json')
  with pytest.raises(ValueError, match='not valid JSON'):
    vocab_lib.Vocabulary.load(bad)
  other = tmp_path / 'other.json'
  other.write_text('{"words": ["x"]}')
  with pytest.raises(ValueError, match='not a MirrorGAN-JAX vocabulary'):
    vocab_lib.Vocabulary.load(other)
  with pytest.raises(ValueError, match='padding'):
    vocab_lib.Vocabulary(['a', 'b'])
