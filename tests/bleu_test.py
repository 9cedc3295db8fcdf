"""Tests of corpus BLEU against counts worked out by hand (BLEU paper examples)."""

import math

import pytest

from mirrorgan_jax.evaluation import bleu

# The Papineni et al. (2002) example, tokenised without punctuation (case kept).
HYP1 = ('It is a guide to action which ensures that the military always obeys the '
        'commands of the party').split()
REFS1 = [s.split() for s in (
    'It is a guide to action that ensures that the military will forever heed Party '
    'commands',
    'It is the guiding principle which guarantees the military forces always being '
    'under the command of the Party',
    'It is the practical guide for the army always to heed the directions of the party')]
HYP2 = 'he read the book because he was interested in world history'.split()
REFS2 = ['he was interested in world history because he read the book'.split()]


def test_paper_example_sentence():
  # 18 hypothesis words; references have 16, 18, 16 words -> r = 18, BP = 1.
  # 1-grams: all but 'obeys' match ('the' x3 is within the 4 of ref 2) -> 17/18.
  # 2-grams: It is, is a, a guide, guide to, to action, ensures that, that the,
  #   the military, of the, the party -> 10/17.
  # 3-grams: It is a, is a guide, a guide to, guide to action, ensures that the,
  #   that the military, of the party -> 7/16.
  # 4-grams: It is a guide, is a guide to, a guide to action,
  #   ensures that the military -> 4/15.
  expected = (17 / 18 * 10 / 17 * 7 / 16 * 4 / 15) ** 0.25
  assert bleu.corpus_bleu([HYP1], [REFS1]) == pytest.approx(expected, rel=1e-12)
  assert expected == pytest.approx(0.5046, abs=1e-4)  # NLTK's documented value.


def test_paper_example_corpus_sums_counts_over_segments():
  # Segment 2 (11 words, its reference 11 words): 1-grams 11/11, 2-grams 9/10
  # (not 'book because'), 3-grams 6/9, 4-grams 4/8. Corpus precisions add the
  # counts of both segments (not an average of sentence BLEUs); c = r = 29.
  expected = (28 / 29 * 19 / 27 * 13 / 25 * 8 / 23) ** 0.25
  got = bleu.corpus_bleu([HYP1, HYP2], [REFS1, REFS2])
  assert got == pytest.approx(expected, rel=1e-12)
  assert got == pytest.approx(0.59208, abs=1e-5)  # NLTK's documented value.


def test_identical_hypothesis_scores_one():
  refs = [['a', 'red', 'circle', 'left', 'of', 'a', 'blue', 'square']]
  assert bleu.corpus_bleu([refs[0]], [refs]) == pytest.approx(1.0)
  ids = [3, 4, 5, 6, 7]
  assert bleu.corpus_bleu([ids], [[[9, 9], ids]]) == pytest.approx(1.0)


def test_clipping():
  # Paper section 2.1: 'the' x7 against references with 'the' at most twice -> 2/7.
  hyp = ['the'] * 7
  refs = ['the cat is on the mat'.split(), 'there is a cat on the mat'.split()]
  # c = 7, closest reference has 7 words -> BP = 1.
  assert bleu.corpus_bleu([hyp], [refs], max_n=1) == pytest.approx(2 / 7)


def test_brevity_penalty():
  # p1 = 2/2, p2 = 1/1; c = 2, r = 4 -> BP = exp(1 - 4/2).
  got = bleu.corpus_bleu([['the', 'cat']], [[['the', 'cat', 'is', 'here']]], max_n=2)
  assert got == pytest.approx(math.exp(-1.0))


def test_closest_reference_length_ties_go_to_shorter():
  # c = 4; references of 3 and 5 words are equally close: r = 3 -> BP = 1.
  # (Picking 5 would give exp(1 - 5/4) = 0.78.)
  refs = [[1, 2, 3], [1, 2, 3, 4, 5]]
  assert bleu.corpus_bleu([[1, 2, 3, 4]], [refs], max_n=1) == pytest.approx(1.0)


def test_empty_hypothesis():
  assert bleu.corpus_bleu([[]], [[['a', 'b']]]) == 0.0
  # An empty segment adds its reference length to r only: c = 4, r = 4 + 2,
  # all precisions 1 -> exp(1 - 6/4).
  got = bleu.corpus_bleu([[1, 2, 3, 4], []], [[[1, 2, 3, 4]], [[5, 6]]])
  assert got == pytest.approx(math.exp(-0.5))


def test_no_matching_ngram_gives_zero_unless_smoothed():
  # p1 = 1/2, p2 = 0/1 -> 0; add-one smoothing of n >= 2: p2 = 1/2, BLEU = 1/2.
  assert bleu.corpus_bleu([['a', 'b']], [[['a', 'c']]], max_n=2) == 0.0
  assert bleu.corpus_bleu([['a', 'b']], [[['a', 'c']]], max_n=2,
                          smooth=True) == pytest.approx(0.5)


def test_bad_input():
  with pytest.raises(ValueError, match='reference sets'):
    bleu.corpus_bleu([[1]], [[[1]], [[2]]])
  with pytest.raises(ValueError, match='no reference'):
    bleu.corpus_bleu([[1]], [[]])
  with pytest.raises(ValueError, match='at least one'):
    bleu.corpus_bleu([], [])
  with pytest.raises(ValueError, match='max_n'):
    bleu.corpus_bleu([[1]], [[[1]]], max_n=0)
