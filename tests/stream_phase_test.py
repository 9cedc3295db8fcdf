"""Tests of the STREAM phase on the `tiny` captioned_shapes data (shapes.py:smoke)."""

import re

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import shapes
from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import checkpointing
from mirrorgan_jax.phases import stream as stream_phase
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.evaluation import attribute_reading
from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.models import captioner as captioner_lib
from mirrorgan_jax.models import factory

BATCH = 16  # 96 train images -> 6 steps per epoch.


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  # The captioner trains its own backbone here; the classifier's backbone is loaded in
  # damsm_phase_test.py and used by the `--mode all` run of conftest.py.
  config = shapes.get_config('scratch_backbones,smoke')
  config.data.data_dir = str(tmp_path_factory.mktemp('tfds'))
  config.stream.batch_size = BATCH
  return config, input_pipeline.build_vocabulary(config)


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory):
  """One end-to-end STREAM run: (config, vocab, workdir, artifact path)."""
  config, vocab = data
  workdir = tmp_path_factory.mktemp('workdir')
  path = stream_phase.train_and_evaluate(config, workdir, vocab)
  return config, vocab, epath.Path(workdir), path


def _train_batch(config, vocab):
  train, _, _ = input_pipeline.create_datasets(config, vocab, batch_size=BATCH)
  return next(train)


def _flat(tree):
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _load_captioner(path, config=None):
  variables, vocab, meta = artifacts.read(path, artifacts.STREAM, config)
  return variables['captioner'], vocab, meta


def test_end_to_end_writes_checkpoints_summaries_samples_and_artifact(trained):
  config, vocab, workdir, path = trained
  assert path == artifacts.directory(workdir, artifacts.STREAM) == workdir / 'stream' / 'artifact'
  assert artifacts.exists(path, artifacts.STREAM)
  assert checkpointing.Checkpointer(workdir / 'stream' / 'checkpoints').latest_step() == 6
  assert list((workdir / 'stream').glob('events.out.tfevents.*'))
  text = (workdir / 'stream' / 'samples_6.txt').read_text()
  blocks = text.strip().split('\n\n')
  assert len(blocks) == stream_phase.NUM_SAMPLES
  for block in blocks:
    lines = block.splitlines()
    true = [l for l in lines if l.startswith('  true:')]
    assert len(true) == config.data.captions_per_image
    assert re.search(r'^  greedy:', block, re.M) and re.search(r'^  beam2:', block, re.M)

  variables, loaded_vocab, meta = _load_captioner(path, config)
  assert loaded_vocab == vocab
  assert set(variables) == {'params', 'batch_stats'}
  assert variables['params']['decoder']['linear']['kernel'].shape[-1] == len(vocab)
  assert meta['steps'] == 6 and meta['vocab_size'] == len(vocab)
  assert meta['model']['captioner']['hidden_size'] == config.model.captioner.hidden_size
  # On captioned_shapes, the likelihood reading of every attribute the vocabulary has.
  reading = {f'swap_{m}/{a}' for a in attribute_reading.tables(vocab)
             for m in ('accuracy', 'margin')}
  assert len(reading) == 2 * len(attribute_reading.ATTRIBUTES)
  assert set(meta['eval']) == {'loss', 'token_accuracy', 'bleu4_greedy',
                               'bleu4_beam'} | reading
  for a in attribute_reading.ATTRIBUTES:
    assert 0.0 <= meta['eval'][f'swap_accuracy/{a}'] <= 1.0, a
    assert np.isfinite(meta['eval'][f'swap_margin/{a}']), a
  assert 0.0 < meta['eval']['loss'] < 10.0
  assert 0.0 <= meta['eval']['bleu4_greedy'] <= 1.0


def test_artifact_config_check_names_fields(trained):
  config, _, _, path = trained
  other = config.copy_and_resolve_references()
  other.model.captioner.hidden_size = 32
  other.model.captioner.embed_dim = 8
  other.model.captioner.beam_size = 5  # Not an architecture field: ignored.
  other.model.captioner.image_every_step = False  # Same weights, other network.
  other.model.captioner.small_cnn_downsample = 'maxpool'
  with pytest.raises(ValueError, match=r'hidden_size: artifact 16, config 32') as e:
    _load_captioner(path, other)
  assert 'embed_dim' in str(e.value) and 'beam_size' not in str(e.value)
  assert 'image_every_step: artifact True, config False' in str(e.value)
  assert "small_cnn_downsample: artifact 'stride', config 'maxpool'" in str(e.value)
  _load_captioner(path)  # Without a config: no check.


