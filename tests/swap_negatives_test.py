"""DAMSM's swap hard negatives (`phases/swap_negatives.py`) against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.evaluation import attribute_reading as reading
from mirrorgan_jax.phases import swap_negatives
from tests.attribute_reading_test import STEPS, VOCAB, encode_batch

GAMMA3 = 10.0


def _one_hot_colour(token_ids):
  """A toy text encoder: the sentence is the one-hot of the caption's second word."""
  ids = np.asarray(token_ids)[:, 1]
  order = [VOCAB.index[w] for w in ('red', 'blue', 'green')]
  return jnp.asarray([[float(i == o) for o in order] if i in order else [1.0, 1.0, 1.0]
                      for i in ids])


def test_loss_by_hand():
  ids, lengths = encode_batch(['a red star', 'a blue star', 'a star'])
  tables = {'color': reading.make_table('color', VOCAB)}
  code = jnp.asarray([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  key = jax.random.PRNGKey(3)
  got = swap_negatives.loss(_one_hot_colour, ids, lengths, code, _one_hot_colour(ids),
                            tables, GAMMA3, key)
  # The same swaps by hand: colour table, noise of fold_in(key, 0).
  noise = jax.random.uniform(jax.random.fold_in(key, 0), (3, STEPS + 1))
  swapped, has = reading.swap_one_word(ids, lengths, tables['color'], noise)
  assert list(np.asarray(has)) == [True, True, False]  # 'a star' has no colour word.
  sentence, other = np.asarray(_one_hot_colour(ids)), np.asarray(_one_hot_colour(swapped))
  want = []
  for row in range(2):
    cos = lambda v: float(np.dot(code[row], v) / np.linalg.norm(code[row]) / np.linalg.norm(v))
    a, b = GAMMA3 * cos(sentence[row]), GAMMA3 * cos(other[row])
    want.append(-(a - np.logaddexp(a, b)))
  want.append(0.0)  # No swap: the image's only candidate is its caption.
  assert float(got) == pytest.approx(np.mean(want), rel=1e-5)
  # Row 0 matches its colour (cos 1 against at most 1/sqrt(3)): loss <= log(1 +
  # e^-4.2) = 0.015. Row 1's image is red but its caption says blue (cos 0): any
  # swap is at least as close, loss >= log 2.
  assert want[0] < 0.015 and want[1] >= np.log(2.0) - 1e-6


def test_every_table_adds_a_candidate_and_tables_are_required():
  ids, lengths = encode_batch(['small red star on the left on a grey background'])
  tables = reading.tables(VOCAB)
  calls = []

  def encode(token_ids):
    calls.append(np.asarray(token_ids))
    return jnp.ones((token_ids.shape[0], 3))

  # Every sentence equals the code: all 1 + 5 candidates tie, loss log(6).
  got = swap_negatives.loss(encode, ids, lengths, jnp.ones((1, 3)), jnp.ones((1, 3)),
                            tables, GAMMA3, jax.random.PRNGKey(0))
  assert len(calls) == len(tables) == 5
  for swapped, name in zip(calls, tables):
    changed = np.flatnonzero(swapped[0] != np.asarray(ids)[0])
    assert len(changed) == 1, name
    assert reading.make_table(name, VOCAB).word_class[swapped[0, changed[0]]] >= 0, name
  assert float(got) == pytest.approx(np.log(6.0), rel=1e-6)
  with pytest.raises(ValueError, match='word tables'):
    swap_negatives.loss(encode, ids, lengths, jnp.ones((1, 3)), jnp.ones((1, 3)), {},
                        GAMMA3, jax.random.PRNGKey(0))
