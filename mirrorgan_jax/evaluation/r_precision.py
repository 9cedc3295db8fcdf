"""R-precision: does the DAMSM space rank an image's own caption above mismatched ones?

The AttnGAN / MirrorGAN protocol (reference spec section 8.2; the implementation
published with DM-GAN): for every image, the candidate texts are its true
caption and `num_mismatched` (99) captions of other classes; texts and the
image are compared by the cosine similarity of the DAMSM sentence feature and
image code; a hit at k is the true caption ranking among the top k. The hits
are shuffled and split into folds (10 x 3,000 for 30,000 images), and the mean
and standard deviation of the per-fold hit rates are reported.

Details fixed here (the protocol leaves them open or the reference differs):
- Mismatched captions are drawn uniformly *without* replacement from the pool
  entries whose class id differs from the image's (99 distinct captions; DM-GAN
  draws each independently, so it may repeat one, which is rare for real pools).
  A pool of every caption of every test image gives the reference's "random
  item of another class, random caption of it".
- Ties count against the true caption: its rank is the number of mismatched
  captions at least as similar, so a degenerate encoder (all features equal)
  scores 0, not 1.
- Folds hold `N // num_folds` images; the remainder is dropped (DM-GAN also
  drops one image per fold by an off-by-one, slicing 2,999 of 3,000; we do
  not). With fewer images than folds, all images form one fold (std 0).
- The standard deviation is numpy's population std (ddof=0), as DM-GAN's.

Pure numpy; feature arrays may be jax arrays.
"""

from typing import Sequence

import numpy as np

_COSINE_EPS = 1e-8  # As DAMSM's cosine: dot / max(|x| |y|, eps).
_CHUNK = 1024  # Images scored at once (bounds the [chunk, K, D] gather).


def _check_2d(name: str, x: np.ndarray) -> None:
  if x.ndim != 2:
    raise ValueError(f'{name} must be [N, D], got shape {x.shape}')


def _check_1d(name: str, x: np.ndarray, n: int) -> None:
  if x.shape != (n,):
    raise ValueError(f'{name} must be [{n}], got shape {x.shape}')


def eligible_counts(pool_class_ids: np.ndarray,
                    image_class_ids: np.ndarray) -> np.ndarray:
  """Pool entries of another class than each image's.

  Args:
    pool_class_ids: [M] class id of each pool caption.
    image_class_ids: [N] class id of each image.
  Returns:
    int [N]: how many mismatched captions each image can draw from.
  """
  pool_class_ids = np.asarray(pool_class_ids)
  image_class_ids = np.asarray(image_class_ids)
  if not len(pool_class_ids):
    return np.zeros(len(image_class_ids), np.int64)
  classes, counts = np.unique(pool_class_ids, return_counts=True)
  pos = np.minimum(np.searchsorted(classes, image_class_ids), len(classes) - 1)
  return len(pool_class_ids) - np.where(classes[pos] == image_class_ids, counts[pos], 0)


def sample_mismatched(pool_class_ids: np.ndarray, image_class_ids: np.ndarray,
                      num: int, rng: np.random.Generator) -> np.ndarray:
  """Draws `num` distinct pool indices of another class for every image.

  Sorting the pool by class makes each image's same-class entries one block;
  uniform draws over the other `M - n_c` positions skip that block. Rows with a
  repeated draw redraw the repeats until all are distinct; every step treats
  the eligible entries symmetrically, so each row is a uniform random subset.

  Args:
    pool_class_ids: [M] class ids of the pool.
    image_class_ids: [N] class ids of the images.
    num: mismatched captions per image.
    rng: numpy random generator.
  Returns:
    int [N, num] indices into the pool, none of the image's class.
  Raises:
    ValueError: an image has fewer than `num` eligible pool entries.
  """
  pool_class_ids = np.asarray(pool_class_ids)
  image_class_ids = np.asarray(image_class_ids)
  available = eligible_counts(pool_class_ids, image_class_ids)
  if len(available) and available.min() < num:
    worst = int(np.argmin(available))
    raise ValueError(
        f'too few mismatched captions: image {worst} (class '
        f'{image_class_ids[worst]}) has {available[worst]} pool captions of another '
        f'class, {num} are needed; use a larger pool or fewer mismatched captions')
  order = np.argsort(pool_class_ids, kind='stable')
  classes, starts = np.unique(pool_class_ids[order], return_index=True)
  pos = np.minimum(np.searchsorted(classes, image_class_ids), len(classes) - 1)
  has_block = classes[pos] == image_class_ids
  start = np.where(has_block, starts[pos], 0)[:, None]
  block = (len(pool_class_ids) - available)[:, None]

  n = len(image_class_ids)
  draws = np.floor(rng.random((n, num)) * available[:, None]).astype(np.int64)
  while True:
    draws.sort(axis=1)
    repeat = np.zeros_like(draws, dtype=bool)
    repeat[:, 1:] = draws[:, 1:] == draws[:, :-1]
    if not repeat.any():
      break
    rows = np.nonzero(repeat)[0]
    draws[repeat] = np.floor(rng.random(len(rows)) * available[rows]).astype(np.int64)
  sorted_index = draws + np.where(draws >= start, block, 0)
  return order[sorted_index]


def _norms(x: np.ndarray) -> np.ndarray:
  return np.sqrt(np.sum(x * x, axis=-1))


