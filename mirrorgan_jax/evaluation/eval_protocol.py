"""The evaluation protocol: which image and caption each sample shows, its noise,
and the glue from per-sample outputs to R-precision, oracle and redescription
attribute scores.

Sample k shows eval image k % M (M eval images in TFDS file order) with its
caption (k // M) % N; its noise comes from `fold_in(key, k)`, so it does not
depend on the batching. See `evaluator` for the metrics.
"""

import math
from typing import Any, Iterator, NamedTuple, Sequence

from absl import logging
import jax
import numpy as np

from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import shapes_labels
from mirrorgan_jax.evaluation import oracle_accuracy
from mirrorgan_jax.evaluation import r_precision
from mirrorgan_jax.evaluation import redescription_attributes


class SamplePlan(NamedTuple):
  """Attributes: image_index [S] and caption_index [S] (int64) of each sample."""
  image_index: np.ndarray
  caption_index: np.ndarray


def sample_plan(num_images: int, captions_per_image: int, num_samples: int) -> SamplePlan:
  """Sample k: eval image k % M with its caption (k // M) % N."""
  for name, value in (('num_images', num_images), ('num_samples', num_samples),
                      ('captions_per_image', captions_per_image)):
    if value < 1:
      raise ValueError(f'{name} must be >= 1, got {value}')
  k = np.arange(num_samples)
  return SamplePlan(k % num_images, (k // num_images) % captions_per_image)


def plan_batches(num_samples: int, batch_size: int
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(sample ids [B], mask [B]) batches; the last is padded with ids >= num_samples."""
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  for start in range(0, num_samples, batch_size):
    ids = np.arange(start, start + batch_size)
    yield ids, ids < num_samples


def sample_noise(key: jax.Array, sample_ids: jax.Array, dim: int) -> jax.Array:
  """N(0, I) rows [B, dim]; row b depends only on (key, sample_ids[b])."""
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (dim,)))(
      sample_ids)


def r_precision_scores(image_codes: np.ndarray, plan: SamplePlan,
                       caption_codes: np.ndarray, caption_len: np.ndarray,
                       class_ids: np.ndarray, *, num_mismatched: int, num_folds: int,
                       seed: int) -> dict[str, float] | None:
  """R-precision of samples against their captions; mismatched ones from all captions.

  Args:
    image_codes: DAMSM codes of the samples [S, D].
    plan: eval image and caption of each sample.
    caption_codes: sentence codes of every eval caption [M, N, D].
    caption_len: [M, N]; captions of length 0 do not exist (not in the pool).
    class_ids: [M] class of each eval image (mismatches are of other classes).
    num_mismatched: wanted per sample; fewer when the pool lacks them (logged).
    num_folds: folds for mean and std.
    seed: draws and fold shuffling.
  Returns:
    `r_precision.r_precision`'s dict plus 'num_mismatched'; None when no
    caption of another class exists.
  """
  valid = np.asarray(caption_len) > 0
  pool = np.asarray(caption_codes)[valid]
  pool_classes = np.repeat(np.asarray(class_ids), valid.sum(axis=1))
  image_classes = np.asarray(class_ids)[plan.image_index]
  available = int(r_precision.eligible_counts(pool_classes, image_classes).min())
  num = min(num_mismatched, available)
  if num < num_mismatched:
    logging.warning('R-precision: a sample has only %d eval captions of another class; '
                    'using %d mismatched captions instead of %d.', available, num,
                    num_mismatched)
  if num < 1:
    return None
  true = np.asarray(caption_codes)[plan.image_index, plan.caption_index]
  out = r_precision.r_precision(image_codes, true, pool, pool_classes, image_classes,
                                np.random.default_rng(seed), num_mismatched=num,
                                num_folds=num_folds)
  return {**out, 'num_mismatched': num}


def _planned(records: shapes_labels.TestRecords, plan: SamplePlan
             ) -> tuple[list[str], dict[str, np.ndarray], np.ndarray]:
  """Per sample [S]: its input caption, its eval image's labels and object count."""
  captions = [records.captions[j][c]
              for j, c in zip(plan.image_index, plan.caption_index)]
  labels = {a: v[plan.image_index] for a, v in records.labels.items()}
  return captions, labels, records.num_objects[plan.image_index]


def oracle_scores(predictions: dict[str, np.ndarray],
                  records: shapes_labels.TestRecords,
                  plan: SamplePlan) -> dict[str, tuple[float, int]]:
  """{attribute: (accuracy, n)} of per-sample predictions [S], scored iff mentioned."""
  captions, labels, num_objects = _planned(records, plan)
  mask = oracle_accuracy.mention_mask(captions, num_objects)
  return oracle_accuracy.accuracy(predictions, labels, mask)


def redescription_attribute_scores(
    vocab: vocab_lib.Vocabulary, real: Sequence[Sequence[int]],
    generated: Sequence[Sequence[int]], records: shapes_labels.TestRecords,
    plan: SamplePlan) -> dict[str, tuple[dict[str, tuple[float, int]], dict[str, float]]]:
  """Attribute accuracy of the redescriptions of the real eval images and samples.

  Args:
    vocab: decodes the token ids.
    real: redescription of each eval image [M] (TFDS file order).
    generated: redescription of each sample [S].
    records: the eval split's captions and labels.
    plan: eval image and caption of each sample.
  Returns:
    {'real' | 'generated': ({attribute: (accuracy, n)}, {attribute: stated
    fraction})}: `redescription_attributes.score` and `.stated_fraction`, the
    samples scored against their eval image's labels where their input caption
    states the attribute.
  """
  ra = redescription_attributes
  captions, labels, num_objects = _planned(records, plan)
  out = {}
  for name, rows, args in (('real', real, (records.labels, records.num_objects)),
                           ('generated', generated, (labels, num_objects, captions))):
    parsed = [ra.parse(vocab.decode(ids)) for ids in rows]
    out[name] = (ra.score(parsed, *args), ra.stated_fraction(parsed, *args[1:]))
  return out


def flat_scalars(results: dict[str, Any], prefix: str = '') -> dict[str, float]:
  """The finite numbers of nested results as {'a/b/c': value} (TensorBoard)."""
  out = {}
  for key, value in results.items():
    if isinstance(value, dict):
      out.update(flat_scalars(value, f'{prefix}{key}/'))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      if math.isfinite(value):
        out[f'{prefix}{key}'] = float(value)
  return out