def test_other_artifacts_are_rejected(tmp_path):
  artifacts.save(tmp_path, {'text_encoder': {'params': {'w': np.zeros(2)}}},
                 vocab_lib.Vocabulary(['<end>', 'a']), {'phase': 'damsm'})
  with pytest.raises(ValueError, match='not a STREAM artifact'):
    _load_captioner(tmp_path)
  with pytest.raises(FileNotFoundError, match='meta.json'):
    _load_captioner(tmp_path / 'nothing')


def test_resume_after_the_end_keeps_the_artifact_metrics(trained):
  config, vocab, workdir, path = trained
  _, _, before = _load_captioner(path)
  stream_phase.train_and_evaluate(config, workdir, vocab)  # Nothing left to train.
  _, _, after = _load_captioner(path)
  assert after['steps'] == 6
  # Evaluated again from the restored final checkpoint: the same numbers.
  assert after['eval'] == pytest.approx(before['eval'], rel=1e-5)


def test_init_checkpoint_loads_artifact_and_checks_vocabulary(trained):
  config, vocab, _, path = trained
  config = config.copy_and_resolve_references()
  config.stream.init_checkpoint = str(path)
  model = factory.create_models(config, len(vocab)).captioner
  got = stream_phase.init_variables(config, model, vocab, jax.random.PRNGKey(1))
  saved, _, _ = _load_captioner(path)
  want = _flat(saved)
  for k, v in _flat(got).items():
    np.testing.assert_array_equal(v, want[k], err_msg=k)
  # A pretrained backbone replaces the loaded one; everything else stays the checkpoint's.
  backbone = jax.tree.map(lambda x: x + 1.0, {
      c: saved[c][stream_phase.ENCODER]['backbone'] for c in ('params', 'batch_stats')})
  got = _flat(stream_phase.init_variables(config, model, vocab, jax.random.PRNGKey(1),
                                          backbone))
  moved = _flat({c: {stream_phase.ENCODER: {'backbone': backbone[c]}} for c in backbone})
  assert moved and set(moved) < set(got)
  for k, v in got.items():
    np.testing.assert_array_equal(v, moved.get(k, want[k]), err_msg=k)
  other = vocab_lib.Vocabulary(vocab.words[:-1])
  with pytest.raises(ValueError, match='different vocabulary'):
    stream_phase.init_variables(config, model, other, jax.random.PRNGKey(1))


def test_frozen_backbone_is_bit_identical_and_head_trains(data):
  config, vocab = data
  config = config.copy_and_resolve_references()
  config.model.captioner.train_backbone = False
  model = factory.create_models(config, len(vocab)).captioner
  tx = stream_phase.create_optimizer(config, num_steps=100)
  step = stream_phase.make_train_step(config, model, tx)
  variables = stream_phase.init_variables(config, model, vocab, jax.random.PRNGKey(0))
  before = _flat(variables)
  state = step.place_state(stream_phase.create_state(variables, tx))
  batch = _train_batch(config, vocab)
  for _ in range(3):
    state, metrics = step(state, batch)
  assert np.isfinite(float(metrics['loss']))
  after = _flat({'params': state.params, 'batch_stats': state.batch_stats})
  backbone = [k for k in before if "['backbone']" in k]
  assert any("['batch_stats']" in k for k in backbone)  # Running stats are checked too.
  for k in backbone:
    np.testing.assert_array_equal(after[k], before[k], err_msg=k)
  # The head's Linear and BatchNorm (train mode: running stats move) and the
  # decoder train.
  for k in ("['params']['encoder']['linear']['kernel']",
            "['batch_stats']['encoder']['bn']['mean']",
            "['params']['decoder']['embed']['embedding']"):
    assert not np.array_equal(after[k], before[k]), k


