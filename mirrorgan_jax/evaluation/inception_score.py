"""Inception Score (Salimans et al., NeurIPS 2016) from class probabilities.

IS = exp(E_x KL(p(y|x) || p(y))), with p(y) the mean of p(y|x) over the images
of a split. As in the OpenAI improved-GAN script and StackGAN's CUB script
(reference spec section 8.1): the N images are cut into `num_splits` (10)
contiguous splits, split i holding rows [i N // s, (i + 1) N // s); each split
gets its own p(y) and score; the result is the mean and the population standard
deviation (ddof=0) of the split scores.

Splits are contiguous, so images generated in dataset order (CUB's test set is
sorted by class) must be shuffled first (`shuffle_seed`), as StackGAN does;
otherwise each split sees few classes and the score drops.

StackGAN's CUB classifier has 50 classes plus a background logit (column 0)
that is removed before the softmax (`drop_background=True`). Dropping column 0
of the probabilities and renormalising the rows is the same thing:
softmax(l[1:])_i = p_i / (1 - p_0).

Pure float64 numpy; 0 log 0 counts as 0.
"""

from typing import NamedTuple

import numpy as np

# Rows of probabilities must sum to 1 within this (float32 softmax round-off).
_SUM_TOLERANCE = 1e-3


class InceptionScore(NamedTuple):
  """Attributes: mean and std (ddof=0) over splits; split_scores [num_splits]."""
  mean: float
  std: float
  split_scores: np.ndarray


def _kl_to_marginal(p: np.ndarray) -> float:
  """exp(mean_x KL(p(y|x) || p(y))) of one split [n, C]."""
  marginal = p.mean(axis=0)
  positive = p > 0  # Where p > 0 the marginal is > 0 too.
  log_ratio = (np.log(np.where(positive, p, 1.0))
               - np.log(np.where(positive, marginal, 1.0)))
  return float(np.exp(np.sum(np.where(positive, p * log_ratio, 0.0)) / p.shape[0]))


def inception_score(probs: np.ndarray, num_splits: int = 10, *,
                    drop_background: bool = False,
                    shuffle_seed: int | None = None) -> InceptionScore:
  """Inception Score of class probabilities.

  Args:
    probs: [N, C] rows of p(y|x) (softmax outputs, e.g. `InceptionExtractor`'s
      `probs`); N >= num_splits.
    num_splits: number of splits (10 in all papers).
    drop_background: remove column 0 (a background class, as in StackGAN's CUB
      Inception model) and renormalise each row.
    shuffle_seed: if set, permute the rows with this seed before splitting.
  Returns:
    InceptionScore(mean, std, split_scores).
  """
  p = np.asarray(probs, np.float64)
  if p.ndim != 2 or p.shape[1] < 1:
    raise ValueError(f'probs must be [N, C], got shape {p.shape}')
  if not 1 <= num_splits <= p.shape[0]:
    raise ValueError(f'num_splits must be in [1, N={p.shape[0]}], got {num_splits}')
  if not np.isfinite(p).all() or (p < 0).any():
    raise ValueError(
        'probs must be finite and non-negative (softmax outputs, not logits)')
  sums = p.sum(axis=1)
  if np.abs(sums - 1.0).max() > _SUM_TOLERANCE:
    raise ValueError(f'rows of probs must sum to 1 (softmax outputs, not logits); '
                     f'sums range over [{sums.min():.4g}, {sums.max():.4g}]')
  if drop_background:
    if p.shape[1] < 2:
      raise ValueError('drop_background needs at least 2 columns')
    p = p[:, 1:]
    rest = p.sum(axis=1, keepdims=True)
    if (rest == 0).any():
      raise ValueError('some rows put all probability on the background column')
    p = p / rest
  if shuffle_seed is not None:
    p = p[np.random.default_rng(shuffle_seed).permutation(p.shape[0])]
  n = p.shape[0]
  scores = np.array([_kl_to_marginal(p[i * n // num_splits:(i + 1) * n // num_splits])
                     for i in range(num_splits)])
  return InceptionScore(float(scores.mean()), float(scores.std()), scores)
