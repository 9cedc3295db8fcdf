"""Frechet Inception Distance (Heusel et al., NeurIPS 2017) from pool3 features.

FID = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)), where (mu, S) are
the mean and covariance (ddof=1, as pytorch-fid's `np.cov`) of the Inception
pool3 features of two image sets. Features come from
`inception_metrics.InceptionExtractor` with pytorch-fid's weights (see there for
which weights give numbers comparable with which papers).

Everything is float64 numpy. Statistics are accumulated batch by batch with
Chan et al.'s pairwise update of (count, mean, centred scatter), which equals
`np.mean` / `np.cov` over all features without keeping them (30k x 2048 floats)
and without the cancellation of E[x x^T] - mu mu^T.

The trace term needs no general matrix square root: with the symmetric PSD
square roots A_i = S_i^(1/2) (from `eigh`), S1 S2 is similar to
(A1 A2)(A1 A2)^T, so Tr((S1 S2)^(1/2)) is the sum of the singular values of
A1 A2. This is real by construction (pytorch-fid's `scipy.linalg.sqrtm` can
return small imaginary parts, which it drops) and defined for singular
covariances (fewer images than feature dimensions), where pytorch-fid retries
with eps * I added to both covariances; here round-off negative eigenvalues are
clipped at 0 instead. For S1 = S2 the result is exactly Tr(S1), so FID(X, X) is
0 up to round-off.

Reference statistics of the real images are cached as `.npz` (no pickles):
`compute_or_load_reference_stats`.
"""

from typing import Callable, Iterable, NamedTuple

from absl import logging
from etils import epath
import numpy as np

FeatureFn = Callable[[np.ndarray], np.ndarray]  # images [B, H, W, 3] -> [B, D].
_STAT_KEYS = ('mu', 'sigma', 'count', 'fingerprint')


class Statistics(NamedTuple):
  """Gaussian fit of a feature set.

  Attributes:
    mu: [D] float64 mean.
    sigma: [D, D] float64 covariance (ddof=1).
    count: number of feature vectors.
  """
  mu: np.ndarray
  sigma: np.ndarray
  count: int


class StatisticsAccumulator:
  """Mean and covariance of features seen batch by batch (float64)."""

  def __init__(self):
    self._count = 0
    self._mean = None
    self._scatter = None  # Sum over x of (x - mean)(x - mean)^T.

  def update(self, features: np.ndarray) -> 'StatisticsAccumulator':
    """Adds a batch.

    Args:
      features: [B, D] (any float dtype; B may be 0).
    Returns:
      self.
    """
    x = np.asarray(features, np.float64)
    if x.ndim != 2:
      raise ValueError(f'features must be [B, D], got shape {x.shape}')
    if self._mean is not None and x.shape[1] != self._mean.shape[0]:
      raise ValueError(f'features have {x.shape[1]} dimensions, earlier batches had '
                       f'{self._mean.shape[0]}')
    if not np.isfinite(x).all():
      raise ValueError('features contain NaN or infinity')
    n = x.shape[0]
    if n == 0:
      return self
    mean = x.mean(axis=0)
    centred = x - mean
    scatter = centred.T @ centred
    if self._count == 0:
      self._count, self._mean, self._scatter = n, mean, scatter
      return self
    total = self._count + n
    delta = mean - self._mean
    self._scatter = self._scatter + scatter + np.outer(delta, delta) * (
        self._count * n / total)
    self._mean = self._mean + delta * (n / total)
    self._count = total
    return self

  def result(self) -> Statistics:
    """The statistics so far; needs at least two feature vectors."""
    if self._count < 2:
      raise ValueError(
          f'a covariance needs at least 2 feature vectors, got {self._count}')
    return Statistics(self._mean.copy(), self._scatter / (self._count - 1), self._count)


def statistics(features: np.ndarray) -> Statistics:
  """Mean and covariance (ddof=1) of features [N, D], N >= 2, in float64."""
  return StatisticsAccumulator().update(features).result()


