"""Shared pytest set-up: CPU only, quiet TF, and the golden-tensor folder."""

import os
import pathlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')  # Tests never use a GPU.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# XLA's CPU optimisation passes dominate the suite's time (tiny models, few steps);
# the environment variable also reaches the tests' subprocesses.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
# numpy's BLAS threads fight over 2 loaded cores: one 2048x2048 eigh (FID) took
# 27 s with them and 4 s on one thread.
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

import pytest  # pylint: disable=g-import-not-at-top

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def golden_dir() -> pathlib.Path:
  """The reference tensors, from $MIRRORGAN_GOLDEN_DIR (default ../shared/golden)."""
  path = pathlib.Path(os.environ.get(
      'MIRRORGAN_GOLDEN_DIR', ROOT.parent / 'shared' / 'golden'))
  if not path.is_dir():
    pytest.fail(f'golden tensors not found at {path}; set MIRRORGAN_GOLDEN_DIR')
  return path
