"""Tests of evaluation/inception_score.py on cases scored by hand."""

import numpy as np
import pytest

from mirrorgan_jax.evaluation import inception_score as is_lib


def _one_hot(labels, num_classes):
  return np.eye(num_classes)[labels]


def test_uniform_predictions_score_one():
  result = is_lib.inception_score(np.full((40, 8), 1 / 8), num_splits=10)
  np.testing.assert_allclose(result.split_scores, np.ones(10), rtol=1e-12)
  assert result.mean == pytest.approx(1.0, rel=1e-12) and result.std == pytest.approx(0.0)


@pytest.mark.parametrize('k', [1, 5, 37])
def test_confident_even_predictions_score_k(k):
  # Every split of 3k rows holds each of the k classes 3 times: p(y) uniform over k,
  # KL(one-hot || uniform) = log k, IS = k.
  probs = _one_hot(np.arange(10 * 3 * k) % k, k)
  result = is_lib.inception_score(probs, num_splits=10)
  np.testing.assert_allclose(result.split_scores, np.full(10, k), rtol=1e-12)
  assert result.std == pytest.approx(0.0, abs=1e-12)


def test_two_splits_by_hand():
  probs = np.array([[1.0, 0.0], [0.0, 1.0],    # Split 1: p(y) = (1/2, 1/2), KL = log 2.
                    [0.5, 0.5], [1.0, 0.0]])  # Split 2: p(y) = (3/4, 1/4).
  # Split 2: KL rows 0.5 log(2/3) + 0.5 log 2 = 0.5 log(4/3) and log(4/3); mean
  # 0.75 log(4/3), so IS = (4/3)^0.75.
  second = (4 / 3) ** 0.75
  result = is_lib.inception_score(probs, num_splits=2)
  np.testing.assert_allclose(result.split_scores, [2.0, second], rtol=1e-12)
  assert result.mean == pytest.approx((2.0 + second) / 2, rel=1e-12)
  assert result.std == pytest.approx((2.0 - second) / 2, rel=1e-12)  # ddof=0


def test_uneven_split_boundaries():
  # N = 5, 2 splits: rows [0, 2) and [2, 5) (i N // s boundaries).
  probs = _one_hot([0, 1, 0, 1, 2], 3)
  np.testing.assert_allclose(is_lib.inception_score(probs, 2).split_scores, [2.0, 3.0],
                             rtol=1e-12)


def test_class_sorted_images_need_shuffling():
  probs = _one_hot(np.repeat(np.arange(10), 20), 10)  # Sorted by class, like CUB test.
  assert is_lib.inception_score(probs, 10).mean == pytest.approx(1.0)
  shuffled = is_lib.inception_score(probs, 10, shuffle_seed=0)
  assert shuffled.mean > 5.0
  again = is_lib.inception_score(probs, 10, shuffle_seed=0)
  np.testing.assert_array_equal(shuffled.split_scores, again.split_scores)
  # One split: the order cannot matter, p(y) uniform over 10 classes.
  assert is_lib.inception_score(probs, 1, shuffle_seed=3).mean == pytest.approx(10.0)


def test_drop_background_equals_softmax_without_that_logit():
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=3.0, size=(60, 51))  # StackGAN CUB: background + 50.
  def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
  got = is_lib.inception_score(softmax(logits), 3, drop_background=True)
  want = is_lib.inception_score(softmax(logits[:, 1:]), 3)
  np.testing.assert_allclose(got.split_scores, want.split_scores, rtol=1e-10)
  # By hand: background takes half of each row; the rest is one-hot over 2 classes.
  probs = np.array([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])
  assert is_lib.inception_score(probs, 1, drop_background=True).mean == pytest.approx(2.0)


def test_input_errors():
  probs = np.full((4, 2), 0.5)
  with pytest.raises(ValueError, match=r'\[N, C\]'):
    is_lib.inception_score(probs[0], 1)
  with pytest.raises(ValueError, match='num_splits'):
    is_lib.inception_score(probs, 5)
  with pytest.raises(ValueError, match='not logits'):
    is_lib.inception_score(np.array([[2.0, -1.0], [0.5, 0.5]]), 1)
  with pytest.raises(ValueError, match='sum to 1'):
    is_lib.inception_score(np.array([[0.2, 0.2], [0.5, 0.5]]), 1)
  with pytest.raises(ValueError, match='background'):
    is_lib.inception_score(np.array([[1.0, 0.0], [0.5, 0.5]]), 1, drop_background=True)
