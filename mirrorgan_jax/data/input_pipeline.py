"""tf.data input pipelines: deterministic, resumable, sharded per process.

`create_datasets(config, vocab)` gives an endless train iterator and a
re-iterable eval set of numpy batches (dicts):

  image_<s>        float32 [B, s, s, 3] in [-1, 1], one per generator stage size s
  caption_ids      int32 [B, words_num], zero padded; caption_len int32 [B]
  mismatch_ids     a caption of another image of the batch (the D's wrong-pair
  mismatch_len     term): the global batch's captions rolled by one
  class_id         int32 [B] (DAMSM same-class negatives)
  eval only: all_caption_ids [B, N, words_num], all_caption_len [B, N] and
             mask bool [B] (False on the padding of the last batch)

Order and randomness are a pure function of (config.seed, epoch, position):
each epoch is a seeded shuffle of the (undecoded) examples, and every random
choice (caption, dropped words, crop, flip) uses a stateless seed made from the
example's epoch and position. `start_step` therefore resumes exactly where an
uninterrupted run would be, by skipping undecoded records (cheap).

Processes: every process walks the same global order of examples (train and eval)
and keeps its rows of each global batch (filtered before decoding), so a run over
several processes sees exactly the batches of one process holding all the devices.
"""

import dataclasses
from typing import Iterable, Iterator

from absl import logging
import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import batch_keys
from mirrorgan_jax.data import captioned_shapes
from mirrorgan_jax.data import coco
from mirrorgan_jax.data import cub
from mirrorgan_jax.data import preprocessing
from mirrorgan_jax.models import factory

Batch = dict[str, np.ndarray]
_FEATURES = ('image', 'captions', 'class_id')


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What the training loop needs to know about the data."""
  image_sizes: tuple[int, ...]  # Real image sides, one per generator stage.
  local_batch_size: int  # Examples per batch on this process.
  steps_per_epoch: int  # Train batches per epoch (every process agrees).
  num_train_examples: int  # In the whole train split.
  num_eval_examples: int  # In the whole eval split.


def final_image_key(config: ml_collections.ConfigDict) -> str:
  """Batch key of the final stage's real image ('image_64'): what DAMSM, STREAM,
  the captioner loss and the evaluations read."""
  return batch_keys.image_key(factory.stage_sizes(config)[-1])


# The builders `data.name` can name; importing their modules registers them with TFDS.
BUILDERS = (captioned_shapes.CaptionedShapes, cub.Cub, coco.Coco2014Captions)


def _builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  d = config.data
  name = f'{d.name}/{d.builder_config}' if d.builder_config else d.name
  return tfds.builder(name, data_dir=d.data_dir or None)


def is_prepared(config: ml_collections.ConfigDict) -> bool:
  """Whether `config.data`'s TFDS dataset is already built in its data dir."""
  return _builder(config).is_prepared()


