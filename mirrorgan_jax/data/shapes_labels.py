"""captioned_shapes with its ground-truth attributes, in TFDS file order.

The oracle phase trains on these labels and the evaluation scores generated
images against them: per image, the main object's (objects[0]) shape, colour,
size and position, the object count minus one ('count') and the background,
as int32 class ids in the order of `shapes_scene`'s tables. `test_records`
lists the eval split in the order of `input_pipeline`'s eval set, so generated
image i can be scored against test image i.
"""

from typing import Any, Iterator, NamedTuple

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.data import batch_keys
from mirrorgan_jax.data import preprocessing
from mirrorgan_jax.models import oracle as oracle_lib

ATTRIBUTES = oracle_lib.ATTRIBUTES
OBJECT_ATTRIBUTES = oracle_lib.OBJECT_ATTRIBUTES
Batch = dict[str, np.ndarray]


def _labels(ex: dict[str, Any]) -> dict[str, tf.Tensor]:
  """int32 labels of a TFDS example: main object (objects[0]), count, background."""
  objects = ex['objects']
  num = tf.shape(objects['shape'])[0]
  out = {a: tf.cast(objects[a][0], tf.int32) for a in OBJECT_ATTRIBUTES}
  out['count'] = num - 1
  out['background'] = tf.cast(ex['background'], tf.int32)
  out['num_objects'] = num
  return out


def read(config: ml_collections.ConfigDict, split: str, keep: str) -> tf.data.Dataset:
  """{keep: encoded image or captions, labels} of `split` in TFDS file order."""
  builder = input_pipeline.get_builder(config)
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()},
                          read_config=tfds.ReadConfig(interleave_cycle_length=1))
  return ds.map(lambda ex: {keep: ex[keep], **_labels(ex)})


def decode(size: int):
  """Encoded image -> float32 [size, size, 3] in [-1, 1] (as `input_pipeline`)."""
  def fn(ex):
    image = tf.io.decode_image(ex['image'], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    image = preprocessing.image_pyramid(tf.cast(image, tf.float32), (size,))
    return {**ex, 'image': image[batch_keys.image_key(size)]}
  return fn


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  return options


def steps_per_epoch(config: ml_collections.ConfigDict) -> int:
  """Train batches per epoch (a short last batch is dropped)."""
  builder = input_pipeline.get_builder(config)
  num = builder.info.splits[config.data.train_split].num_examples
  steps = num // config.oracle.batch_size
  if steps == 0:
    raise ValueError(f'the train split has {num} examples, fewer than one oracle batch '
                     f'of {config.oracle.batch_size}')
  return steps


def train_batches(config: ml_collections.ConfigDict, start_step: int = 0
                  ) -> Iterator[Batch]:
  """Endless shuffled train batches, this process's share, from batch `start_step`.

  Epoch e is a shuffle of the whole split seeded by (config.seed, e), so
  skipping `start_step` batches (of encoded records, cheap) resumes exactly.

  Returns:
    Iterator of {'image' float32 [b, S, S, 3], attribute labels int32 [b],
    'num_objects' int32 [b]}, b = oracle.batch_size / process count.
  """
  batch, processes = config.oracle.batch_size, jax.process_count()
  if batch % processes:
    raise ValueError(f'oracle.batch_size {batch} is not divisible by {processes} '
                     'processes')
  local, index = batch // processes, jax.process_index()
  steps = steps_per_epoch(config)
  # Cached encoded: decoding comes after the resume skip.
  base = read(config, config.data.train_split, 'image').cache()

  def epoch_dataset(epoch):
    return base.shuffle(steps * batch + batch, seed=config.seed * 1_000_003 + epoch,
                        reshuffle_each_iteration=False).take(steps * batch)

  start_epoch, offset = divmod(start_step, steps)
  ds = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch_dataset)
  ds = ds.skip(offset * batch).enumerate()
  # Every process walks the same order and keeps its rows of each global batch.
  ds = ds.filter(lambda i, _: (i % batch) // local == index).map(lambda _, ex: ex)
  ds = ds.map(decode(config.oracle.image_size), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local, drop_remainder=True).prefetch(2).with_options(_options())
  return iter(tfds.as_numpy(ds))


def eval_batches(config: ml_collections.ConfigDict, batch_size: int) -> tf.data.Dataset:
  """The whole eval split in file order, batches of at most `batch_size`.

  Returns:
    A tf.data.Dataset of {'image', labels, 'num_objects'} (use tfds.as_numpy).
  """
  ds = read(config, config.data.eval_split, 'image')
  ds = ds.map(decode(config.oracle.image_size), num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size).prefetch(2).with_options(_options())


class TestRecords(NamedTuple):
  """The eval split in TFDS file order, without images.

  Attributes:
    captions: per image, its caption strings.
    labels: {attribute: int32 [N]} ground truth (object attributes of objects[0]).
    num_objects: int32 [N], 1 or 2.
  """
  captions: list[list[str]]
  labels: dict[str, np.ndarray]
  num_objects: np.ndarray


def test_records(config: ml_collections.ConfigDict) -> TestRecords:
  """Captions and labels of `config.data.eval_split`, in `input_pipeline`'s order."""
  ds = read(config, config.data.eval_split, 'captions')
  captions, columns = [], {k: [] for k in ATTRIBUTES + ('num_objects',)}
  for batch in tfds.as_numpy(ds.batch(1024)):
    captions.extend([c.decode('utf-8') for c in row] for row in batch['captions'])
    for k, column in columns.items():
      column.append(batch[k])
  if not captions:
    raise ValueError(f'the eval split {config.data.eval_split!r} is empty')
  columns = {k: np.concatenate(v).astype(np.int32) for k, v in columns.items()}
  num_objects = columns.pop('num_objects')
  return TestRecords(captions=captions, labels=columns, num_objects=num_objects)
