"""Tests of evaluation/r_precision.py on codes built so the answer is known.

Independent checks: orthogonal / hand-angled vectors whose cosine ranking is
known by construction, a same-class decoy that would win if it were drawn,
hand-computed fold statistics (identity shuffle), frequencies of the subsets
drawn against the uniform 1 / C(n, k), and a per-image loop with explicit
cosines for the vectorised ranking.
"""

import itertools

import numpy as np
import pytest

from mirrorgan_jax.evaluation import r_precision as rp

D = 128


def _basis(*indices, dim=D):
  out = np.zeros((len(indices), dim), np.float32)
  out[np.arange(len(indices)), indices] = 1.0
  return out


class _IdentityShuffle:
  """A numpy-Generator stand-in whose permutation keeps the order."""

  def permutation(self, n):
    return np.arange(n)


def test_true_caption_identical_and_others_orthogonal_gives_one():
  n = 20
  images = _basis(*range(n))
  true = 3.0 * images  # Cosine, not dot product: scale must not matter.
  pool = _basis(*range(n, D))  # 108 orthogonal captions, all of other classes.
  out = rp.r_precision(images, true, pool, np.arange(1000, 1000 + len(pool)),
                       np.arange(n), np.random.default_rng(0))
  assert out['num_images'] == n and out['num_folds'] == 10
  for k in (1, 2, 3):
    assert out[f'top{k}_mean'] == 1.0 and out[f'top{k}_std'] == 0.0


def _second_best_case(true_vector):
  """10 equal images e0; pool of exactly 99 other-class captions, all drawn."""
  images = np.repeat(_basis(0), 10, axis=0)
  true = np.repeat(true_vector[None], 10, axis=0)
  pool = _basis(*range(0, 99))  # e0 (the winner), then 98 orthogonal ones.
  return images, true, pool, np.full(99, -1), np.arange(10)


def test_true_caption_second_by_construction():
  # cos(e0, e0 + 0.5 e99) = 1 / sqrt(1.25) = 0.894 < cos(e0, e0) = 1, > 0.
  true_vector = _basis(0)[0] + 0.5 * _basis(99)[0]
  out = rp.r_precision(*_second_best_case(true_vector), np.random.default_rng(1),
                       num_folds=5)
  assert out['top1_mean'] == 0.0 and out['top2_mean'] == 1.0 and out['top3_mean'] == 1.0
  assert out['top1_std'] == 0.0


def test_a_tie_counts_against_the_true_caption():
  out = rp.r_precision(*_second_best_case(_basis(0)[0]), np.random.default_rng(2))
  assert out['top1_mean'] == 0.0 and out['top2_mean'] == 1.0


def test_same_class_decoy_is_never_drawn():
  n = 12
  images = _basis(*range(n))
  true = images + 0.5 * _basis(*range(n, 2 * n))  # cos 0.894 with its image.
  decoys = images.copy()  # cos 1 with its image, but of the image's own class.
  others = _basis(*range(2 * n, D))  # 104 orthogonal, > 99: a random subset is drawn.
  pool = np.concatenate([others[:50], decoys, others[50:]])
  classes = np.concatenate([np.full(50, 99), np.arange(n), np.full(len(others) - 50, 98)])
  out = rp.r_precision(images, true, pool, classes, np.arange(n),
                       np.random.default_rng(3), num_folds=3)
  assert out['top1_mean'] == 1.0
  # Without the class filter (decoys of another class) every decoy can be drawn.
  picks = rp.sample_mismatched(classes, np.arange(n), 99, np.random.default_rng(3))
  assert not np.any(classes[picks] == np.arange(n)[:, None])


def test_sampled_subsets_are_distinct_other_class_and_uniform():
  # Pool classes interleaved, so the skipped same-class block is not contiguous
  # in pool order; class 1 has 3 entries, the 5 others are eligible.
  classes = np.array([2, 1, 0, 1, 2, 3, 1, 0])
  eligible = {0, 2, 4, 5, 7}
  trials = 20_000
  picks = rp.sample_mismatched(classes, np.ones(trials, int), 2,
                               np.random.default_rng(4))
  assert picks.shape == (trials, 2)
  assert np.all(picks[:, 0] != picks[:, 1])
  assert set(np.unique(picks)) == eligible
  counts = {pair: 0 for pair in itertools.combinations(sorted(eligible), 2)}
  for a, b in picks:
    counts[tuple(sorted((int(a), int(b))))] += 1
  freq = np.array(list(counts.values())) / trials
  np.testing.assert_allclose(freq, 0.1, atol=0.012)  # 1 / C(5, 2); ~5 sigma.


