"""Tests of config_check.py: every rule rejects a bad value and names the field."""

import math

import pytest

from configs import coco
from configs import cub
from configs import shapes
from mirrorgan_jax.infra import config_check
from mirrorgan_jax import main

BAD_VALUES = {  # A value each rule must reject, by the kind of rule.
    config_check.POSITIVE_INT: 0, config_check.NON_NEGATIVE_INT: -1,
    config_check.POSITIVE: -1e-3, config_check.NON_NEGATIVE: math.nan,
    config_check.FRACTION: 1.0, config_check.UNIT: 1.5, config_check.WIDTHS: (8, 0),
    config_check.POWER_OF_TWO: 24, config_check.STEPS: (-1,),
}


def test_the_shipped_configs_pass():
  for module in (shapes, cub, coco):
    for arg in (None, 'smoke'):
      assert config_check.problems(module.get_config(arg), device_count=1) == []
  assert config_check.problems(shapes.get_config('scratch_backbones'), device_count=1) == []
  assert config_check.problems(shapes.get_config('smoke'), device_count=8) == []


@pytest.mark.parametrize('path', sorted(config_check.RULES))
def test_each_rule_rejects_a_bad_value_and_names_the_field(path):
  config = shapes.get_config('smoke')
  requirement, _ = config_check.RULES[path]
  bad = BAD_VALUES.get(config_check.RULES[path], 'no-such-choice')
  *parents, leaf = path.split('.')
  node = config
  for key in parents:
    node = node[key]
  with node.ignore_type():
    node[leaf] = bad
  found = config_check.problems(config)
  # First: a bad ngf also breaks the initial_channels >= ngf rule after it.
  assert found[0] == f'{path} = {bad!r}: must be {requirement}', found


def test_negative_learning_rates_are_refused_before_any_work(tmp_path):
  config = shapes.get_config('smoke')
  config.optim.g_learning_rate = -1.0
  config.optim.d_learning_rate = -0.5
  with pytest.raises(config_check.ConfigError) as e:
    main.run(config, tmp_path / 'run', 'gan')
  assert str(e.value) == (
      'invalid config: optim.g_learning_rate = -1.0: must be a finite number > 0; '
      'optim.d_learning_rate = -0.5: must be a finite number > 0')
  assert not (tmp_path / 'run').exists()


def test_batches_must_split_over_the_devices():
  config = shapes.get_config('smoke')
  config.train.batch_size = 3
  assert config_check.problems(config, device_count=8, process_count=2) == [
      'train.batch_size = 3: must be divisible by the 8 devices (2 process(es)); e.g. 8']
  config.train.batch_size = 12
  assert config_check.problems(config, device_count=8) == [
      'train.batch_size = 12: must be divisible by the 8 devices (1 process(es)); e.g. 8']


def test_initial_channels_below_ngf_and_manual_dir(tmp_path):
  config = shapes.get_config('smoke')
  config.model.generator.initial_channels = config.model.generator.ngf - 1
  assert config_check.problems(config) == [
      f'model.generator.initial_channels = {config.model.generator.ngf - 1}: must be 0 '
      f'or >= ngf ({config.model.generator.ngf})']
  config = cub.get_config()
  assert config_check.problems(config, dataset_prepared=False) == [
      "data.manual_dir = '': cub is not built yet; point data.manual_dir at the "
      'downloaded raw files (README, "Datasets")']
  assert config_check.problems(config, dataset_prepared=True) == []
  config.data.manual_dir = str(tmp_path / 'missing')
  assert config_check.problems(config) == [
      f"data.manual_dir = {str(tmp_path / 'missing')!r}: no such directory"]
  config.data.manual_dir = str(tmp_path)
  assert config_check.problems(config, dataset_prepared=False) == []


def test_swap_negatives_need_captioned_shapes():
  config = cub.get_config()
  config.damsm.swap_negatives = True
  assert any('damsm.swap_negatives = True' in p and "'cub'" in p
             for p in config_check.problems(config))
  assert not config_check.problems(shapes.get_config())  # The default uses it.


def test_classifier_backbone_needs_an_image_encoder_shaped_like_the_classifier():
  config = shapes.get_config('smoke')
  assert config.damsm.pretrained_backbone == config.stream.pretrained_backbone == 'classifier'
  assert config_check.problems(config) == []
  config.model.image_encoder.small_cnn_downsample = 'stride'
  config.model.image_encoder.input_size = 64
  assert config_check.problems(config) == [
      "damsm.pretrained_backbone = 'classifier' needs "
      "model.image_encoder.small_cnn_downsample = 'maxpool' (the classifier is the "
      "oracle network of section `oracle`), got 'stride'",
      "damsm.pretrained_backbone = 'classifier' needs model.image_encoder.input_size "
      '= 32 (the classifier is the oracle network of section `oracle`), got 64']
  config.model.image_encoder.small_cnn_downsample = 'maxpool'
  config.model.image_encoder.input_size = 32
  config.model.captioner.small_cnn_features = (16, 32)  # STREAM's backbone is checked too.
  assert config_check.problems(config) == [
      "stream.pretrained_backbone = 'classifier' needs model.captioner.small_cnn_features "
      '= (8, 16) (the classifier is the oracle network of section `oracle`), got (16, 32)']
  config = cub.get_config('smoke')
  config.damsm.pretrained_backbone = 'classifier'
  assert any("needs data.name = 'captioned_shapes'" in p
             for p in config_check.problems(config))
  config.damsm.pretrained_backbone = 'imagenet'
  assert config_check.problems(config) == [
      "damsm.pretrained_backbone = 'imagenet': must be '' or 'classifier'"]


def test_lower_stage_stream_needs_that_many_stages():
  config = shapes.get_config('smoke')
  config.loss.stream_lower_weight = 10.0
  config.model.generator.num_stages = 3
  config.loss.stream_lower_stages = 3
  assert config_check.problems(config) == [
      'loss.stream_lower_stages = 3: G has only 2 stage(s) below the last']
  config.loss.stream_lower_stages = 2
  assert config_check.problems(config) == []
  config.loss.stream_lower_weight = 0.0  # Off: the count does not matter.
  config.loss.stream_lower_stages = 3
  assert config_check.problems(config) == []
