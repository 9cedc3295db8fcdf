"""Tests of the DAMSM phase on the `tiny` captioned_shapes data (configs/shapes.py:smoke).

Independent checks: Adam updates, learning rates and clipped gradients worked
out by hand; bit equality of frozen parameters; the fixed-batch loss falling.
"""

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from configs import shapes
from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import checkpointing
from mirrorgan_jax.phases import damsm as dt
from mirrorgan_jax.phases import oracle as oracle_phase
from mirrorgan_jax.phases import stream as stream_phase
from mirrorgan_jax.evaluation import attribute_reading
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.models import factory

BATCH = 16  # 96 train images -> 6 steps per epoch; 32 test images -> 2 eval batches.


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  # DAMSM on the classifier's pretrained image backbone (the default).
  config = shapes.get_config('smoke')
  config.data.data_dir = str(tmp_path_factory.mktemp('tfds'))
  config.damsm.batch_size = BATCH
  return config, input_pipeline.build_vocabulary(config)


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory):
  """One end-to-end DAMSM run: (config, vocab, workdir, artifact path)."""
  config, vocab = data
  workdir = tmp_path_factory.mktemp('workdir')
  oracle_phase.train_and_evaluate(config, workdir, artifacts.CLASSIFIER)  # The backbone.
  path = dt.train_and_evaluate(config, workdir, vocab)
  return config, vocab, epath.Path(workdir), path


def _flat(tree):
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


# ------------------------------------------------------------ end to end
def test_end_to_end_writes_checkpoints_summaries_and_artifact(trained):
  config, vocab, workdir, path = trained
  assert path == artifacts.directory(workdir, artifacts.DAMSM) == workdir / 'damsm' / 'artifact'
  assert artifacts.exists(path, artifacts.DAMSM)
  assert checkpointing.Checkpointer(workdir / 'damsm' / 'checkpoints').latest_step() == 6
  assert list((workdir / 'damsm').glob('events.out.tfevents.*'))
  grid = np.asarray(Image.open(workdir / 'damsm' / 'attention_6.png'))
  # 6 images x (image + 12 word maps) cells of 32 px with 2 px padding.
  assert grid.shape == (6 * 34 + 2, 13 * 34 + 2, 3)

  variables, loaded_vocab, meta = artifacts.read(path, artifacts.DAMSM, config)
  assert loaded_vocab == vocab
  assert set(variables['text_encoder']) == {'params'}
  assert set(variables['image_encoder']) == {'params', 'batch_stats'}
  embedding = variables['text_encoder']['params']['embedding']['embedding']
  assert embedding.shape == (len(vocab), config.model.text_encoder.embedding_dim)
  assert meta['steps'] == 6 and meta['vocab_size'] == len(vocab)
  assert meta['model']['image_encoder']['small_cnn_features'] == [8, 16]
  ev = meta['eval']
  for k in ('word_loss0', 'word_loss1', 'sentence_loss0', 'sentence_loss1'):
    assert 0.0 < ev[k] < 20.0, k
  assert ev['loss'] == pytest.approx(ev['word_loss'] + ev['sentence_loss'])
  assert ev['r_precision/num_images'] == 32 and ev['r_precision/num_mismatched'] == config.eval.r_precision_mismatched
  for k in (1, 2, 3):
    assert 0.0 <= ev[f'r_precision/top{k}_mean'] <= 1.0
  assert (ev['r_precision/top1_mean'] <= ev['r_precision/top2_mean']
          <= ev['r_precision/top3_mean'])
  # Attribute reading (evaluation/attribute_reading.py) of every attribute whose
  # words the tiny vocabulary has; colours and backgrounds are in any 32 test scenes.
  attributes = set(attribute_reading.tables(vocab))
  assert {'color', 'background'} <= attributes
  for a in attributes:
    assert 0.0 <= ev[f'swap_accuracy/{a}'] <= 1.0, a
    assert 0.0 <= ev[f'swap_distance/{a}'] <= 2.0, a