def get_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The prepared TFDS builder of `config.data` (builds it offline if needed)."""
  d = config.data
  builder = _builder(config)
  download_config = tfds.download.DownloadConfig(manual_dir=d.manual_dir or None)
  builder.download_and_prepare(download_config=download_config)
  return builder


def _read(builder, split: str) -> tf.data.Dataset:
  """Records of `split` in file order, images left encoded (decoded later)."""
  ds = builder.as_dataset(
      split=split, shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(interleave_cycle_length=1))
  return ds.map(lambda ex: {k: ex[k] for k in _FEATURES})


def eval_captions(config: ml_collections.ConfigDict, num: int) -> list[str]:
  """The first caption of each of the first `num` eval images, in file order.

  Raises:
    FileNotFoundError: the dataset is not prepared in `config.data.data_dir`
      (nothing is built or downloaded here).
  """
  builder = _builder(config)
  if not builder.is_prepared():
    raise FileNotFoundError(f'{builder.name} is not prepared in '
                            f'{config.data.data_dir or "the default TFDS data dir"}')
  ds = _read(builder, config.data.eval_split).take(num).map(lambda ex: ex['captions'][0])
  return [c.decode('utf-8') for c in tfds.as_numpy(ds)]


def build_vocabulary(config: ml_collections.ConfigDict) -> vocab_lib.Vocabulary:
  """Vocabulary of every train + eval caption (reference §1.1), or the given file."""
  if config.data.vocab_path:
    return vocab_lib.Vocabulary.load(config.data.vocab_path)
  builder = get_builder(config)
  captions = []
  for split in (config.data.train_split, config.data.eval_split):
    ds = builder.as_dataset(split=split, decoders={'image': tfds.decode.SkipDecoding()})
    for batch in tfds.as_numpy(ds.map(lambda ex: ex['captions']).batch(1024)):
      captions.extend(c.decode('utf-8') for c in batch.reshape(-1))
  vocab = vocab_lib.Vocabulary.build(captions)
  logging.info('Built a vocabulary of %d words from %d captions.', len(vocab), len(captions))
  return vocab


def _example_seed(seed: int, epoch: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
  """Stateless seed of one example from (run seed, epoch, position in epoch)."""
  return tf.stack([tf.constant(seed, tf.int64),
                   tf.cast(epoch, tf.int64) * (1 << 32) + tf.cast(position, tf.int64)])


class _Preprocessor:
  """Turns a raw record into model inputs (train: random; eval: deterministic)."""

  def __init__(self, config: ml_collections.ConfigDict, vocab: vocab_lib.Vocabulary):
    self.config = config
    self.sizes = factory.stage_sizes(config)
    self.table = preprocessing.make_lookup_table(vocab)

  def _image(self, encoded: tf.Tensor, seed: tf.Tensor | None) -> dict[str, tf.Tensor]:
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    size = self.sizes[-1]
    if self.config.data.random_crop_flip:
      image = preprocessing.crop_and_flip(image, size, seed)
    else:
      image = preprocessing.resize_square(tf.cast(image, tf.float32), size)
    return preprocessing.image_pyramid(image, self.sizes)

  def _captions(self, captions: tf.Tensor) -> tf.Tensor:
    n = self.config.data.captions_per_image
    tf.debugging.assert_greater_equal(
        tf.shape(captions)[0], n, message=f'an example has fewer than {n} captions')
    return captions[:n]

  def _caption(self, ex, choice_seed, drop_seed):
    captions = self._captions(ex['captions'])
    choice = tf.random.stateless_uniform(
        [], choice_seed, 0, tf.shape(captions)[0], dtype=tf.int32)
    return preprocessing.encode_caption(
        captions[choice], self.table, self.config.data.words_num, drop_seed)

  def _seeds(self, epoch, position):
    return preprocessing.split_seed(_example_seed(self.config.seed, epoch, position), 3)

  def train(self, epoch, position, ex, previous_position, previous
            ) -> dict[str, tf.Tensor]:
    """An example, and as its mismatched caption the caption the example before it
    in the global batch (`previous`) draws for itself."""
    image_seed, choice_seed, drop_seed = self._seeds(epoch, position)
    ids, length = self._caption(ex, choice_seed, drop_seed)
    _, previous_choice, previous_drop = self._seeds(epoch, previous_position)
    wrong_ids, wrong_length = self._caption(previous, previous_choice, previous_drop)
    out = self._image(ex['image'], image_seed)
    out.update(caption_ids=ids, caption_len=length,
               class_id=tf.cast(ex['class_id'], tf.int32),
               mismatch_ids=wrong_ids, mismatch_len=wrong_length)
    return out

  def eval(self, position, ex) -> dict[str, tf.Tensor]:
    seed = _example_seed(self.config.seed, -1, position)
    captions = self._captions(ex['captions'])
    seeds = tf.random.experimental.stateless_split(seed, self.config.data.captions_per_image)
    ids, lengths = tf.map_fn(
        lambda args: preprocessing.encode_caption(
            args[0], self.table, self.config.data.words_num, args[1]),
        (captions, seeds), fn_output_signature=(tf.int32, tf.int32))
    out = self._image(ex['image'], None)
    out.update(caption_ids=ids[0], caption_len=lengths[0], all_caption_ids=ids,
               all_caption_len=lengths, class_id=tf.cast(ex['class_id'], tf.int32),
               mask=tf.constant(True))
    return out


def _add_mismatch(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """Eval batches' mismatched captions: the batch's captions rolled by one."""
  batch['mismatch_ids'] = tf.roll(batch['caption_ids'], 1, axis=0)
  batch['mismatch_len'] = tf.roll(batch['caption_len'], 1, axis=0)
  return batch


def _pad_batch(batch: dict[str, tf.Tensor], size: int) -> dict[str, tf.Tensor]:
  """Pads a short final eval batch to `size` rows (mask False on the padding)."""
  def pad(x):
    missing = size - tf.shape(x)[0]
    return tf.pad(x, [[0, missing]] + [[0, 0]] * (len(x.shape) - 1))
  return {k: pad(v) for k, v in batch.items()}


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = 0  # Use TF's shared pool.
  options.experimental_optimization.map_parallelization = True
  return options


def _ceil_div(a: int, b: int) -> int:
  return -(-a // b)


def create_datasets(
    config: ml_collections.ConfigDict, vocab: vocab_lib.Vocabulary, *,
    start_step: int = 0, batch_size: int | None = None,
    process_index: int | None = None, process_count: int | None = None,
) -> tuple[Iterator[Batch], Iterable[Batch], DataInfo]:
  """Builds the train iterator, the eval iterable and their description.

  Args:
    config: the experiment config (uses `data`, `model.generator`, `seed`).
    vocab: maps caption words to ids (words outside it are dropped).
    start_step: number of train batches already consumed (resume).
    batch_size: global batch size; default `config.train.batch_size`.
    process_index: this process (default `jax.process_index()`).
    process_count: processes (default `jax.process_count()`).
  Returns:
    (train iterator of numpy batches, eval iterable of numpy batches, DataInfo).
  """
  pindex = jax.process_index() if process_index is None else process_index
  pcount = jax.process_count() if process_count is None else process_count
  global_batch = batch_size or config.train.batch_size
  if global_batch % pcount:
    raise ValueError(f'batch size {global_batch} is not divisible by {pcount} processes')
  local_batch = global_batch // pcount
  builder = get_builder(config)
  prep = _Preprocessor(config, vocab)

  train_split = config.data.train_split
  num_train = builder.info.splits[train_split].num_examples
  steps_per_epoch = num_train // global_batch
  if steps_per_epoch == 0:
    raise ValueError(f'split {train_split!r} has {num_train} examples, fewer than '
                     f'one batch of {global_batch}')
  base = _read(builder, train_split)
  if config.data.cache:
    base = base.cache()  # Encoded records only: decoding happens after the skip.
  seed = config.seed

  def epoch_dataset(epoch):
    ds = base.shuffle(min(config.data.shuffle_buffer, num_train),
                      seed=seed * 1_000_003 + epoch, reshuffle_each_iteration=False)
    ds = ds.take(steps_per_epoch * global_batch).enumerate()
    return ds.map(lambda position, ex: (epoch, position, ex))

  start_epoch, offset = divmod(start_step, steps_per_epoch)
  train = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch_dataset)
  train = train.skip(offset * global_batch)
  # Every process walks the same order and keeps its rows of each global batch (still
  # encoded), each with the record before it in the global batch (the first row:
  # the last one), whose caption is its mismatched caption. So n processes see the
  # batches, random draws and wrong pairs of one process with all the devices: the
  # reference's roll of the whole batch by one.
  first = pindex * local_batch

  def my_rows(epoch, position, ex):
    rows = lambda x: x[first:first + local_batch]
    before = lambda x: tf.roll(x, 1, axis=0)[first:first + local_batch]
    return (rows(epoch), rows(position), tf.nest.map_structure(rows, ex),
            before(position), tf.nest.map_structure(before, ex))

  train = train.batch(global_batch, drop_remainder=True).map(my_rows).unbatch()
  train = train.map(prep.train, num_parallel_calls=tf.data.AUTOTUNE)
  train = train.batch(local_batch, drop_remainder=True)
  train = train.prefetch(config.data.prefetch).with_options(_options())

  eval_ds = _eval_dataset(config, builder, prep, global_batch, pindex, pcount)
  info = DataInfo(
      image_sizes=factory.stage_sizes(config), local_batch_size=local_batch,
      steps_per_epoch=steps_per_epoch,
      num_train_examples=builder.info.splits[config.data.train_split].num_examples,
      num_eval_examples=builder.info.splits[config.data.eval_split].num_examples)
  return iter(tfds.as_numpy(train)), tfds.as_numpy(eval_ds), info


def _eval_dataset(config: ml_collections.ConfigDict, builder, prep: _Preprocessor,
                  global_batch: int, pindex: int, pcount: int) -> tf.data.Dataset:
  """This process's rows of each global eval batch, the last one padded (mask False),
  so evaluations see the one-process batches."""
  local_batch = global_batch // pcount
  eval_ds = _read(builder, config.data.eval_split).enumerate().filter(
      lambda position, ex: (position % global_batch) // local_batch == pindex)
  eval_ds = eval_ds.map(prep.eval, num_parallel_calls=tf.data.AUTOTUNE)
  eval_ds = eval_ds.batch(local_batch).map(lambda b: _pad_batch(b, local_batch))
  # A process may have no row in the last global batch; every process runs the
  # same number of (collective) eval steps.
  num_eval = builder.info.splits[config.data.eval_split].num_examples
  full, rest = divmod(num_eval, global_batch)
  mine = full * local_batch + min(max(rest - pindex * local_batch, 0), local_batch)
  missing = _ceil_div(num_eval, global_batch) - _ceil_div(mine, local_batch)
  if missing:
    empty = eval_ds.take(1).map(lambda b: {k: tf.zeros_like(v) for k, v in b.items()})
    eval_ds = eval_ds.concatenate(empty.repeat(missing))
  eval_ds = eval_ds.map(_add_mismatch)
  return eval_ds.prefetch(config.data.prefetch).with_options(_options())


def eval_batches(config: ml_collections.ConfigDict, vocab: vocab_lib.Vocabulary,
                 batch_size: int) -> Iterable[Batch]:
  """The whole eval split in file order, as one process sees it with every device:
  batches of `batch_size` (the last padded, mask False), whatever the job's
  process count (for work each process does alone: evaluation, probes)."""
  return tfds.as_numpy(_eval_dataset(config, get_builder(config),
                                     _Preprocessor(config, vocab), batch_size, 0, 1))