def compute_statistics(images: Iterable[np.ndarray], feature_fn: FeatureFn) -> Statistics:
  """Statistics of `feature_fn` over image batches.

  Args:
    images: iterable of [B, H, W, 3] batches (as `feature_fn` expects them).
    feature_fn: images -> [B, D] features, e.g. `InceptionExtractor.features`.
  Returns:
    Statistics over all images.
  """
  acc = StatisticsAccumulator()
  for batch in images:
    acc.update(feature_fn(batch))
  return acc.result()


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix (negative round-off -> 0)."""
  w, v = np.linalg.eigh(sigma)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _check_gaussian(name: str, mu: np.ndarray, sigma: np.ndarray) -> None:
  if mu.ndim != 1 or sigma.shape != (mu.shape[0],) * 2:
    raise ValueError(f'{name}: mu must be [D] and sigma [D, D], got {mu.shape} and '
                     f'{sigma.shape}')
  if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
    raise ValueError(f'{name}: statistics contain NaN or infinity')
  scale = max(np.abs(sigma).max(), 1e-300)
  if np.abs(sigma - sigma.T).max() > 1e-6 * scale:
    raise ValueError(f'{name}: sigma is not symmetric')


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

  Args:
    mu1, mu2: [D] means.
    sigma1, sigma2: [D, D] symmetric PSD covariances (may be singular).
  Returns:
    ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), float.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  _check_gaussian('first', mu1, sigma1)
  _check_gaussian('second', mu2, sigma2)
  if mu1.shape != mu2.shape:
    raise ValueError(f'feature sizes differ: {mu1.shape[0]} vs {mu2.shape[0]}')
  # Symmetrise: accumulated covariances are symmetric only up to round-off.
  root1 = _psd_sqrt((sigma1 + sigma1.T) / 2)
  root2 = _psd_sqrt((sigma2 + sigma2.T) / 2)
  tr_covmean = np.linalg.svd(root1 @ root2, compute_uv=False).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid_from_statistics(a: Statistics, b: Statistics) -> float:
  """`frechet_distance` of two `Statistics`."""
  return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def save_statistics(path: epath.PathLike, stats: Statistics,
                    fingerprint: str = '') -> None:
  """Writes statistics to an `.npz` (written to a temporary name, then renamed).

  Args:
    path: target file.
    stats: what to store.
    fingerprint: identifies the feature extractor (weights, image size); checked
      by `load_statistics`.
  """
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / (path.name + '.tmp')
  with tmp.open('wb') as f:
    np.savez(f, mu=stats.mu, sigma=stats.sigma, count=np.int64(stats.count),
             fingerprint=np.str_(fingerprint))
  tmp.rename(path)


def load_statistics(path: epath.PathLike, fingerprint: str | None = None) -> Statistics:
  """Reads statistics written by `save_statistics` (no pickles).

  Args:
    path: the `.npz` file.
    fingerprint: if given, must equal the stored one (same extractor).
  Returns:
    The statistics.
  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not readable statistics, or was made by another
      extractor.
  """
  path = epath.Path(path)
  if not path.exists():
    raise FileNotFoundError(f'FID statistics not found: {path}')
  hint = 'delete it to recompute the reference statistics'
  try:
    with path.open('rb') as f, np.load(f, allow_pickle=False) as data:
      missing = [k for k in _STAT_KEYS if k not in data.files]
      if missing:
        raise ValueError(f'entries {missing} are missing')
      mu, sigma = data['mu'].astype(np.float64), data['sigma'].astype(np.float64)
      count, stored = int(data['count']), str(data['fingerprint'])
  except Exception as e:  # pylint: disable=broad-except  # zip, pickle, header errors
    raise ValueError(f'{path} is not a readable FID statistics file ({type(e).__name__}: '
                     f'{e}); {hint}') from e
  try:
    _check_gaussian(str(path), mu, sigma)
  except ValueError as e:
    raise ValueError(f'{e}; {hint}') from e
  if fingerprint is not None and stored != fingerprint:
    raise ValueError(f'{path} was computed with a different feature extractor '
                     f'({stored!r}, now {fingerprint!r}); {hint}')
  return Statistics(mu, sigma, count)


def compute_or_load_reference_stats(path: epath.PathLike, images: Iterable[np.ndarray],
                                    feature_fn: FeatureFn,
                                    fingerprint: str = '', write: bool = True) -> Statistics:
  """Reference statistics of the real images, computed once and cached.

  Args:
    path: `.npz` cache file; read if it exists, else written.
    images: iterable of real-image batches [B, H, W, 3]; consumed only when
      the cache is missing (so it may be a lazy generator).
    feature_fn: images -> [B, D] features, e.g. `InceptionExtractor.features`.
    fingerprint: identifies the extractor (e.g. `InceptionExtractor.fingerprint`);
      a cache made with another one raises ValueError.
    write: write the cache when it is missing (False on all but one process).
  Returns:
    The statistics.
  """
  path = epath.Path(path)
  if path.exists():
    stats = load_statistics(path, fingerprint)
    logging.info('FID reference statistics read from %s (%d images).', path, stats.count)
    return stats
  stats = compute_statistics(images, feature_fn)
  if write:
    save_statistics(path, stats, fingerprint)
    logging.info('FID reference statistics of %d images written to %s.', stats.count, path)
  return stats