def test_artifact_config_check_names_fields(trained):
  config, _, _, path = trained
  other = config.copy_and_resolve_references()
  other.model.text_encoder.hidden_size = 32
  other.model.image_encoder.small_cnn_features = (8, 32)
  other.model.text_encoder.dropout_rate = 0.1  # Not an architecture field: ignored.
  other.model.image_encoder.train_backbone = False  # Neither.
  with pytest.raises(ValueError, match=r'text_encoder.hidden_size: artifact 8, config 32'
                     ) as e:
    artifacts.read(path, artifacts.DAMSM, other)
  assert 'small_cnn_features: artifact [8, 16], config (8, 32)' in str(e.value)
  assert 'dropout' not in str(e.value) and 'train_backbone' not in str(e.value)
  artifacts.read(path, artifacts.DAMSM)  # Without a config: no check.


def test_other_artifacts_are_rejected(tmp_path):
  artifacts.save(tmp_path, {'captioner': {'params': {'w': np.zeros(2)}}},
                 vocab_lib.Vocabulary(['<end>', 'a']), {'phase': 'stream'})
  with pytest.raises(ValueError, match='not a DAMSM artifact'):
    artifacts.read(tmp_path, artifacts.DAMSM)
  with pytest.raises(FileNotFoundError, match='meta.json'):
    artifacts.read(tmp_path / 'nothing', artifacts.DAMSM)


def test_init_from_artifact_copies_weights_and_checks_vocabulary(trained):
  config, vocab, _, path = trained
  config = config.copy_and_resolve_references()
  config.damsm.init_text_encoder = str(path)
  config.damsm.init_image_encoder = str(path)
  models = factory.create_models(config, len(vocab))
  got = dt.init_variables(config, models, vocab, jax.random.PRNGKey(1))
  saved, _, _ = artifacts.read(path, artifacts.DAMSM)
  want = _flat(saved)
  for k, v in _flat(got).items():
    np.testing.assert_array_equal(v, want[k], err_msg=k)
  with pytest.raises(ValueError, match='different vocabulary'):
    dt.init_variables(config, models, vocab_lib.Vocabulary(vocab.words[:-1]),
                      jax.random.PRNGKey(1))
  config.model.text_encoder.embedding_dim = 32
  with pytest.raises(ValueError, match='embedding_dim: artifact 16, config 32'):
    dt.init_variables(config, factory.create_models(config, len(vocab)), vocab,
                      jax.random.PRNGKey(1))


def test_image_backbones_start_from_the_classifier(trained):
  """`damsm.pretrained_backbone = 'classifier'`: the conv / BatchNorm blocks of the
  classifier artifact, bit for bit; the encoder head and the text encoder fresh.
  The same for STREAM's captioner (`stream.pretrained_backbone`)."""
  config, vocab, workdir, _ = trained
  classifier, _, meta = artifacts.read(artifacts.directory(workdir, artifacts.CLASSIFIER),
                                       artifacts.CLASSIFIER, config)
  assert meta['phase'] == 'classifier'
  classifier = classifier[artifacts.ORACLE_KEY]
  models = factory.create_models(config, len(vocab))
  backbone = artifacts.classifier_backbone(workdir, config)
  got = dt.init_variables(config, models, vocab, jax.random.PRNGKey(1), backbone)
  fresh = dt.init_variables(config, models, vocab, jax.random.PRNGKey(1))
  for collection in ('params', 'batch_stats'):
    blocks = got['image_encoder'][collection][dt.BACKBONE]
    kinds = ('conv', 'bn') if collection == 'params' else ('bn',)
    assert set(blocks) == {f'{kind}{i}' for kind in kinds
                           for i in range(len(config.oracle.features))}
    for name, value in _flat(blocks).items():
      np.testing.assert_array_equal(value, _flat(classifier[collection])[name], err_msg=name)
  assert not np.array_equal(got['image_encoder']['params'][dt.BACKBONE]['conv0']['kernel'],
                            fresh['image_encoder']['params'][dt.BACKBONE]['conv0']['kernel'])
  np.testing.assert_array_equal(got['image_encoder']['params']['emb_cnn_code']['kernel'],
                                fresh['image_encoder']['params']['emb_cnn_code']['kernel'])
  captioner = factory.create_models(config, len(vocab)).captioner
  got = stream_phase.init_variables(config, captioner, vocab, jax.random.PRNGKey(1), backbone)
  fresh = stream_phase.init_variables(config, captioner, vocab, jax.random.PRNGKey(1))
  assert _flat(got['params']).keys() == _flat(fresh['params']).keys()
  for collection in ('params', 'batch_stats'):
    for name, value in _flat(got[collection]).items():
      in_backbone = name.startswith(f"['{stream_phase.ENCODER}']['{dt.BACKBONE}']")
      want = (_flat(classifier[collection])[name.split(f"['{dt.BACKBONE}']")[1]]
              if in_backbone else _flat(fresh[collection])[name])
      np.testing.assert_array_equal(value, want, err_msg=name)
  # The judge is not the network DAMSM learnt from: the oracle has another seed.
  oracle = artifacts.read(oracle_phase.train_and_evaluate(config, workdir), artifacts.ORACLE)[0]
  assert not np.array_equal(classifier['params']['conv0']['kernel'],
                            oracle[artifacts.ORACLE_KEY]['params']['conv0']['kernel'])
  # Another classifier width: refused, naming the field; no artifact: says how to make one.
  config = config.copy_and_resolve_references()
  config.oracle.features = (8, 32)
  with pytest.raises(ValueError, match=r'oracle.features: artifact \[8, 16\], config \(8, 32\)'):
    artifacts.classifier_backbone(workdir, config)
  with pytest.raises(FileNotFoundError, match='--mode classifier'):
    artifacts.classifier_backbone(workdir / 'nothing', config)


