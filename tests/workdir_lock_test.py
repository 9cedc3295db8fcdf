"""Tests of workdir_lock.py: one run per workdir, no stale lock after a kill."""

import signal
import socket
import subprocess
import sys
import time

from absl.testing import absltest
from etils import epath
import pytest

from configs import shapes
from mirrorgan_jax import main
from mirrorgan_jax.infra import workdir_lock

_HOLD = ('import sys, time; from etils import epath; from mirrorgan_jax.infra import workdir_lock\n'
         'with workdir_lock.held(epath.Path(sys.argv[1]), sys.argv[2:]):\n'
         '  print("held", flush=True); time.sleep(600)\n')


def test_second_holder_is_refused_until_the_first_leaves(tmp_path):
  with workdir_lock.held(tmp_path):
    with pytest.raises(workdir_lock.WorkdirInUse,
                       match=rf'in use \(train\) by PID \d+ on {socket.gethostname()} '
                       r'\(started'):
      with workdir_lock.held(tmp_path, ('eval', 'train')):
        pass
    with workdir_lock.held(tmp_path, ('eval',)):  # Evaluating beside training is fine.
      pass
    with workdir_lock.held(tmp_path, process_index=1):  # Another process's own lock.
      pass
  with workdir_lock.held(tmp_path):  # Released on leaving the block.
    pass
  assert (tmp_path / '.lock.train.0').read_text() == ''  # Ended normally.
  with pytest.raises(ValueError, match='unknown lock roles'):
    with workdir_lock.held(tmp_path, ('write',)):
      pass


def _hold(tmp_path, *roles):
  holder = subprocess.Popen([sys.executable, '-c', _HOLD, str(tmp_path), *roles],
                            stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'held'
  return holder


def _kill(holder):
  holder.send_signal(signal.SIGKILL)
  holder.wait()


@pytest.mark.parametrize('held_role,mode', [('train', 'gan'), ('eval', 'eval')])
def test_main_refuses_a_busy_workdir_at_once(tmp_path, held_role, mode):
  holder = _hold(tmp_path, held_role)
  try:
    start = time.time()
    with pytest.raises(workdir_lock.WorkdirInUse, match=f'PID {holder.pid} '):
      main.run(shapes.get_config('smoke'), epath.Path(tmp_path), mode)
    assert time.time() - start < 10  # Refused before any work.
    assert not (tmp_path / 'config.json').exists()  # Nothing of the holder's touched.
  finally:
    _kill(holder)


def test_a_killed_holder_leaves_no_lock_and_the_take_over_is_logged(tmp_path):
  holder = _hold(tmp_path, 'train')
  _kill(holder)
  with absltest.TestCase().assertLogs(level='WARNING') as logs:
    with workdir_lock.held(tmp_path):
      pass
  assert f'PID {holder.pid}' in logs.output[0] and 'taking it over' in logs.output[0]
