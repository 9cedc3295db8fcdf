"""Tests of evaluation/fid.py against hand-computed Frechet distances.

Closed forms used: for commuting covariances S1 = Q diag(a) Q^T and
S2 = Q diag(b) Q^T, Tr((S1 S2)^(1/2)) = sum sqrt(a b), so
FID = ||m1 - m2||^2 + sum (sqrt(a) - sqrt(b))^2. For 2x2 matrices with
non-negative eigenvalues, Tr(M^(1/2)) = sqrt(Tr M + 2 sqrt(det M)).
"""

import numpy as np
import pytest
from scipy import linalg

from mirrorgan_jax.evaluation import fid


def _random_spd(rng, d, rank=None):
  x = rng.normal(size=(d, rank or 2 * d))
  return x @ x.T / x.shape[1]


def _rotation(rng, d):
  q, _ = np.linalg.qr(rng.normal(size=(d, d)))
  return q


def test_statistics_equal_numpy_mean_and_cov():
  rng = np.random.default_rng(0)
  x = rng.normal(3.0, 2.0, size=(203, 7)) @ rng.normal(size=(7, 7))
  acc = fid.StatisticsAccumulator()
  # Includes an empty and two 1-row batches.
  for lo, hi in ((0, 1), (1, 1), (1, 50), (50, 51), (51, 203)):
    acc.update(x[lo:hi].astype(np.float32) if lo == 51 else x[lo:hi])
  stats = acc.result()
  x[51:] = x[51:].astype(np.float32)  # The float32 batch, as the accumulator saw it.
  assert stats.count == 203 and stats.mu.dtype == np.float64
  np.testing.assert_allclose(stats.mu, x.mean(axis=0), rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(stats.sigma, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-10)


def test_statistics_errors():
  with pytest.raises(ValueError, match='at least 2'):
    fid.statistics(np.zeros((1, 3)))
  with pytest.raises(ValueError, match=r'\[B, D\]'):
    fid.statistics(np.zeros((4, 3, 1)))
  with pytest.raises(ValueError, match='NaN'):
    fid.statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))
  acc = fid.StatisticsAccumulator().update(np.zeros((3, 4)))
  with pytest.raises(ValueError, match='4'):
    acc.update(np.zeros((3, 5)))


@pytest.mark.parametrize('n', [500, 20])  # Full-rank and singular (N < D) covariance.
def test_fid_of_a_set_with_itself_is_zero(n):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(n, 64)) @ rng.normal(size=(64, 64)) + 5.0
  s = fid.statistics(x)
  scale = 2 * np.trace(s.sigma)
  assert abs(fid.fid_from_statistics(s, s)) <= 1e-6 * scale


def test_diagonal_closed_form_by_hand():
  # a = (1, 4, 9), b = (4, 1, 16): sum (sqrt a - sqrt b)^2 = 1 + 1 + 1 = 3;
  # m2 - m1 = (1, 2, 2): 9. FID = 12.
  a, b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 16.0])
  m1, m2 = np.zeros(3), np.array([1.0, 2.0, 2.0])
  assert fid.frechet_distance(m1, a, m2, b) == pytest.approx(12.0, rel=1e-12)
  assert fid.frechet_distance(m2, b, m1, a) == pytest.approx(12.0, rel=1e-12)
  q = _rotation(np.random.default_rng(2), 3)  # Same spectra, rotated together.
  assert fid.frechet_distance(m1, q @ a @ q.T, m2, q @ b @ q.T) == pytest.approx(12.0,
                                                                                rel=1e-10)


def test_non_commuting_2x2_by_hand():
  s1, s2 = np.array([[2.0, 1.0], [1.0, 2.0]]), np.diag([1.0, 4.0])
  # S1 S2 = [[2, 4], [1, 8]]: trace 10, det 3 * 4 = 12.
  want = 2.0 + 2.0 + 1.0 + 4.0 - 2.0 * np.sqrt(10.0 + 2.0 * np.sqrt(12.0))
  assert fid.frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(
      want, rel=1e-12)


def test_singular_covariances_by_hand():
  # diag(4, 0) vs diag(1, 0): (2 - 1)^2 = 1; pytorch-fid's sqrtm needs eps here.
  got = fid.frechet_distance(np.zeros(2), np.diag([4.0, 0.0]), np.zeros(2),
                             np.diag([1.0, 0.0]))
  assert got == pytest.approx(1.0, rel=1e-12)


def test_matches_scipy_sqrtm_on_random_covariances():
  rng = np.random.default_rng(3)
  s1, s2 = _random_spd(rng, 32), _random_spd(rng, 32)
  m1, m2 = rng.normal(size=32), rng.normal(size=32)
  covmean = linalg.sqrtm(s1 @ s2)  # An independent (Schur) matrix square root.
  want = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2) - 2 * np.trace(covmean).real
  assert fid.frechet_distance(m1, s1, m2, s2) == pytest.approx(want, rel=1e-9)


