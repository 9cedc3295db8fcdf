"""Tests of the oracle classifier and its protocol on the `tiny` captioned_shapes data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import shapes
from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import checkpointing
from mirrorgan_jax.phases import oracle as oracle_phase
from mirrorgan_jax.data import captioned_shapes
from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.data import shapes_labels
from mirrorgan_jax.data import shapes_scene
from mirrorgan_jax.evaluation import oracle_accuracy
from mirrorgan_jax.models import factory
from mirrorgan_jax.models import oracle as oracle_lib

EPOCHS = 4  # 96 train images / batch 16 -> 24 steps.


@pytest.fixture(scope='module')
def config(tmp_path_factory):
  c = shapes.get_config('smoke')
  c.data.data_dir = str(tmp_path_factory.mktemp('tfds'))
  c.oracle.num_epochs = EPOCHS
  c.train.checkpoint_every_steps = 1000  # Only the final save (smoke: every 2 steps).
  return c


@pytest.fixture(scope='module')
def trained(config, tmp_path_factory):
  """One oracle run: (workdir, artifact path)."""
  workdir = tmp_path_factory.mktemp('workdir')
  return workdir, oracle_phase.train_and_evaluate(config, workdir)


def _images(n, side, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, side, side, 3)).astype(np.float32)


def test_phase_writes_checkpoints_summaries_and_artifact(config, trained):
  workdir, path = trained
  steps = EPOCHS * 96 // config.oracle.batch_size
  assert path == artifacts.directory(workdir, artifacts.ORACLE) == workdir / 'oracle' / 'artifact'
  assert artifacts.exists(path, artifacts.ORACLE)
  assert not (path / 'vocab.json').exists()
  checkpoints = checkpointing.Checkpointer(workdir / 'oracle' / 'checkpoints')
  assert checkpoints.latest_step() == steps
  events = list((workdir / 'oracle').glob('events.out.tfevents.*'))
  assert events
  records = tf.data.TFRecordDataset([str(e) for e in events])
  tags = {v.tag for raw in tfds.as_numpy(records)
          for v in tf.compat.v1.Event.FromString(raw).summary.value}
  assert {f'eval/accuracy_{a}' for a in oracle_lib.ATTRIBUTES} <= tags
  variables, vocab, meta = artifacts.read(path, artifacts.ORACLE)
  assert vocab is None and set(variables) == {artifacts.ORACLE_KEY}
  assert meta['phase'] == 'oracle' and meta['steps'] == steps
  assert meta['oracle']['features'] == list(config.oracle.features)
  assert set(meta['eval']['accuracy']) == set(oracle_lib.ATTRIBUTES)
  # 32 test images; object attributes only on the one-object ones.
  counts = meta['eval']['count']
  assert counts['count'] == counts['background'] == 32
  assert 0 < counts['shape'] == counts['color'] == counts['size'] < 32


def test_training_beats_chance_on_the_train_split(config, trained):
  _, path = trained
  on_train = config.copy_and_resolve_references()
  on_train.data.eval_split = 'train'
  oracle = artifacts.load_oracle(path, on_train)
  after = oracle_phase.AccuracyEvalHook(on_train, oracle).accuracy(oracle.variables)
  model = factory.create_oracle(config)
  init = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 32, 32, 3)))
  before = oracle_phase.AccuracyEvalHook(on_train, oracle).accuracy(init)
  # Chance: 1/3 background colours, 1/2 counts (balanced by construction).
  assert after['background'][0] > 0.75 > before['background'][0]
  assert after['count'][0] > 0.7
  mean = lambda r: np.mean([acc for acc, _ in r.values()])
  assert mean(after) > mean(before) + 0.2


def test_predict_any_side_padding_invariant_one_compile(config, trained):
  _, path = trained
  oracle = artifacts.load_oracle(path, config, batch_size=4)
  images = _images(5, 64)  # Resized to 32 inside.
  predictions, features = oracle.outputs(images)
  assert set(predictions) == set(oracle_lib.ATTRIBUTES)
  for a, p in predictions.items():
    assert p.shape == (5,) and p.dtype == np.int32
    assert 0 <= p.min() and p.max() < oracle_lib.NUM_CLASSES[a]
  assert features.shape == (5, oracle.model.hidden) and features.dtype == np.float32
  alone, alone_features = oracle.outputs(images[3:4])  # One real row + 3 padding.
  for a in predictions:
    assert alone[a][0] == predictions[a][3]
  np.testing.assert_allclose(alone_features[0], features[3], rtol=1e-5, atol=1e-5)
  assert oracle._forward._cache_size() == 1  # pylint: disable=protected-access
  np.testing.assert_array_equal(oracle.features(jnp.asarray(images)), features)
  np.testing.assert_array_equal(oracle.predict(images)['shape'], predictions['shape'])


def test_predict_rejects_bad_images(config, trained):
  oracle = artifacts.load_oracle(trained[1], config)
  with pytest.raises(ValueError, match='N>0, H, W, 3'):
    oracle.predict(_images(2, 32)[0])
  with pytest.raises(ValueError, match='N>0, H, W, 3'):
    oracle.predict(_images(2, 32)[..., :1])
  with pytest.raises(ValueError, match='uint8'):
    oracle.predict(np.zeros((2, 32, 32, 3), np.uint8))
  with pytest.raises(ValueError, match=r'\[-1, 1\]'):
    oracle.predict(_images(2, 32) * 3)


def test_load_oracle_errors(config, trained, tmp_path):
  with pytest.raises(FileNotFoundError, match='missing'):
    artifacts.load_oracle(tmp_path / 'nowhere', config)
  other = config.copy_and_resolve_references()
  other.oracle.features = (8, 8)
  other.oracle.image_size = 64
  other.oracle.batch_size = 3  # Not an architecture field.
  with pytest.raises(ValueError, match=r'oracle\.image_size.*oracle\.features'):
    artifacts.load_oracle(trained[1], other)
  artifacts.save(tmp_path / 'stream', {'captioner': {'w': np.zeros(2)}},
                              None, {'phase': 'stream'})
  with pytest.raises(ValueError, match='not an oracle artifact'):
    artifacts.load_oracle(tmp_path / 'stream', config)


def test_train_batches_resume_exactly(config):
  first = shapes_labels.train_batches(config)
  batches = [next(first) for _ in range(8)]  # Crosses the epoch boundary (6 steps).
  resumed = next(shapes_labels.train_batches(config, start_step=7))
  for k, v in batches[7].items():
    np.testing.assert_array_equal(resumed[k], v)
  assert batches[0]['image'].shape == (16, 32, 32, 3)
  assert -1 <= batches[0]['image'].min() and batches[0]['image'].max() <= 1
  # Epochs are different shuffles of the same images.
  assert not np.array_equal(batches[0]['image'], batches[6]['image'])


def test_test_records_follow_file_order_with_true_labels(config):
  records = shapes_labels.test_records(config)
  builder = input_pipeline.get_builder(config)
  keys = [k.decode() for k in tfds.as_numpy(builder.as_dataset(
      split='test', shuffle_files=False,
      read_config=tfds.ReadConfig(interleave_cycle_length=1)).map(lambda ex: ex['key']))]
  assert len(records.captions) == len(keys) == 32
  for i, key in enumerate(keys):
    _, example = captioned_shapes.make_example(
        'test', int(key.split('_')[1]), builder.builder_config)
    main = example['objects'][0]
    assert records.captions[i] == list(example['captions'])
    assert records.num_objects[i] == len(example['objects'])
    assert records.labels['shape'][i] == shapes_scene.SHAPES.index(main['shape'])
    assert records.labels['color'][i] == list(shapes_scene.COLORS).index(main['color'])
    assert records.labels['size'][i] == shapes_scene.SIZES.index(main['size'])
    assert records.labels['position'][i] == shapes_scene.POSITIONS.index(main['position'])
    assert records.labels['count'][i] == len(example['objects']) - 1
    assert records.labels['background'][i] == list(
        shapes_scene.BACKGROUNDS).index(example['background'])


@pytest.mark.parametrize('caption, num_objects, expected', [
    ('a small red star on the left on a grey background', 1, 'scsp.b'),
    ('a red star', 1, 'sc....'),
    ('the big blue heart is in the middle', 1, 'scsp..'),
    ('a little pink donut in the upper part against a black backdrop', 1, 'scsp.b'),
    ('a gray backdrop with a tiny cyan cross', 1, 'scs..b'),
    ('a green ring sits at the right and the background is white', 1, 'sc.p.b'),
    ('a small red star left of a large blue circle on a grey background', 2, '.....b'),
    ('two shapes: a red star at the top and a blue disk in the lower part', 2, '......'),
])
def test_mentioned(caption, num_objects, expected):
  # expected: one letter per attribute (shape color size position count background),
  # '.' = not stated; count is always stated.
  got = oracle_accuracy.mentioned(caption, num_objects)
  want = {a: c != '.' for a, c in zip(oracle_lib.ATTRIBUTES, expected)}
  want['count'] = True
  assert got == want


def test_mention_mask_and_real_mask():
  mask = oracle_accuracy.mention_mask(
      ['a red star', 'a big red star on a white backdrop'], [1, 2])
  np.testing.assert_array_equal(mask['shape'], [True, False])
  np.testing.assert_array_equal(mask['background'], [False, True])
  np.testing.assert_array_equal(mask['count'], [True, True])
  real = oracle_accuracy.real_mask(np.array([1, 2, 1]))
  np.testing.assert_array_equal(real['position'], [True, False, True])
  np.testing.assert_array_equal(real['background'], [True, True, True])
  with pytest.raises(ValueError, match='num_objects'):
    oracle_accuracy.mentioned('a red star', 3)
  with pytest.raises(ValueError, match='2 captions but 1'):
    oracle_accuracy.mention_mask(['a', 'b'], [1])


def test_accuracy_by_hand():
  predictions = {'shape': np.array([0, 1, 2, 3]), 'color': np.array([5, 5, 5, 5])}
  labels = {'shape': np.array([0, 1, 0, 0]), 'color': np.array([5, 4, 5, 5]),
            'size': np.array([1, 1, 1, 1])}
  mask = {'shape': np.array([True, True, True, False]),
          'color': np.array([False, False, False, False])}
  got = oracle_accuracy.accuracy(predictions, labels, mask)
  assert got['shape'] == (pytest.approx(2 / 3), 3)  # Rows 0, 1 right; row 2 wrong.
  assert np.isnan(got['color'][0]) and got['color'][1] == 0
  assert oracle_accuracy.accuracy(predictions, labels)['color'] == (0.75, 4)
  with pytest.raises(ValueError, match='no labels'):
    oracle_accuracy.accuracy({'count': np.zeros(4)}, labels)
  with pytest.raises(ValueError, match='equal 1-D shapes'):
    oracle_accuracy.accuracy({'size': np.zeros(3)}, labels)


def test_module_parameter_count_outputs_and_bfloat16():
  model = oracle_lib.Oracle(features=(8, 16))
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  count = sum(x.size for x in jax.tree.leaves(variables['params']))
  # conv0 3*3*3*8 + bn0 2*8 + conv1 3*3*8*16 + bn1 2*16 + position conv 16*8 +
  # its bn 2*8 + fc (16 mean + 16 max + 8*8*8 position) * 256 + fc_bn 2*256 +
  # heads 257 * (8 + 9 + 2 + 5 + 2 + 3).
  assert count == 216 + 16 + 1152 + 32 + 128 + 16 + 544 * 256 + 512 + 257 * 29
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  logits, features = oracle_lib.Oracle(features=(8, 16), dtype=jnp.bfloat16).apply(
      params, jnp.zeros((3, 32, 32, 3)))
  assert {a: v.shape for a, v in logits.items()} == {
      a: (3, n) for a, n in oracle_lib.NUM_CLASSES.items()}
  assert logits['shape'].dtype == jnp.float32 and features.shape == (3, 256)
  with pytest.raises(ValueError, match='divisible by 4'):
    model.apply(params, jnp.zeros((1, 30, 30, 3)))
