"""Attribute-swapped wrong captions (`phases/word_swap.py`) and their use in the GAN step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import shapes_scene
from mirrorgan_jax.infra import config_check
from mirrorgan_jax.phases import gan_step
from mirrorgan_jax.phases import word_swap
from tests import gan_fixtures
from tests.gan_step_test import _setup

VOCAB = vocab_lib.Vocabulary.build([
    'a small red star on the left', 'a big blue disk above a green heart',
    'a circle square triangle diamond cross ring donut on a grey gray black white '
    'background', 'the image shows a tiny little large orange yellow cyan purple pink '
    'brown'])
STEPS = 10


def _batch(captions):
  ids = np.zeros((len(captions), STEPS), np.int32)
  for i, caption in enumerate(captions):
    encoded = VOCAB.encode(caption).ids
    ids[i, :len(encoded)] = encoded
  return jnp.asarray(ids), jnp.asarray([len(VOCAB.encode(c).ids) for c in captions])


def _swap(captions, attributes, seed):
  ids, lengths = _batch(captions)
  noise = jax.random.uniform(jax.random.PRNGKey(seed), (len(captions), STEPS + 1))
  swapped, has = word_swap.swap_one_word(ids, lengths, word_swap.make_table(attributes, VOCAB),
                                         noise)
  return [VOCAB.decode(row).split() for row in np.asarray(swapped)], np.asarray(has)


def test_one_shape_word_becomes_every_other_shape_never_a_synonym():
  seen = {0: set(), 1: set()}
  for seed in range(200):
    (star, disk), has = _swap(['a small red star on the left', 'a big blue disk'],
                              ('shape',), seed)
    assert has.all()
    assert star[:3] + star[4:] == 'a small red on the left'.split()
    assert disk[:3] == 'a big blue'.split()
    seen[0].add(star[3])
    seen[1].add(disk[3])
  # Each other class's first word, uniformly: all 7 other shapes in 200 draws.
  assert seen[0] == set(shapes_scene.SHAPES) - {'star'}
  assert seen[1] == set(shapes_scene.SHAPES) - {'circle'}  # 'disk' is a circle.


def test_only_words_inside_the_caption_length_are_swapped():
  ids, lengths = _batch(['a small red star', 'the image shows a'])
  ids = ids.at[1, 6].set(VOCAB.index['heart'])  # Past the length: padding's place.
  table = word_swap.make_table(('shape', 'color'), VOCAB)
  for seed in range(20):
    noise = jax.random.uniform(jax.random.PRNGKey(seed), (2, STEPS + 1))
    swapped, has = word_swap.swap_one_word(ids, lengths, table, noise)
    assert np.asarray(has).tolist() == [True, False]
    np.testing.assert_array_equal(swapped[1], ids[1])
    changed = np.flatnonzero(np.asarray(swapped[0] != ids[0]))
    assert changed.tolist() in ([2], [3])  # 'red' or 'star', one of them.


def test_wrong_captions_mix_by_fraction():
  ids, lengths = _batch(['a red star'] * 64 + ['the image shows a'] * 64)
  mismatch = jnp.full_like(ids, VOCAB.index['grey'])
  mismatch_lengths = jnp.full_like(lengths, 5)
  table = word_swap.make_table(('shape',), VOCAB)
  noise = jax.random.uniform(jax.random.PRNGKey(0), (128, STEPS + 2))
  for fraction, swapped_rows in ((0.0, 0), (1.0, 64)):
    wrong, wrong_lengths = word_swap.wrong_captions(
        ids, lengths, mismatch, mismatch_lengths, table, fraction, noise)
    own = np.asarray(wrong[:, 0] == ids[:, 0])  # Swapped rows start with 'a'.
    assert own.sum() == swapped_rows and not own[64:].any()
    np.testing.assert_array_equal(np.asarray(wrong_lengths)[own], np.asarray(lengths)[own])
    np.testing.assert_array_equal(np.asarray(wrong_lengths)[~own], 5)
  wrong, _ = word_swap.wrong_captions(ids, lengths, mismatch, mismatch_lengths, table, 0.5,
                                      noise)
  assert 20 < int(np.sum(np.asarray(wrong[:64, 0] == ids[:64, 0]))) < 44


def test_bad_attributes_and_datasets_are_named():
  with pytest.raises(ValueError, match='unknown'):
    word_swap.make_table(('relation',), VOCAB)
  with pytest.raises(ValueError, match="'heart' is not in the vocabulary"):
    word_swap.make_table(('shape',), vocab_lib.Vocabulary.build(
        ['a circle square triangle diamond star cross ring']))
  config = gan_fixtures.smoke_config(**{'loss.swap_attributes': ('shape', 'texture'),
                                        'loss.swap_fraction': 1.5})
  found = '\n'.join(config_check.problems(config))
  assert 'loss.swap_attributes' in found and 'loss.swap_fraction = 1.5' in found
  config = gan_fixtures.smoke_config(**{'loss.swap_attributes': ('shape',),
                                        'data.name': 'cub'})
  assert any('word classes of captioned_shapes' in p for p in config_check.problems(config))


def test_gan_step_swaps_only_the_wrong_captions():
  """With every wrong caption swapped, D's wrong-caption term changes, nothing else of D."""
  # Every fixture token id in [1, 10) is one attribute of three classes.
  attribute = np.full(gan_fixtures.VOCAB, -1, np.int32)
  attribute[1:10] = 0
  table = word_swap.SwapTable(attribute, np.arange(gan_fixtures.VOCAB, dtype=np.int32) % 3,
                              np.array([[1, 2, 3]], np.int32), np.array([3], np.int32))
  metrics = {}
  for name, fraction, swaps in (('none', 0.0, None), ('all', 1.0, table)):
    config, models, frozen, state = _setup(**{'loss.swap_fraction': fraction})
    step = gan_step.make_train_step(config, models, frozen, swap_table=swaps)
    _, out = step(step.place_state(state), gan_fixtures.random_batch(config))
    metrics[name] = jax.device_get(out)
  assert metrics['all']['d_loss'] != metrics['none']['d_loss']
  # D's real and fake terms do not see the wrong captions.
  same = [k for k in metrics['none'] if k.startswith(('acc/real', 'acc/fake'))]
  assert same
  for key in same:
    np.testing.assert_array_equal(metrics['all'][key], metrics['none'][key], err_msg=key)
