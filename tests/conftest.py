"""Shared pytest set-up: CPU only, quiet TF, the golden-tensor folder, one smoke run."""

import json
import os
import pathlib
from typing import Any, NamedTuple

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
  """The reference tensors, from $MIRRORGAN_GOLDEN_DIR (default tests/golden)."""
  path = pathlib.Path(os.environ.get('MIRRORGAN_GOLDEN_DIR', ROOT / 'tests' / 'golden'))
  if not path.is_dir():
    pytest.fail(f'golden tensors not found at {path}; set MIRRORGAN_GOLDEN_DIR')
  return path


class SmokeRun(NamedTuple):
  """A finished `--mode all` run on configs/shapes.py:smoke (shared, do not modify)."""
  config: Any
  data_dir: pathlib.Path
  workdir: Any  # etils.epath.Path
  results: dict  # <workdir>/eval/results.json
  eval_programs: int  # Compiled programs of the evaluator's generation step.


def logged_scalars(logdir) -> dict[tuple[int, str], float]:
  """{(step, tag): value} of every scalar summary under `logdir`."""
  from mirrorgan_jax import compare_runs  # pylint: disable=g-import-not-at-top
  return compare_runs.logged_scalars(logdir)


# The smoke run's eval: 32 tiny eval images, round 1 (caption 1) for 5 of them,
# 3 padding rows in batches of 8; random Inception weights so IS/FID run.
SMOKE_EVAL_SAMPLES = 37


def smoke_config(data_dir):
  """The shared smoke run's config (tests that re-run phases use it too)."""
  from configs import shapes  # pylint: disable=g-import-not-at-top
  c = shapes.get_config('smoke')
  c.data.data_dir = str(data_dir)
  c.eval.num_samples = SMOKE_EVAL_SAMPLES
  c.eval.inception_random_weights = True
  c.train.profile_steps = (2, 3)
  return c


@pytest.fixture(scope='session')
def smoke_run(tmp_path_factory) -> SmokeRun:
  """Every phase (damsm, stream, oracle, gan, eval) once for the whole session.

  Tests that need to change a run copy `workdir` first.
  """
  # pylint: disable=g-import-not-at-top
  from etils import epath
  from mirrorgan_jax import main
  from mirrorgan_jax.evaluation import evaluator
  data_dir = tmp_path_factory.mktemp('smoke_tfds')
  workdir = epath.Path(tmp_path_factory.mktemp('smoke_run'))
  evaluator._generated_step.clear_cache()  # pylint: disable=protected-access
  config = smoke_config(data_dir)
  main.run(config, workdir, 'all')
  programs = evaluator._generated_step._cache_size()  # pylint: disable=protected-access
  results = json.loads((workdir / 'eval' / 'results.json').read_text(),
                       parse_constant=lambda c: pytest.fail(f'{c} in results.json'))
  return SmokeRun(config, data_dir, workdir, results, programs)
