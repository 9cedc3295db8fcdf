"""Input pipeline: shapes, ranges, caption capping, determinism, resume, sharding."""

import itertools

import numpy as np
import pytest

from configs import shapes
from mirrorgan_jax.data import input_pipeline
from tests import pipeline_fixture


@pytest.fixture(scope='module')
def config(tmp_path_factory):
  c = shapes.get_config('smoke')
  c.data.name = 'pipeline_fixture'
  c.data.builder_config = ''
  c.data.data_dir = str(tmp_path_factory.mktemp('tfds'))
  c.data.captions_per_image = pipeline_fixture.CAPTIONS
  c.data.words_num = 12
  c.data.shuffle_buffer = 1000
  c.train.batch_size = 8
  return c


@pytest.fixture(scope='module')
def vocab(config):
  return input_pipeline.build_vocabulary(config)


def ids_of(batch):
  """Example indices of a batch, read back from the red channel."""
  return np.rint((batch['image_32'][:, 0, 0, 0] + 1) * 127.5).astype(int).tolist()


def take(it, n):
  return list(itertools.islice(it, n))


def test_vocabulary_covers_train_and_test(vocab):
  # item0..item99 (train) and item0..item20 (test) share words; w0..w23,
  # caption0..2, of, the, fixture, <end>.
  assert len(vocab) == 1 + 100 + 24 + 3 + 3


def test_batch_shapes_and_ranges(config, vocab):
  train, _, info = input_pipeline.create_datasets(config, vocab)
  batch = next(train)
  assert info.image_sizes == (16, 32) and info.steps_per_epoch == 100 // 8
  assert batch['image_16'].shape == (8, 16, 16, 3)
  assert batch['image_32'].shape == (8, 32, 32, 3)
  for size in (16, 32):
    assert batch[f'image_{size}'].min() >= -1 and batch[f'image_{size}'].max() <= 1
  assert batch['caption_ids'].shape == (8, 12) and batch['caption_ids'].dtype == np.int32
  np.testing.assert_array_equal(batch['mismatch_ids'], np.roll(batch['caption_ids'], 1, 0))
  np.testing.assert_array_equal(batch['class_id'], np.array(ids_of(batch)) % 5)
  for ids, n, i in zip(batch['caption_ids'], batch['caption_len'], ids_of(batch)):
    assert np.all(ids[n:] == 0) and np.all(ids[:n] > 0)
    words = vocab.decode(ids).split()
    if n == 12:  # The 24-word caption: 12 random words kept in order.
      kept = [int(w[1:]) for w in words]
      assert kept == sorted(kept) and len(set(kept)) == 12
    else:
      assert words[0] == f'item{i}' and n == 5


def test_epoch_visits_each_example_once_and_reshuffles(config, vocab):
  train, _, info = input_pipeline.create_datasets(config, vocab)
  epoch1 = sum((ids_of(b) for b in take(train, info.steps_per_epoch)), [])
  epoch2 = sum((ids_of(b) for b in take(train, info.steps_per_epoch)), [])
  assert len(set(epoch1)) == len(epoch1) == 96  # drop_remainder: 12 x 8.
  assert epoch1 != epoch2


def test_deterministic_and_resumable(config, vocab):
  first, _, _ = input_pipeline.create_datasets(config, vocab)
  reference = take(first, 17)  # Crosses an epoch boundary (12 steps/epoch).
  again, _, _ = input_pipeline.create_datasets(config, vocab)
  for a, b in zip(reference, take(again, 17)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  resumed, _, _ = input_pipeline.create_datasets(config, vocab, start_step=10)
  for a, b in zip(reference[10:], take(resumed, 7)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_processes_keep_their_rows_of_the_one_process_batches(config, vocab):
  whole, _, one = input_pipeline.create_datasets(config, vocab, process_count=1,
                                                 process_index=0)
  reference = take(whole, 14)  # Crosses an epoch boundary (12 steps/epoch).
  seen = []
  for index in range(2):
    train, evals, info = input_pipeline.create_datasets(
        config, vocab, process_index=index, process_count=2, start_step=2)
    assert info.local_batch_size == 4 and info.steps_per_epoch == one.steps_per_epoch
    for want, got in zip(reference[2:], take(train, 12)):
      for key in ('image_32', 'caption_ids', 'caption_len', 'class_id'):
        np.testing.assert_array_equal(got[key], want[key][4 * index:4 * index + 4])
    seen.append([i for b in evals for i, m in zip(ids_of(b), b['mask']) if m])
  assert sorted(seen[0] + seen[1]) == list(range(21))


def test_mismatched_captions_are_the_global_batch_rolled_by_one(config, vocab):
  whole, _, _ = input_pipeline.create_datasets(config, vocab, process_count=1,
                                               process_index=0)
  reference = take(whole, 3)
  for batch in reference:
    np.testing.assert_array_equal(batch['mismatch_ids'], np.roll(batch['caption_ids'], 1, 0))
    np.testing.assert_array_equal(batch['mismatch_len'], np.roll(batch['caption_len'], 1))
  for index in range(2):
    train, _, _ = input_pipeline.create_datasets(config, vocab, process_index=index,
                                                 process_count=2)
    for want, got in zip(reference, take(train, 3)):
      for key in ('mismatch_ids', 'mismatch_len'):
        np.testing.assert_array_equal(got[key], want[key][4 * index:4 * index + 4])


def test_uneven_eval_shards_give_every_process_the_same_batch_count(config, vocab):
  # 21 test examples over 2 processes: shards of 11 and 10, local batches of 5,
  # so process 1 pads with an all-masked batch to match process 0's 3 batches.
  counts, real = [], []
  for index in range(2):
    _, evals, _ = input_pipeline.create_datasets(
        config, vocab, batch_size=10, process_index=index, process_count=2)
    batches = list(evals)
    counts.append(len(batches))
    real += [i for b in batches for i, m in zip(ids_of(b), b['mask']) if m]
  assert counts == [3, 3]
  assert sorted(real) == list(range(21))
  assert not batches[-1]['mask'].any() and batches[-1]['caption_ids'].shape == (5, 12)


def test_eval_has_all_captions_and_padding_mask(config, vocab):
  _, evals, _ = input_pipeline.create_datasets(config, vocab)
  batches = list(evals)
  assert len(batches) == 3  # 21 examples in batches of 8, last one padded.
  last = batches[-1]
  assert last['mask'].tolist() == [True] * 5 + [False] * 3
  assert last['all_caption_ids'].shape == (8, 4, 12)
  i = ids_of(batches[0])[1]
  assert vocab.decode(batches[0]['all_caption_ids'][1, 2]) == pipeline_fixture.caption(i, 2)
  real = [i for b in batches for i, m in zip(ids_of(b), b['mask']) if m]
  assert sorted(real) == list(range(21))
  again = list(evals)  # Re-iterable and deterministic.
  np.testing.assert_array_equal(again[0]['caption_ids'], batches[0]['caption_ids'])


def test_batch_not_divisible_by_processes(config, vocab):
  with pytest.raises(ValueError, match='not divisible'):
    input_pipeline.create_datasets(config, vocab, batch_size=9, process_count=2,
                                   process_index=0)


def test_eval_batches_are_the_whole_split_in_order_for_any_process_count(config, vocab):
  batches = list(input_pipeline.eval_batches(config, vocab, 8))
  _, whole, _ = input_pipeline.create_datasets(config, vocab, process_count=1,
                                               process_index=0)
  assert [ids_of(b) for b in batches] == [ids_of(b) for b in whole]
  assert sorted(i for b in batches for i, m in zip(ids_of(b), b['mask']) if m) == list(range(21))
