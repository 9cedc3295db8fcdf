"""Inception-v3 for `--mode eval` and the cached FID statistics of the real images.

The extractor comes from `eval.inception_path` (a converted artifact), random
weights when `eval.inception_random_weights` (tests only), or is absent (IS and
FID are then reported as not computed, with the reason). The real eval images'
statistics are cached under a fingerprint of extractor and data, so other
weights or other images never reuse them.
"""

from typing import Iterable, Iterator

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np

from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.evaluation import fid
from mirrorgan_jax.evaluation import inception_metrics
from mirrorgan_jax.models import factory

REFERENCE_FILE = 'fid_reference.npz'  # Default FID cache under <workdir>/eval.
RANDOM_INCEPTION_SIZE = 75  # Random weights: the smallest input Inception-v3 takes.


def inception_extractor(config: ml_collections.ConfigDict
                        ) -> tuple[inception_metrics.InceptionExtractor | None, str]:
  """The configured extractor (None without weights) and a note for the JSON."""
  e = config.eval
  if e.inception_path:
    extractor = inception_metrics.InceptionExtractor.from_artifact(
        e.inception_path, batch_size=e.batch_size, quantize=True)
    return extractor, (f'{extractor.fingerprint}; comparable with papers only for the '
                       'weights named in evaluation/inception_metrics.py')
  if e.inception_random_weights:
    logging.warning('Eval: Inception-v3 with RANDOM weights (eval.inception_random_'
                    'weights): IS and FID are meaningless.')
    extractor = inception_metrics.InceptionExtractor.with_random_weights(
        batch_size=e.batch_size, image_size=RANDOM_INCEPTION_SIZE)
    return extractor, ('RANDOM Inception-v3 weights (eval.inception_random_weights): IS '
                       'and FID are meaningless, for tests and smoke runs only')
  reason = ('not computed: eval.inception_path is empty (convert weights with '
            '`python -m mirrorgan_jax.pretrained inception`)')
  logging.warning('Eval: IS and FID %s.', reason)
  return None, reason


def reference_path(config: ml_collections.ConfigDict,
                   workdir: epath.PathLike) -> epath.Path:
  """The FID reference cache: `eval.fid_reference_path` or `<workdir>/eval/...npz`."""
  if config.eval.fid_reference_path:
    return epath.Path(config.eval.fid_reference_path)
  return epath.Path(workdir) / 'eval' / REFERENCE_FILE


def reference_fingerprint(config: ml_collections.ConfigDict,
                          extractor_fingerprint: str) -> str:
  """Extractor and real images (dataset, split, size): the cache's identity."""
  d = config.data
  size = factory.stage_sizes(config)[-1]
  return (f'{extractor_fingerprint}; real {d.name}/{d.builder_config} '
          f'{d.eval_split} split at {size}px')


def _real_images(batches: Iterable[dict[str, np.ndarray]], key: str
                 ) -> Iterator[np.ndarray]:
  for batch in batches:  # Nothing is read until iterated.
    yield batch[key][batch['mask'].astype(bool)]


def reference_statistics(config: ml_collections.ConfigDict, workdir: epath.PathLike,
                         extractor, eval_batches: Iterable[dict[str, np.ndarray]]
                         ) -> fid.Statistics:
  """FID statistics of the real eval images, from the cache or computed and cached.

  Args:
    config: the run's config (cache path, data description).
    workdir: the run directory.
    extractor: has `fingerprint` and `features(images [B, H, W, 3]) -> [B, F]`.
    eval_batches: the eval pipeline's batches; read only when there is no cache.
  Raises:
    ValueError: the cache was made with another extractor or other images.
  """
  key = input_pipeline.final_image_key(config)
  return fid.compute_or_load_reference_stats(
      reference_path(config, workdir), _real_images(eval_batches, key),
      extractor.features, reference_fingerprint(config, extractor.fingerprint),
      write=jax.process_index() == 0)  # Every process computes them; one writes.
