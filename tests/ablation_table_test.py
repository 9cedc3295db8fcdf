"""Tests of the ablation table: flattening, mean ± std by hand, bad run directories."""

import json
import math

import pytest

from mirrorgan_jax.evaluation import ablation_table
from mirrorgan_jax.evaluation import eval_protocol


def _run(root, name, results):
  path = root / name / 'eval'
  path.mkdir(parents=True)
  (path / 'results.json').write_text(json.dumps(results))
  return root / name


def test_flat_scalars_keep_finite_numbers_only():
  tree = {'a': {'b': 1, 'c': 'text', 'd': None, 'e': True, 'f': float('nan')}, 'g': 2.5}
  assert eval_protocol.flat_scalars(tree) == {'a/b': 1.0, 'g': 2.5}


def test_mean_std_by_hand():
  # mean of 1, 2, 4 = 7/3; squared deviations 16/9 + 1/9 + 25/9 = 42/9; / 2 = 7/3.
  mean, std = ablation_table.mean_std([1.0, 2.0, 4.0])
  assert mean == pytest.approx(7 / 3)
  assert std == pytest.approx(math.sqrt(7 / 3))
  assert ablation_table.mean_std([3.0]) == (3.0, 0.0)


def test_table_groups_seeds_by_arm(tmp_path):
  runs = [_run(tmp_path, 'lambda0_seed0', {'oracle': {'acc': 0.5}, 'fid': 10.0}),
          _run(tmp_path, 'lambda0_seed1', {'oracle': {'acc': 0.7}, 'fid': 12.0}),
          _run(tmp_path, 'lambda20_seed0', {'oracle': {'acc': 0.9}, 'fid': None})]
  text = ablation_table.table(ablation_table.collect(runs), ['oracle/*', 'fid'])
  lines = text.strip().split('\n')
  assert lines[0] == '| arm | seeds | oracle/acc | fid |'
  # lambda0: acc mean 0.6, std sqrt(0.02) = 0.1414; fid mean 11, std sqrt(2) = 1.4142.
  assert lines[2] == '| lambda0 | 2 | 0.6000 ± 0.1414 | 11.0000 ± 1.4142 |'
  assert lines[3] == '| lambda20 | 1 | 0.9000 ± 0.0000 | n/a |'


def test_bad_run_directories(tmp_path):
  with pytest.raises(ValueError, match='<arm>_seed<S>'):
    ablation_table.collect([tmp_path / 'no_seed_here'])
  with pytest.raises(FileNotFoundError, match='results.json'):
    ablation_table.collect([tmp_path / 'lambda0_seed3'])