def test_sampling_all_eligible_entries_draws_each_once():
  classes = np.array([5, 6, 5, 7, 6, 8])  # Image class 5: 4 eligible entries.
  picks = rp.sample_mismatched(classes, np.array([5, 5, 5]), 4, np.random.default_rng(5))
  for row in picks:
    assert sorted(row) == [1, 3, 4, 5]


def test_ranks_match_a_per_image_loop():
  rng = np.random.default_rng(6)
  n, m, k = 40, 60, 9
  images = rng.normal(size=(n, 5)).astype(np.float32)
  true = rng.normal(size=(n, 5)).astype(np.float32)
  pool = rng.normal(size=(m, 5)).astype(np.float32)
  pool[3] = true[0] * 2.0  # An exact tie for image 0 if drawn.
  mismatched = rng.integers(0, m, (n, k))
  mismatched[0, 0] = 3
  got = rp.true_caption_ranks(images, true, pool, mismatched)
  for i in range(n):
    def cos(a, b):
      return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    truth = cos(images[i], true[i])
    want = sum(cos(images[i], pool[j]) >= truth - 1e-6 for j in mismatched[i])
    assert got[i] == want, i
  assert got[0] >= 1  # The tie counts against the true caption.


def test_fold_statistics_by_hand():
  hits = np.array([1, 0, 1, 1, 0, 0, 1])[:, None]
  # 3 folds of 2 (7th dropped): [1, 0], [1, 1], [0, 0] -> 0.5, 1, 0.
  mean, std, folds = rp.fold_statistics(hits, 3, _IdentityShuffle())
  assert folds == 3
  assert mean[0] == pytest.approx(0.5)
  assert std[0] == pytest.approx(np.sqrt((0.0 + 0.25 + 0.25) / 3))


def test_fewer_images_than_folds_use_one_fold():
  hits = np.array([[1, 1], [0, 1], [0, 1]])
  mean, std, folds = rp.fold_statistics(hits, 10, np.random.default_rng(0))
  assert folds == 1
  np.testing.assert_allclose(mean, [1 / 3, 1.0])
  np.testing.assert_allclose(std, [0.0, 0.0])


def test_fold_means_average_to_the_hit_rate_when_nothing_is_dropped():
  n, dim = 30, 140
  images = _basis(*range(n), dim=dim)
  true = np.where(np.arange(n)[:, None] < 12, images, -images)  # 12 hits, 18 misses.
  pool = _basis(*range(n, dim), dim=dim)
  out = rp.r_precision(images, true, pool, np.arange(len(pool)) + 500, np.arange(n),
                       np.random.default_rng(7), num_folds=10)
  assert out['top1_mean'] == pytest.approx(0.4)
  assert out['top1_std'] > 0.0  # 3 images per fold: the folds differ.


def test_errors():
  images, true, pool = _basis(0, 1), _basis(0, 1), _basis(*range(2, 110))
  classes, image_classes = np.arange(len(pool)) + 10, np.array([0, 1])
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match='true_text_codes must match'):
    rp.r_precision(images, true[:1], pool, classes, image_classes, rng)
  with pytest.raises(ValueError, match=r'image_codes must be \[N, D\]'):
    rp.r_precision(images[0], true, pool, classes, image_classes, rng)
  with pytest.raises(ValueError, match='pool_text_codes must have 128 features'):
    rp.r_precision(images, true, pool[:, :5], classes, image_classes, rng)
  with pytest.raises(ValueError, match=r'pool_class_ids must be \[108\]'):
    rp.r_precision(images, true, pool, classes[:3], image_classes, rng)
  with pytest.raises(ValueError, match=r'image_class_ids must be \[2\]'):
    rp.r_precision(images, true, pool, classes, image_classes[:1], rng)
  with pytest.raises(ValueError, match='ks'):
    rp.r_precision(images, true, pool, classes, image_classes, rng, ks=(0,))
  few = classes.copy()
  few[:20] = 1  # Image 1 (class 1) keeps only 88 captions of another class.
  with pytest.raises(ValueError, match='too few mismatched captions: image 1 .* 88'):
    rp.r_precision(images, true, pool, few, image_classes, rng)
  assert list(rp.eligible_counts(few, image_classes)) == [108, 88]