def test_sample_statistics_approach_the_closed_form():
  rng = np.random.default_rng(4)
  a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
  m1, m2 = np.zeros(3), np.array([1.0, 2.0, 2.0])
  q = _rotation(rng, 3)  # Non-diagonal sample covariances.
  def batches(mean, var):
    for _ in range(100):
      yield (mean + rng.normal(size=(10_000, 3)) * np.sqrt(var)) @ q.T
  s1 = fid.compute_statistics(batches(m1, a), lambda x: x)
  s2 = fid.compute_statistics(batches(m2, b), lambda x: x)
  assert s1.count == 1_000_000
  # The noise is dominated by 2 (m2 - m1) . (mean errors), std
  # 2 sqrt(sum (m2 - m1)^2 (a + b) / N) = 2 sqrt(125 / 1e6) = 0.022; allow 4.5 std.
  assert fid.fid_from_statistics(s1, s2) == pytest.approx(12.0, abs=0.1)


def test_frechet_distance_input_checks():
  eye = np.eye(2)
  with pytest.raises(ValueError, match='sizes differ'):
    fid.frechet_distance(np.zeros(2), eye, np.zeros(3), np.eye(3))
  with pytest.raises(ValueError, match=r'\[D, D\]'):
    fid.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), eye)
  with pytest.raises(ValueError, match='symmetric'):
    fid.frechet_distance(np.zeros(2), np.array([[1.0, 1.0], [0.0, 1.0]]), np.zeros(2),
                         eye)
  with pytest.raises(ValueError, match='NaN'):
    fid.frechet_distance(np.array([np.nan, 0.0]), eye, np.zeros(2), eye)


class _CountingExtractor:
  """Feature function that records how often it runs."""

  def __init__(self):
    self.calls = 0

  def __call__(self, images):
    self.calls += 1
    return images.reshape(images.shape[0], -1)[:, :5] * 2.0


def _image_batches(seed=5):
  rng = np.random.default_rng(seed)
  return [rng.uniform(-1, 1, size=(8, 4, 4, 3)) for _ in range(3)]


def test_reference_stats_are_cached(tmp_path):
  path = tmp_path / 'ref' / 'cub_test.npz'
  extractor = _CountingExtractor()
  first = fid.compute_or_load_reference_stats(path, _image_batches(), extractor, 'net A')
  assert extractor.calls == 3 and path.exists()
  feats = np.concatenate([extractor(b) for b in _image_batches()])
  np.testing.assert_allclose(first.mu, feats.mean(0), rtol=1e-12)
  np.testing.assert_allclose(first.sigma, np.cov(feats, rowvar=False), rtol=1e-10)

  extractor.calls = 0
  def must_not_run():
    raise AssertionError('images consumed although the cache exists')
    yield  # pylint: disable=unreachable
  second = fid.compute_or_load_reference_stats(path, must_not_run(), extractor, 'net A')
  assert extractor.calls == 0 and second.count == 24
  np.testing.assert_array_equal(second.mu, first.mu)
  np.testing.assert_array_equal(second.sigma, first.sigma)
  with np.load(path, allow_pickle=False) as data:  # Plain arrays, no pickles.
    assert sorted(data.files) == ['count', 'fingerprint', 'mu', 'sigma']
  with pytest.raises(ValueError, match='different feature extractor.*net A.*net B'):
    fid.compute_or_load_reference_stats(path, must_not_run(), extractor, 'net B')
  assert not list(tmp_path.glob('ref/*.tmp'))


def test_corrupt_or_wrong_cache_files_give_clear_errors(tmp_path):
  garbage = tmp_path / 'garbage.npz'
  garbage.write_bytes(b'PK\x03\x04 this is not a zip file')
  with pytest.raises(ValueError, match='not a readable FID statistics file.*delete it'):
    fid.compute_or_load_reference_stats(garbage, _image_batches(), _CountingExtractor())
  partial = tmp_path / 'partial.npz'
  np.savez(partial, mu=np.zeros(3))
  with pytest.raises(ValueError, match="missing"):
    fid.load_statistics(partial)
  pickled = tmp_path / 'pickled.npz'
  np.savez(pickled, mu=np.zeros(2), sigma=np.eye(2), count=np.int64(2),
           fingerprint=np.array([{'a': 1}], dtype=object))
  with pytest.raises(ValueError, match='not a readable'):
    fid.load_statistics(pickled)
  bad_shape = tmp_path / 'bad_shape.npz'
  np.savez(bad_shape, mu=np.zeros(2), sigma=np.eye(3), count=np.int64(2),
           fingerprint=np.str_(''))
  with pytest.raises(ValueError, match=r'\[D, D\].*delete it'):
    fid.load_statistics(bad_shape)
  with pytest.raises(FileNotFoundError, match='not found'):
    fid.load_statistics(tmp_path / 'absent.npz')
