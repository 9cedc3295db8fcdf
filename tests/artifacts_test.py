"""Tests of artifacts.py: save / read round trip, kinds, config and tree checks."""

import jax
import ml_collections
import numpy as np
import pytest

from mirrorgan_jax import artifacts
from mirrorgan_jax import vocab as vocab_lib


def _captioner_config(**captioner):
  fields = {'backbone': 'small_cnn', 'input_size': 64, 'small_cnn_features': (8, 16),
            'feature_dim': 32, 'embed_dim': 16, 'hidden_size': 32, **captioner}
  return ml_collections.ConfigDict({'model': {'captioner': fields}})


def _write_stream(path, config):
  vocab = vocab_lib.Vocabulary.build(['a red star'])
  variables = {'captioner': {'params': {'w': np.arange(6, dtype=np.float32).reshape(2, 3)}}}
  meta = {'phase': 'stream', **artifacts.meta_sections(config, artifacts.STREAM)}
  artifacts.save(path, variables, vocab, meta)
  return variables, vocab


def test_round_trip_reads_variables_vocab_and_meta(tmp_path):
  config = _captioner_config()
  variables, vocab = _write_stream(tmp_path / 'art', config)
  assert artifacts.exists(tmp_path / 'art', artifacts.STREAM)
  got, got_vocab, meta = artifacts.read(tmp_path / 'art', artifacts.STREAM, config)
  np.testing.assert_array_equal(got['captioner']['params']['w'],
                                variables['captioner']['params']['w'])
  assert got_vocab == vocab
  assert meta['model']['captioner']['small_cnn_features'] == [8, 16]  # JSON list.


def test_missing_parts_and_wrong_kinds_are_named(tmp_path):
  _write_stream(tmp_path / 'art', _captioner_config())
  with pytest.raises(ValueError, match=r"holds \['captioner'\], not a DAMSM artifact"):
    artifacts.read(tmp_path / 'art', artifacts.DAMSM)
  (tmp_path / 'art' / 'vocab.json').unlink()
  assert not artifacts.exists(tmp_path / 'art', artifacts.STREAM)
  with pytest.raises(FileNotFoundError, match='vocab.json is missing'):
    artifacts.read(tmp_path / 'art', artifacts.STREAM)
  (tmp_path / 'art' / 'meta.json').write_text('{}')
  (tmp_path / 'art' / 'vocab.json').write_text('["<end>"]')
  for leaf in (tmp_path / 'art' / 'variables').rglob('*'):
    if leaf.is_file():
      leaf.write_bytes(b'garbage')
  with pytest.raises(ValueError, match='cannot read the weights'):
    artifacts.read(tmp_path / 'art', artifacts.STREAM)


def test_networks_without_text_have_no_vocabulary(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # Relative paths work (Orbax needs absolute ones).
  config = ml_collections.ConfigDict({'oracle': {'image_size': 32, 'features': (8,)}})
  meta = artifacts.meta_sections(config, artifacts.ORACLE)
  assert meta == {'oracle': {'image_size': 32, 'features': (8,)}}
  artifacts.save('runs/oracle', {'oracle': {'w': np.ones(2)}}, None, meta)
  assert not (tmp_path / 'runs' / 'oracle' / 'vocab.json').exists()
  got, vocab, _ = artifacts.read('runs/oracle', artifacts.ORACLE, config)
  assert vocab is None and got['oracle']['w'].tolist() == [1.0, 1.0]
  config.oracle.features = (8, 16)
  with pytest.raises(ValueError, match=r'oracle.features: artifact \[8\], config \(8, 16\)'):
    artifacts.read('runs/oracle', artifacts.ORACLE, config)


def test_fields_added_later_take_their_old_value_when_absent():
  # An artifact written before `small_cnn_downsample` / `image_every_step` existed
  # used stride-2 convolutions and the image at the first step only.
  old_meta = {'model': {'captioner': {**_captioner_config().model.captioner.to_dict(),
                                      'small_cnn_features': [8, 16]}}}
  artifacts.check_config(old_meta, _captioner_config(), artifacts.STREAM, 'p')
  artifacts.check_config(old_meta, _captioner_config(
      small_cnn_downsample='stride', image_every_step=False), artifacts.STREAM, 'p')
  with pytest.raises(ValueError) as e:
    artifacts.check_config(old_meta, _captioner_config(
        small_cnn_downsample='maxpool', image_every_step=True), artifacts.STREAM, 'p')
  assert "small_cnn_downsample: artifact 'stride', config 'maxpool'" in str(e.value)
  assert 'image_every_step: artifact False, config True' in str(e.value)


def test_small_cnn_fields_count_only_for_the_small_cnn():
  recorded = {**_captioner_config(backbone='resnet152').model.captioner.to_dict(),
              'small_cnn_features': [4], 'small_cnn_downsample': 'maxpool'}
  meta = {'model': {'captioner': recorded}}
  artifacts.check_config(meta, _captioner_config(backbone='resnet152'), artifacts.STREAM,
                         'p')
  with pytest.raises(ValueError, match="backbone: artifact 'resnet152', config 'small_cnn'"):
    artifacts.check_config(meta, _captioner_config(), artifacts.STREAM, 'p')
  with pytest.raises(ValueError, match='records no model.captioner'):
    artifacts.check_config({'model': {}}, _captioner_config(), artifacts.STREAM, 'p')


def test_tree_check_names_missing_unexpected_and_misshapen_leaves():
  template = {'params': {'a': jax.ShapeDtypeStruct((2, 3), np.float32),
                         'b': jax.ShapeDtypeStruct((4,), np.float32)}}
  artifacts.check_tree({'params': {'a': np.zeros((2, 3)), 'b': np.zeros(4)}}, template, 'x')
  with pytest.raises(ValueError) as e:
    artifacts.check_tree({'params': {'a': np.zeros((3, 2)), 'c': np.zeros(1)}}, template,
                         'the converted thing')
  text = str(e.value)
  assert text.startswith('the converted thing does not fit the model:')
  assert "['params']['b']: missing" in text
  assert "['params']['c']: unexpected" in text
  assert "['params']['a']: (3, 2) instead of (2, 3)" in text


def test_long_mismatch_lists_are_cut_short():
  template = {f'w{i:02d}': jax.ShapeDtypeStruct((1,), np.float32) for i in range(30)}
  with pytest.raises(ValueError, match=r'\.\.\. and 10 more'):
    artifacts.check_tree({}, template, 'x')