def true_caption_ranks(image_codes: np.ndarray, true_text_codes: np.ndarray,
                       pool_text_codes: np.ndarray, mismatched: np.ndarray) -> np.ndarray:
  """Rank of each true caption among its candidates (0 = first; ties count against).

  Args:
    image_codes: [N, D]; true_text_codes: [N, D]; pool_text_codes: [M, D].
    mismatched: int [N, K] pool indices of each image's mismatched captions.
  Returns:
    int [N]: mismatched candidates at least as similar as the true caption.
  """
  ranks = np.empty(len(image_codes), np.int64)
  for lo in range(0, len(image_codes), _CHUNK):
    img = image_codes[lo:lo + _CHUNK]
    # The true caption goes through the same arithmetic as the others, so an
    # exact tie (e.g. a duplicate caption) is seen as one.
    texts = np.concatenate([true_text_codes[lo:lo + _CHUNK, None],
                            pool_text_codes[mismatched[lo:lo + _CHUNK]]], axis=1)
    dots = np.einsum('nd,nkd->nk', img, texts)
    sims = dots / np.maximum(_norms(img)[:, None] * _norms(texts), _COSINE_EPS)
    ranks[lo:lo + _CHUNK] = np.sum(sims[:, 1:] >= sims[:, :1], axis=1)
  return ranks


def fold_statistics(hits: np.ndarray, num_folds: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
  """Mean and std over folds of hit rates, the images shuffled once for all columns.

  Args:
    hits: bool or 0/1 [N, C], one column per metric (e.g. per k).
    num_folds: folds; `N // num_folds` images each, the remainder dropped; one
      fold of all N images if N < num_folds.
    rng: numpy random generator.
  Returns:
    (mean over folds [C], population std over folds [C], number of folds).
  """
  hits = np.asarray(hits, np.float64)
  n = hits.shape[0]
  folds = num_folds if n >= num_folds else 1
  size = n // folds
  shuffled = hits[rng.permutation(n)][:folds * size]
  rates = shuffled.reshape(folds, size, -1).mean(axis=1)
  return rates.mean(axis=0), rates.std(axis=0), folds


def r_precision(image_codes, true_text_codes, pool_text_codes, pool_class_ids,
                image_class_ids, rng: np.random.Generator, num_mismatched: int = 99,
                ks: Sequence[int] = (1, 2, 3), num_folds: int = 10) -> dict[str, float]:
  """R-precision of images against their captions (AttnGAN / MirrorGAN protocol).

  Args:
    image_codes: DAMSM global image codes [N, D].
    true_text_codes: sentence features of each image's own caption [N, D].
    pool_text_codes: sentence features of the captions mismatched ones are
      drawn from [M, D] (e.g. every caption of the test split).
    pool_class_ids: class id of each pool caption [M].
    image_class_ids: class id of each image [N]; only pool captions of other
      classes are drawn for it.
    rng: numpy random generator (draws and fold shuffling).
    num_mismatched: mismatched captions per image (protocol: 99).
    ks: hit@k cut-offs (protocol reports R-precision = top-1).
    num_folds: folds for mean +- std (protocol: 10).
  Returns:
    {'top{k}_mean', 'top{k}_std' for k in ks, 'num_images', 'num_folds'}.
  Raises:
    ValueError: inconsistent shapes, bad arguments, or too few mismatched
      captions of another class for some image.
  """
  image_codes = np.asarray(image_codes, np.float32)
  true_text_codes = np.asarray(true_text_codes, np.float32)
  pool_text_codes = np.asarray(pool_text_codes, np.float32)
  pool_class_ids = np.asarray(pool_class_ids)
  image_class_ids = np.asarray(image_class_ids)
  for name, x in (('image_codes', image_codes), ('true_text_codes', true_text_codes),
                  ('pool_text_codes', pool_text_codes)):
    _check_2d(name, x)
  n, d = image_codes.shape
  if true_text_codes.shape != (n, d):
    raise ValueError(f'true_text_codes must match image_codes {image_codes.shape}, got '
                     f'{true_text_codes.shape}')
  if pool_text_codes.shape[1] != d:
    raise ValueError(f'pool_text_codes must have {d} features like image_codes, got '
                     f'shape {pool_text_codes.shape}')
  _check_1d('pool_class_ids', pool_class_ids, pool_text_codes.shape[0])
  _check_1d('image_class_ids', image_class_ids, n)
  if n == 0:
    raise ValueError('r_precision needs at least one image')
  if num_mismatched < 1 or num_folds < 1:
    raise ValueError(f'num_mismatched ({num_mismatched}) and num_folds ({num_folds}) '
                     'must be >= 1')
  if not ks or min(ks) < 1 or max(ks) > num_mismatched + 1:
    raise ValueError(f'ks {tuple(ks)} must lie in [1, {num_mismatched + 1}] (candidates)')

  mismatched = sample_mismatched(pool_class_ids, image_class_ids, num_mismatched, rng)
  ranks = true_caption_ranks(image_codes, true_text_codes, pool_text_codes, mismatched)
  hits = np.stack([ranks < k for k in ks], axis=1)  # [N, len(ks)]
  means, stds, folds = fold_statistics(hits, num_folds, rng)
  out = {'num_images': n, 'num_folds': folds}
  for i, k in enumerate(ks):
    out[f'top{k}_mean'] = float(means[i])
    out[f'top{k}_std'] = float(stds[i])
  return out
