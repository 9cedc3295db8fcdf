"""Configs load, have the paper values, and take command-line overrides."""

import subprocess
import sys

import pytest

from configs import coco
from configs import cub
from configs import shapes
from tests.conftest import ROOT


@pytest.mark.parametrize('module', [shapes, cub, coco])
@pytest.mark.parametrize('arg', [None, 'smoke'])
def test_configs_load(module, arg):
  c = module.get_config(arg)
  g = c.model.generator
  sizes = [g.base_size * 2**i for i in range(g.num_stages)]
  assert all(s >= 16 for s in sizes)
  assert c.train.batch_size > 0 and c.data.words_num > 0


def test_paper_values():
  c = cub.get_config()
  assert c.loss.stream_weight == 20.0  # Paper lambda.
  assert (c.model.generator.ngf, c.model.discriminator.ndf) == (32, 64)
  assert (c.model.generator.base_size, c.model.generator.num_stages) == (64, 3)
  assert c.model.generator.condition_dim == 100 and c.data.words_num == 18
  assert 2 * c.model.text_encoder.hidden_size == 256
  assert (c.optim.g_learning_rate, c.optim.b1, c.optim.b2) == (2e-4, 0.5, 0.999)
  assert c.train.batch_size == 12 and c.data.captions_per_image == 10
  assert coco.get_config().data.captions_per_image == 5


def test_smoke_is_small():
  c = shapes.get_config('smoke')
  assert c.model.generator.base_size * 2**(c.model.generator.num_stages - 1) <= 32
  assert c.data.builder_config == 'tiny'


def test_command_line_overrides():
  """`--config.x.y=v` works through ml_collections' config flags."""
  code = (
      'from absl import flags; from ml_collections import config_flags; import sys\n'
      "config_flags.DEFINE_config_file('config')\n"
      'flags.FLAGS(sys.argv)\n'
      'c = flags.FLAGS.config\n'
      'print(c.train.batch_size, c.loss.stream_weight, c.model.generator.ngf)\n')
  out = subprocess.run(
      [sys.executable, '-c', code, '--config=configs/coco.py:smoke',
       '--config.train.batch_size=3', '--config.loss.stream_weight=0'],
      cwd=ROOT, capture_output=True, text=True, check=True)
  assert out.stdout.split() == ['3', '0.0', '4']