@pytest.mark.parametrize('frozen', [True, False])
def test_train_forward_backbone_batchnorm_mode_resnet(frozen):
  """A (tiny) ResNet backbone's BN keeps its running stats only when frozen."""
  model = captioner_lib.Captioner(vocab_size=7, feature_dim=8, embed_dim=8, hidden_size=8,
                                  backbone='resnet152', input_size=32, resnet_stages=(1,),
                                  resnet_width=4)
  images = np.random.default_rng(1).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
  ids, lengths = jnp.ones((4, 5), jnp.int32), jnp.full((4,), 5)
  # Random numpy values of the right shapes: a real init compiles slowly on CPU.
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(1), images, ids, lengths)
  rng = np.random.default_rng(0)
  variables = jax.tree.map(
      lambda s: np.abs(rng.normal(size=s.shape)).astype(np.float32) + 0.1, shapes)
  logits, stats = stream_phase.train_forward(model, variables, images, ids, lengths,
                                                frozen_backbone=frozen)
  assert logits.shape == (4, 5, 7)
  before, after = _flat(variables['batch_stats']), _flat(stats)
  moved = {k for k in before if not np.array_equal(before[k], after[k])}
  backbone = {k for k in before if "['backbone']" in k}
  assert "['encoder']['bn']['mean']" in moved  # The head's BN is always in train mode.
  assert (moved & backbone) == (set() if frozen else backbone)


def test_loss_falls_on_a_fixed_batch(data):
  config, vocab = data  # train_backbone=True in the smoke config.
  config = config.copy_and_resolve_references()
  config.stream.learning_rate = 1e-2  # The tiny smoke decoder moves slowly at 1e-3.
  model = factory.create_models(config, len(vocab)).captioner
  tx = stream_phase.create_optimizer(config, num_steps=100)
  step = stream_phase.make_train_step(config, model, tx)
  variables = stream_phase.init_variables(config, model, vocab, jax.random.PRNGKey(0))
  state = step.place_state(stream_phase.create_state(variables, tx))
  batch = _train_batch(config, vocab)
  losses = []
  for _ in range(60):
    state, metrics = step(state, batch)
    losses.append(float(metrics['loss']))
  # Starts near ln(V) (uniform guess); memorising 16 captions takes it well below.
  assert losses[0] == pytest.approx(np.log(len(vocab)), rel=0.1)
  assert losses[-1] < 0.7 * losses[0], losses  # ~0.6 seen; a broken gradient stays ~1.


def test_token_accuracy_by_hand():
  # Vocabulary of 4; argmax per position written out:
  # row 0 (length 3): argmax 1, 2, 0 vs targets 1, 2, 3 -> 2 correct.
  # row 1 (length 2): argmax 3, 3, (1) vs targets 3, 1, 1 -> 1 correct; position 2
  #   is padding and its correct-looking argmax must not count.
  # Accuracy = 3 / 5.
  argmax = np.array([[1, 2, 0], [3, 3, 1]])
  logits = jnp.asarray(np.eye(4)[argmax] * 5.0 - 1.0)
  targets = jnp.array([[1, 2, 3], [3, 1, 1]])
  lengths = jnp.array([3, 2])
  acc = stream_phase.token_accuracy(logits, targets, lengths)
  assert float(acc) == pytest.approx(3 / 5)
  assert float(stream_phase.token_accuracy(logits, targets, jnp.array([0, 0]))) == 0.0


def test_learning_rate_constant_or_cosine(data):
  config = data[0].copy_and_resolve_references()
  config.stream.learning_rate = 3e-3
  assert stream_phase.learning_rate(config, 100) == 3e-3  # Reference: constant.
  config.stream.lr_schedule = 'cosine'
  schedule = stream_phase.learning_rate(config, 100)
  # 3e-3 * (1 + cos(pi * t / 100)) / 2 at t = 0, 50, 100.
  np.testing.assert_allclose([schedule(0), schedule(50), schedule(100)],
                             [3e-3, 1.5e-3, 0.0], atol=1e-9)
  config.stream.lr_schedule = 'linear'
  with pytest.raises(ValueError, match="'constant' or 'cosine'"):
    stream_phase.learning_rate(config, 100)