def test_frozen_backbone_stays_bit_identical_and_fixed_batch_loss_falls(trained):
  config, vocab, _, path = trained
  config = config.copy_and_resolve_references()
  config.model.image_encoder.train_backbone = False
  config.damsm.learning_rate = 1e-2
  models = factory.create_models(config, len(vocab))
  variables, _, _ = artifacts.read(path, artifacts.DAMSM, config)
  tx = dt.create_optimizer(config, steps_per_epoch=1000)
  step = dt.make_train_step(config, models, tx, steps_per_epoch=1000)
  state = step.place_state(dt.create_state(jax.tree.map(jnp.asarray, variables), tx,
                                           jax.random.PRNGKey(0)))
  train, _, _ = input_pipeline.create_datasets(config, vocab, batch_size=BATCH)
  batch = next(train)
  backbone = _flat(variables['image_encoder']['params']['backbone'])
  stats = _flat(variables['image_encoder']['batch_stats'])
  head = _flat(variables['image_encoder']['params']['emb_cnn_code'])
  losses = []
  for _ in range(30):
    state, metrics = step(state, batch)
    losses.append(float(metrics['loss']))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < 0.6 * losses[0], losses
  state = jax.device_get(state)
  for k, v in _flat(state.params['image_encoder']['backbone']).items():
    np.testing.assert_array_equal(v, backbone[k], err_msg=k)
  for k, v in _flat(state.batch_stats).items():
    np.testing.assert_array_equal(v, stats[k], err_msg=k)
  moved = _flat(state.params['image_encoder']['emb_cnn_code'])
  assert any(not np.array_equal(moved[k], head[k]) for k in head)


# ------------------------------------------------------------ optimiser
def test_learning_rate_schedule_by_hand():
  # lr *= 0.98 after an epoch while lr > lr0 / 10: 0.98**113 = exp(113 ln 0.98)
  # = 0.101987 > 0.1, then 0.98**114 = 0.099948 <= 0.1 stops the decay.
  assert dt.decay_epochs(2e-3) == 114
  for epoch, want in ((0, 2e-3), (1, 1.96e-3), (2, 1.9208e-3),
                      (113, 2e-3 * 0.101987), (114, 2e-3 * 0.099948),
                      (600, 2e-3 * 0.099948)):
    assert float(dt.learning_rate(2e-3, epoch)) == pytest.approx(want, rel=2e-5), epoch


def _tiny_params():
  return {'text_encoder': {'w': jnp.zeros(1)}, 'image_encoder': {'v': jnp.zeros(1)}}


