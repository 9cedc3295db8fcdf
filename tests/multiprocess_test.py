"""Several JAX processes on one machine (gloo collectives on 127.0.0.1), as on a pod.

- The GAN phase, run as 2 processes x 2 CPU devices, equals the 1 process x 4
  devices run: losses at every logged step and every leaf of the final checkpoint
  (`compare_runs`), although the 2-process job is killed and restarted on the way
  (in `make test-slow` also preempted (SIGTERM) and restarted). Both start from
  copies of the session smoke run's frozen networks. (Against the smoke run's own
  1-device GAN they differ by ~1e-2 after 12 steps: another device count sums in
  another order, and Adam turns the float noise of gradients that are ~0 in theory
  into full steps, which a GAN amplifies.) Every phase and the evaluation, under jit
  and pmap: `launch/local_multiprocess.sh` (the slow test below; ~6 minutes per mode
  on 2 cores).
- Joining fails fast and clearly: no coordinator, a wrong process count, processes
  started with different configs.
- `compare_runs` itself finds a difference when there is one.
Every run has a timeout, so a hang fails instead of stalling the suite.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mirrorgan_jax import compare_runs
from mirrorgan_jax import multiprocess_check
from mirrorgan_jax.infra import ports
from tests.conftest import ROOT

_TIMEOUT_S = 300
_CONFIG = f'--config={ROOT}/configs/shapes.py:smoke'


def _main_args(smoke_run) -> list[str]:
  return [_CONFIG, '--mode=gan',
          f'--config.data.data_dir={smoke_run.data_dir}',
          '--config.train.probe_samples=0',  # The probe's decisions are not compared.
          '--config.train.eval_every_steps=1000',  # Sample grids only at the end.
          # With the shapes default's text-feature rescaling the two runs agree to 1e-5
          # for 8 steps, then drift (0.7% of the parameters at step 12), also without
          # STREAM's term; not explained yet. One step with it is compared in
          # gan_step_test (8 devices against 1).
          '--config.model.generator.word_rms=0', '--config.model.discriminator.sentence_rms=0']


def _start(index: int, num: int, port: int, workdir, *extra, env=None) -> subprocess.Popen:
  """Process `index` of a `num`-process `main` job, output to `<workdir>.<index>.log`."""
  log = open(f'{workdir}.{index}.log', 'a')  # pylint: disable=consider-using-with
  return subprocess.Popen(
      [sys.executable, '-m', 'mirrorgan_jax.main', f'--workdir={workdir}',
       '--distributed', f'--coordinator_address=127.0.0.1:{port}', f'--num_processes={num}',
       f'--process_id={index}', *extra],
      stdout=log, stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for(condition, procs, what: str) -> None:
  deadline = time.monotonic() + _TIMEOUT_S
  while not condition():
    assert time.monotonic() < deadline, f'timed out waiting for {what}'
    assert all(p.poll() is None for p in procs), f'a process ended before {what}'
    time.sleep(0.05)


def _last_line(workdir, index: int) -> str:
  return open(f'{workdir}.{index}.log').read().strip().splitlines()[-1]


def _newest_checkpoint(checkpoints: str) -> int:
  """The highest step saved under `checkpoints`."""
  return max(int(step) for step in os.listdir(checkpoints) if step.isdigit())


# CI kills and restarts; the preemption round adds a third start (~1 minute of
# compiling on 2 cores), so it runs in `make test-slow` (runner_test checks SIGTERM
# saves in one process).
@pytest.mark.parametrize('preempt', [False, pytest.param(True, marks=pytest.mark.slow)])
def test_two_processes_survive_kill_and_preemption_and_equal_one_process(
    smoke_run, tmp_path, preempt):
  """2 processes x 2 devices, killed, restarted (preempted and restarted), equal 1 x 4.

  Both runs train the GAN from copies of the smoke run's frozen networks.
  1. SIGKILL process 1 once checkpoint 4 exists: process 0 ends on its own, with one
     error line and exit code 1 (at once when gloo reports the lost connection, else
     within the peer watch: half the heartbeat timeout).
  2. With `preempt`: restart both, SIGTERM both as they resume: they agree on one
     step, save it and exit with 143.
  3. Restart both: they finish. The losses logged at every step and the final
     checkpoint equal the 1-process run's.
  """
  one = multiprocess_check.frozen_copy(str(smoke_run.workdir), str(tmp_path / 'one'))
  many = multiprocess_check.frozen_copy(str(smoke_run.workdir), str(tmp_path / 'many'))
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  checkpoints = os.path.join(many, 'gan', 'checkpoints')

  def job():
    port = ports.free_port()
    return [_start(i, 2, port, many, *_main_args(smoke_run), '--heartbeat_timeout=30',
                   env=env) for i in range(2)]

  # The 1-process run beside the first 2-process start (they share the 2 cores).
  reference = subprocess.Popen(
      [sys.executable, '-m', 'mirrorgan_jax.main', f'--workdir={one}', *_main_args(smoke_run)],
      stdout=open(f'{one}.log', 'w'), stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
      env=dict(env, XLA_FLAGS='--xla_force_host_platform_device_count=4'))
  procs = job()
  # Watched before the reference ends: on a loaded machine the 2-process job can
  # otherwise finish (and drop checkpoint 4) while the reference still runs.
  _wait_for(lambda: os.path.isdir(os.path.join(checkpoints, '4')), procs, 'checkpoint 4')
  procs[1].kill()
  assert procs[0].wait(timeout=60) == 1, _last_line(many, 0)
  # Either the peer watch ('process 1 of 2 stopped responding') or gloo's own error
  # ('a computation failed (... Connection reset by peer)') comes first.
  error = _last_line(many, 0)
  assert error.startswith('error: process '), error
  assert 'restart every process with the same command' in error.lower(), error
  saved = _newest_checkpoint(checkpoints)

  if preempt:
    procs = job()
    _wait_for(lambda: 'gan: resuming at step' in open(f'{many}.0.log').read(), procs,
              'the resume')
    for p in procs:
      p.send_signal(signal.SIGTERM)
    assert [p.wait(timeout=_TIMEOUT_S) for p in procs] == [143, 143], _last_line(many, 0)
    saved = _newest_checkpoint(checkpoints)
    assert saved < 12, saved  # Stopped early, at a step both saved.

  procs = job()
  assert [p.wait(timeout=_TIMEOUT_S) for p in procs] == [0, 0], _last_line(many, 0)
  assert reference.wait(timeout=_TIMEOUT_S) == 0, open(f'{one}.log').read()[-3000:]
  log = open(f'{many}.0.log').read()
  assert f'gan: resuming at step {saved} of 12.' in log
  report = compare_runs.compare(one, many, phases=('gan',))
  assert not report.failed, '\n'.join(report.lines)
  checked = '\n'.join(report.lines)
  for what in ('gan logged scalars', 'gan newest checkpoint'):
    assert what in checked


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['jit', 'pmap'])
def test_every_phase_two_processes_equal_one_process(tmp_path, mode, capsys):
  assert multiprocess_check.check(f'{ROOT}/configs/shapes.py:smoke', [mode], 2, 4,
                                  str(tmp_path), 300)
  assert f'{mode}: 2 processes equal 1 process' in capsys.readouterr().out


def test_joining_errors_are_clear_and_bounded(tmp_path):
  """Each case ends within the join timeout (5 s) plus start-up, with one error line."""
  join, free_port = ('--distributed_timeout=5', _CONFIG), ports.free_port
  a, b, c = (tmp_path / name for name in 'abc')
  cases = {  # name: (workdir, {process index: process})
      # Process 1 of 2, and nobody at the coordinator's address.
      'no coordinator': (a, {1: _start(1, 2, free_port(), a, *join)}),
      # Process 0 of 3 hosts the coordinator, but the other two never come.
      'wrong count': (b, {0: _start(0, 3, free_port(), b, *join)}),
  }
  port = free_port()
  cases['different configs'] = (c, {i: _start(i, 2, port, c, *join, f'--config.seed={i}')
                                    for i in range(2)})
  for name, (workdir, procs) in cases.items():
    for index, proc in procs.items():
      assert proc.wait(timeout=120) == 1, name
      out = open(f'{workdir}.{index}.log').read()
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
