"""Input pipeline throughput: examples/s of `create_datasets` for a config.

  python -m mirrorgan_jax.benchmark.input_pipeline --config configs/shapes.py \
      --steps 200 --json /tmp/pipeline.json

Builds the dataset if needed (offline for captioned_shapes), skips `--warmup`
batches, then times `--steps` train batches. Prints a table and writes JSON.
"""

import json
import os
import time

from absl import app
from absl import flags
from ml_collections import config_flags

from mirrorgan_jax.data import input_pipeline

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config.')
_STEPS = flags.DEFINE_integer('steps', 200, 'Timed batches.')
_WARMUP = flags.DEFINE_integer('warmup', 20, 'Untimed batches first (fills buffers).')
_JSON = flags.DEFINE_string('json', None, 'Where to write the results as JSON.')


def measure(config, steps: int, warmup: int) -> dict:
  """Times `steps` train batches after `warmup`; returns the numbers."""
  vocab = input_pipeline.build_vocabulary(config)
  t0 = time.perf_counter()
  train, _, info = input_pipeline.create_datasets(config, vocab)
  for _ in range(warmup):
    next(train)
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(steps):
    next(train)
  seconds = time.perf_counter() - t0
  batch = config.train.batch_size
  return {
      'dataset': config.data.name + (f'/{config.data.builder_config}'
                                     if config.data.builder_config else ''),
      'image_sizes': list(info.image_sizes), 'batch_size': batch,
      'random_crop_flip': bool(config.data.random_crop_flip),
      'cpu_cores': os.cpu_count(), 'startup_and_warmup_s': round(first, 2),
      'batches_per_s': round(steps / seconds, 2),
      'examples_per_s': round(steps * batch / seconds, 1),
  }


def main(argv):
  del argv
  result = measure(_CONFIG.value, _STEPS.value, _WARMUP.value)
  width = max(map(len, result))
  print('\n'.join(f'{k:<{width}}  {v}' for k, v in result.items()))
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
