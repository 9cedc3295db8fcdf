"""Caption word swaps and the attribute-reading scores (`evaluation/attribute_reading.py`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import shapes_scene
from mirrorgan_jax.evaluation import attribute_reading as reading

VOCAB = vocab_lib.Vocabulary.build([
    'a small red star on the left', 'a big blue disk above a green heart',
    'right top upper bottom lower center middle in part',
    'a circle square triangle diamond cross ring donut on a grey gray black white '
    'background', 'the image shows a tiny little large orange yellow cyan purple pink '
    'brown'])
STEPS = 10


def encode_batch(captions):
  """Padded ids [N, STEPS] and lengths [N] of captions in VOCAB."""
  ids = np.zeros((len(captions), STEPS), np.int32)
  for i, caption in enumerate(captions):
    encoded = VOCAB.encode(caption).ids
    ids[i, :len(encoded)] = encoded
  return jnp.asarray(ids), jnp.asarray([len(VOCAB.encode(c).ids) for c in captions])


def _noise(seed, rows):
  return jax.random.uniform(jax.random.PRNGKey(seed), (rows, STEPS + 1))


def test_one_shape_word_becomes_every_other_shape_never_a_synonym():
  ids, lengths = encode_batch(['a small red star on the left', 'a big blue disk'])
  table = reading.make_table('shape', VOCAB)
  seen = {0: set(), 1: set()}
  for seed in range(200):
    swapped, has = reading.swap_one_word(ids, lengths, table, _noise(seed, 2))
    star, disk = [VOCAB.decode(row).split() for row in np.asarray(swapped)]
    assert np.asarray(has).all()
    assert star[:3] + star[4:] == 'a small red on the left'.split()
    assert disk[:3] == 'a big blue'.split()
    seen[0].add(star[3])
    seen[1].add(disk[3])
  # Each other class's first word: all 7 other shapes in 200 draws.
  assert seen[0] == set(shapes_scene.SHAPES) - {'star'}
  assert seen[1] == set(shapes_scene.SHAPES) - {'circle'}  # 'disk' is a circle.


def test_only_words_inside_the_caption_length_are_swapped():
  ids, lengths = encode_batch(['a big red star', 'the image shows a'])
  ids = ids.at[1, 6].set(VOCAB.index['large'])  # Past the length: padding's place.
  table = reading.make_table('size', VOCAB)
  for seed in range(20):
    swapped, has = reading.swap_one_word(ids, lengths, table, _noise(seed, 2))
    assert np.asarray(has).tolist() == [True, False]
    np.testing.assert_array_equal(swapped[1], ids[1])
    words = VOCAB.decode(np.asarray(swapped[0])).split()
    assert words[1] == 'small'  # The class's first word.
    assert words[0] == 'a' and words[2:] == ['red', 'star']


def test_unknown_attributes_and_missing_words_are_named():
  with pytest.raises(ValueError, match='unknown attribute'):
    reading.make_table('relation', VOCAB)
  small = vocab_lib.Vocabulary.build(['a circle square triangle diamond star cross ring'])
  with pytest.raises(ValueError, match="'heart' is not in the vocabulary"):
    reading.make_table('shape', small)
  assert 'shape' not in reading.tables(small) and set(reading.tables(VOCAB)) == set(
      reading.ATTRIBUTES)


def test_position_classes_are_the_words_only_one_position_uses():
  table = reading.make_table('position', VOCAB)
  named = {w: int(table.word_class[VOCAB.index[w]]) for w in
           ('left', 'right', 'top', 'upper', 'bottom', 'lower', 'center', 'middle')}
  order = {p: i for i, p in enumerate(shapes_scene.POSITIONS)}
  assert named == {'left': order['left'], 'right': order['right'], 'top': order['top'],
                   'upper': order['top'], 'bottom': order['bottom'],
                   'lower': order['bottom'], 'center': order['center'],
                   'middle': order['center']}
  for shared in ('on', 'the', 'at', 'in', 'part', 'of'):  # In several positions' phrases.
    if shared in VOCAB.index:
      assert table.word_class[VOCAB.index[shared]] == -1, shared
  ids, lengths = encode_batch(['a red star in the upper part'])
  swapped, has = reading.swap_one_word(ids, lengths, table, _noise(1, 1))
  words = VOCAB.decode(np.asarray(swapped)[0]).split()
  assert bool(has[0]) and words[:5] + words[6:] == 'a red star in the part'.split()
  assert words[5] in ('left', 'right', 'bottom', 'center')


def test_read_scores_by_hand():
  """A toy text encoder (sentence = one-hot of the colour word) and hand-set image codes."""
  ids, lengths = encode_batch(['a red star', 'a blue star', 'a green star'])
  red, blue, green = (VOCAB.index[w] for w in ('red', 'blue', 'green'))
  basis = {red: [1.0, 0.0, 0.0], blue: [0.0, 1.0, 0.0], green: [0.0, 0.0, 1.0]}

  def encode(token_ids):
    colour = np.asarray(token_ids)[:, 1]
    return jnp.asarray([basis.get(int(c), [1.0, 1.0, 1.0]) for c in colour])

  sentence = encode(ids)
  # Image 0 reads red; image 1 is blind (equal to every colour); image 2 reads blue.
  code = jnp.asarray([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
  out = reading.read(encode, ids, lengths, code, sentence,
                     {'color': reading.make_table('color', VOCAB)}, _noise(0, 3))
  assert np.asarray(out['swap_has/color']).all()
  # Row 0: cos 1 vs 0 (or 1/sqrt(3) for an unlisted colour): right. Row 1: cos
  # 1/sqrt(3) either way (not greater): wrong. Row 2: cos 0 vs <= 1: wrong.
  np.testing.assert_array_equal(out['swap_right/color'], [True, False, False])
  swapped = encode(reading.swap_one_word(ids, lengths, reading.make_table('color', VOCAB),
                                         _noise(0, 3))[0])
  want = [1 - float(np.dot(s, o) / np.linalg.norm(s) / np.linalg.norm(o))
          for s, o in zip(np.asarray(sentence), np.asarray(swapped))]
  np.testing.assert_allclose(out['swap_distance/color'], want, rtol=1e-6)
  assert min(want) > 0.4  # Every swap changed the colour: the one-hot vectors moved.


def test_read_by_likelihood_by_hand():
  """A toy captioner: NLL 1 if the caption's colour word is its image's colour, else 3."""
  ids, lengths = encode_batch(['a red star', 'a blue star', 'a green star'])
  red, blue, green = (VOCAB.index[w] for w in ('red', 'blue', 'green'))
  # Image 0 is red (reads right), image 1 is green (its caption 'blue' is wrong),
  # image 2 is blind (every caption NLL 2).
  seen = jnp.asarray([red, green, -1])

  def caption_nll(token_ids):
    match = token_ids[:, 1] == seen
    return jnp.where(seen < 0, 2.0, jnp.where(match, 1.0, 3.0))

  out = reading.read_by_likelihood(caption_nll, caption_nll(ids), ids, lengths,
                                   {'color': reading.make_table('color', VOCAB)},
                                   _noise(0, 3))
  swapped = np.asarray(reading.swap_one_word(
      ids, lengths, reading.make_table('color', VOCAB), _noise(0, 3))[0])
  # Row 1's swap may land on green (the image's colour): then the swap is likelier.
  row1 = -2.0 if swapped[1, 1] == green else 0.0
  np.testing.assert_allclose(out['swap_margin/color'], [2.0, row1, 0.0])
  np.testing.assert_array_equal(out['swap_right/color'], [True, False, False])
  assert (swapped[:, 1] != np.asarray(ids)[:, 1]).all()  # Every row got another colour.


def test_tally_means_over_rows_with_the_word():
  tally = reading.Tally(['color', 'size'], 'margin')
  tally.add({'swap_has/color': np.array([True, True, False]),
             'swap_right/color': np.array([True, False, True]),
             'swap_margin/color': np.array([2.0, -1.0, 9.0]),
             'swap_has/size': np.array([False, False, False]),
             'swap_right/size': np.array([True, True, True]),
             'swap_margin/size': np.array([1.0, 1.0, 1.0])},
            mask=np.array([True, True, True]))
  tally.add({'swap_has/color': np.array([True, True]),
             'swap_right/color': np.array([True, True]),
             'swap_margin/color': np.array([4.0, 100.0]),
             'swap_has/size': np.array([True, False]),
             'swap_right/size': np.array([False, True]),
             'swap_margin/size': np.array([-3.0, 1.0])},
            mask=np.array([True, False]))  # Row 1 is padding.
  # colour: rows (T, 2), (F, -1), (T, 4); size: one row (F, -3).
  assert tally.scalars() == pytest.approx({
      'swap_accuracy/color': 2 / 3, 'swap_margin/color': 5 / 3,
      'swap_accuracy/size': 0.0, 'swap_margin/size': -3.0})
  assert reading.Tally(['shape'], 'distance').scalars() == {}
