"""Tests of config loading for the argparse CLIs: overrides and clear errors."""

import pytest

from mirrorgan_jax.infra import config_loading
from tests.conftest import ROOT


def test_spec_argument_and_overrides():
  config = config_loading.load_config(
      f'{ROOT}/configs/shapes.py:smoke', ['--config.train.batch_size=4'])
  assert config.data.builder_config == 'tiny'  # The :smoke variant.
  assert config.train.batch_size == 4


def test_errors_name_the_problem(tmp_path):
  with pytest.raises(ValueError, match='no field no_such_field'):
    config_loading.load_config(f'{ROOT}/configs/shapes.py', ['--config.no_such_field=1'])
  with pytest.raises(ValueError, match='bad --config'):
    config_loading.load_config(str(tmp_path / 'missing.py'))
  with pytest.raises(ValueError, match='unexpected arguments'):
    config_loading.load_config(f'{ROOT}/configs/shapes.py', ['stray'])