def test_adam_restarts_every_epoch_by_hand():
  config = shapes.get_config('smoke')
  config.damsm.learning_rate = 0.1
  config.damsm.grad_clip = 1e9  # No clipping here.
  tx = dt.create_optimizer(config, steps_per_epoch=2)
  params = _tiny_params()
  state = tx.init(params)
  got = []
  for g in (1.0, 3.0, 2.0, 2.0):
    grads = jax.tree.map(lambda x: jnp.full_like(x, g), params)
    updates, state = tx.update(grads, state, params)
    got.append(float(updates['text_encoder']['w'][0]))
    assert float(updates['image_encoder']['v'][0]) == pytest.approx(got[-1])
  # Adam(b1 0.5, b2 0.999): step 1 moves lr * 1; step 2: m = 1.75 / 0.75, v = 0.009999
  # / 0.001999 -> 2.33333 / 2.23651 = 1.04329; epoch 2 restarts (lr 0.098): the first
  # step moves lr * 1 again, the second m = 1.5 / 0.75 = 2, v = 0.007996 / 0.001999 = 4.
  np.testing.assert_allclose(got, [-0.1, -0.1043289, -0.098, -0.098], rtol=1e-5)


def test_text_encoder_clip_leaves_image_gradients_alone():
  tx = dt.clip_text_encoder(0.25)
  grads = {'text_encoder': {'a': jnp.array([3.0, 0.0]), 'b': jnp.array([4.0])},
           'image_encoder': {'c': jnp.array([30.0, 40.0])}}
  out, _ = tx.update(grads, tx.init(grads))
  # Text norm 5 -> 0.25: factor 0.05. Image norm 50: untouched.
  np.testing.assert_allclose(out['text_encoder']['a'], [0.15, 0.0], rtol=1e-6)
  np.testing.assert_allclose(out['text_encoder']['b'], [0.2], rtol=1e-6)
  np.testing.assert_array_equal(out['image_encoder']['c'], [30.0, 40.0])
  small = jax.tree.map(lambda x: x * 0.01, grads)  # Text norm 0.05 <= 0.25: as is.
  out, _ = tx.update(small, tx.init(small))
  np.testing.assert_allclose(out['text_encoder']['a'], [0.03, 0.0], rtol=1e-6)


def test_frozen_backbone_gets_no_update():
  config = shapes.get_config('smoke')
  config.model.image_encoder.train_backbone = False
  params = {'text_encoder': {'w': jnp.zeros(2)},
            'image_encoder': {'backbone': {'k': jnp.zeros(3)},
                              'emb_cnn_code': {'b': jnp.zeros(2)}}}
  tx = dt.create_optimizer(config, steps_per_epoch=5)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates['image_encoder']['backbone']['k'], 0.0)
  lr = config.damsm.learning_rate
  # First Adam step: -lr * g / (|g| + 1e-8) = -lr.
  head = updates['image_encoder']['emb_cnn_code']['b']
  np.testing.assert_allclose(head, -lr, rtol=1e-5)
  np.testing.assert_allclose(updates['text_encoder']['w'], -lr, rtol=1e-5)


def test_swap_negatives_add_a_fifth_term(trained):
  """`damsm.swap_negatives`: the step's loss is the four DAMSM terms plus 'swap_loss'."""
  config, vocab, _, path = trained
  models = factory.create_models(config, len(vocab))
  variables, _, _ = artifacts.read(path, artifacts.DAMSM, config)
  tx = dt.create_optimizer(config, steps_per_epoch=1000)
  batch = next(input_pipeline.create_datasets(config, vocab, batch_size=BATCH)[0])
  metrics = {}
  for tables in ({}, attribute_reading.tables(vocab)):
    step = dt.make_train_step(config, models, tx, 1000, swap_tables=tables)
    state = step.place_state(dt.create_state(jax.tree.map(jnp.asarray, variables), tx,
                                             jax.random.PRNGKey(0)))
    metrics[bool(tables)] = jax.device_get(step(state, batch)[1])
  terms = ('word_loss0', 'word_loss1', 'sentence_loss0', 'sentence_loss1')
  assert 'swap_loss' not in metrics[False]
  for k in terms:  # The reference's terms are unchanged by the option.
    assert float(metrics[True][k]) == pytest.approx(float(metrics[False][k]), rel=1e-5), k
  assert float(metrics[True]['swap_loss']) > 0.0
  assert float(metrics[True]['loss']) == pytest.approx(
      sum(float(metrics[True][k]) for k in terms + ('swap_loss',)), rel=1e-5)
