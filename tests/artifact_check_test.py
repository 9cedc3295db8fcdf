"""Tests of artifact_check.py: architecture fields compared between artifact and config."""

import ml_collections
import pytest

from mirrorgan_jax import artifact_check

FIELDS = {'captioner': ('backbone', 'small_cnn_features', 'small_cnn_downsample',
                        'image_every_step')}


def _config(**captioner):
  return ml_collections.ConfigDict({'model': {'captioner': {
      'backbone': 'small_cnn', 'small_cnn_features': (8, 16), **captioner}}})


def test_fields_added_later_take_their_old_value_when_absent():
  # An artifact written before `small_cnn_downsample` / `image_every_step` existed
  # used stride-2 convolutions and the image at the first step only.
  old_meta = {'model': {'captioner': {'backbone': 'small_cnn',
                                      'small_cnn_features': [8, 16]}}}
  artifact_check.check_architecture(old_meta, _config(), FIELDS, 'p', 'STREAM')
  artifact_check.check_architecture(
      old_meta, _config(small_cnn_downsample='stride', image_every_step=False), FIELDS,
      'p', 'STREAM')
  with pytest.raises(ValueError) as e:
    artifact_check.check_architecture(
        old_meta, _config(small_cnn_downsample='maxpool', image_every_step=True), FIELDS,
        'p', 'STREAM')
  assert "small_cnn_downsample: artifact 'stride', config 'maxpool'" in str(e.value)
  assert 'image_every_step: artifact False, config True' in str(e.value)


def test_small_cnn_fields_count_only_for_the_small_cnn():
  meta = {'model': {'captioner': {'backbone': 'resnet152', 'small_cnn_features': [4],
                                  'small_cnn_downsample': 'maxpool'}}}
  config = _config(backbone='resnet152')
  artifact_check.check_architecture(meta, config, FIELDS, 'p', 'STREAM')
  with pytest.raises(ValueError, match="backbone: artifact 'resnet152', config 'small_cnn'"):
    artifact_check.check_architecture(meta, _config(), FIELDS, 'p', 'STREAM')
  with pytest.raises(ValueError, match='records no model.captioner'):
    artifact_check.check_architecture({'model': {}}, config, FIELDS, 'p', 'STREAM')
