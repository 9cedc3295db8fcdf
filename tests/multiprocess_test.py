"""Several JAX processes on one machine (gloo collectives on 127.0.0.1), as on a pod.

- The GAN phase, run as 2 processes x 2 CPU devices, equals the 1 process x 4
  devices run: losses at every logged step and every leaf of the final checkpoint
  (`compare_runs`). Both start from copies of the session smoke run's frozen
  networks. (Against the smoke run's own 1-device GAN they differ by ~1e-2 after 12
  steps: another device count sums in another order, and Adam turns the float noise
  of gradients that are ~0 in theory into full steps, which a GAN amplifies.) Every phase and the evaluation: `launch/local_multiprocess.sh` (the slow
  test below; about 6 minutes on 2 cores). Under `pmap` the pretraining phases
  match too, but the GAN phase hangs (open; the slow test expects that failure).
- Joining fails fast and clearly: no coordinator, a wrong process count, processes
  started with different configs.
- `compare_runs` itself finds a difference when there is one.
Every run has a timeout, so a hang fails instead of stalling the suite.
"""

import subprocess
import sys

import numpy as np
import pytest

from mirrorgan_jax import compare_runs
from mirrorgan_jax import multiprocess_check
from tests.conftest import ROOT

_TIMEOUT_S = 300


def _main_args(smoke_run, mode: str) -> list[str]:
  return [f'--config={ROOT}/configs/shapes.py:smoke', '--mode=gan',
          f'--config.data.data_dir={smoke_run.data_dir}',
          f'--config.eval.num_samples={smoke_run.config.eval.num_samples}',
          '--config.eval.inception_random_weights=True', f'--config.parallel.mode={mode}',
          '--config.train.probe_samples=0']  # The probe's decisions are not compared.


def test_two_processes_equal_one_process(smoke_run, tmp_path):
  """2 processes x 2 devices against 1 process x 4 devices, from the same networks."""
  runs = {}
  for processes in (1, 2):
    workdir = multiprocess_check.frozen_copy(str(smoke_run.workdir),
                                             str(tmp_path / f'run{processes}'))
    outcome = multiprocess_check.spawn(_main_args(smoke_run, 'jit'), workdir, processes,
                                       4 // processes, _TIMEOUT_S)
    assert outcome.ok, '\n'.join(open(log).read()[-3000:] for log in outcome.logs)
    runs[processes] = workdir
  report = compare_runs.compare(runs[1], runs[2], phases=('gan',))
  assert not report.failed, '\n'.join(report.lines)
  checked = '\n'.join(report.lines)
  for what in ('gan logged scalars', 'gan newest checkpoint'):
    assert what in checked


@pytest.mark.slow
@pytest.mark.parametrize('mode', [
    'jit', pytest.param('pmap', marks=pytest.mark.xfail(
        reason='the GAN phase of a 2-process pmap job hangs at its start (open)',
        strict=True))])
def test_every_phase_two_processes_equal_one_process(tmp_path, mode, capsys):
  assert multiprocess_check.check(f'{ROOT}/configs/shapes.py:smoke', [mode], 2, 4,
                                  str(tmp_path), 300)
  assert f'{mode}: 2 processes equal 1 process' in capsys.readouterr().out


def _start(index: int, num: int, port: int, workdir, *extra) -> subprocess.Popen:
  return subprocess.Popen(
      [sys.executable, '-m', 'mirrorgan_jax.main', f'--workdir={workdir}',
       f'--config={ROOT}/configs/shapes.py:smoke', '--distributed',
       f'--coordinator_address=127.0.0.1:{port}', f'--num_processes={num}',
       f'--process_id={index}', '--distributed_timeout=5', *extra],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_joining_errors_are_clear_and_bounded(tmp_path):
  """Each case ends within the join timeout (5 s) plus start-up, with one error line."""
  cases = {
      # Process 1 of 2, and nobody at the coordinator's address.
      'no coordinator': [_start(1, 2, multiprocess_check.free_port(), tmp_path / 'a')],
      # Process 0 of 3 hosts the coordinator, but the other two never come.
      'wrong count': [_start(0, 3, multiprocess_check.free_port(), tmp_path / 'b')],
  }
  port = multiprocess_check.free_port()
  cases['different configs'] = [
      _start(i, 2, port, tmp_path / 'c', f'--config.seed={i}') for i in range(2)]
  for name, procs in cases.items():
    for proc in procs:
      out, _ = proc.communicate(timeout=120)
      assert proc.returncode == 1, (name, out[-2000:])
      error = out.strip().splitlines()[-1]
      assert 'Traceback' not in out, (name, out[-2000:])
      if name == 'different configs':
        assert 'started with different configs' in error, error
      else:
        assert 'could not join the JAX job at 127.0.0.1:' in error, error
        assert 'within 5 s' in error, error


def test_compare_runs_finds_a_difference(tmp_path):
  a, b = tmp_path / 'a', tmp_path / 'b'
  for path, loss in ((a, 1.0), (b, 1.001)):
    (path / 'eval').mkdir(parents=True)
    (path / 'eval' / 'results.json').write_text(
        f'{{"step": 3, "fid": {loss}, "images_per_second": {loss * 7}}}')
    (path / 'gan').mkdir()
  report = compare_runs.compare(a, b, rtol=1e-4, atol=1e-5)
  assert report.failed and any('1 beyond tolerance (first: fid)' in l for l in report.lines)
  report = compare_runs.compare(a, b, rtol=1e-2, atol=1e-5)
  assert not report.failed  # images_per_second is never compared.
  diff, ok = compare_runs._difference(np.array([1.0, np.nan]), np.array([1.0, np.nan]),  # pylint: disable=protected-access
                                      0.0, 0.0)
  assert ok and diff == 0.0
