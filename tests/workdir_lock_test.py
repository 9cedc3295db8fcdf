"""Tests of workdir_lock.py: one run per workdir, no stale lock after a kill."""

import signal
import subprocess
import sys
import time

from etils import epath
import pytest

from configs import shapes
from mirrorgan_jax import main
from mirrorgan_jax import workdir_lock

_HOLD = ('import sys, time; from etils import epath; from mirrorgan_jax import workdir_lock\n'
         'with workdir_lock.held(epath.Path(sys.argv[1])):\n'
         '  print("held", flush=True); time.sleep(600)\n')


def test_second_holder_is_refused_until_the_first_leaves(tmp_path):
  with workdir_lock.held(tmp_path):
    with pytest.raises(workdir_lock.WorkdirInUse, match=r'in use by PID \d+ \(started'):
      with workdir_lock.held(tmp_path):
        pass
    with workdir_lock.held(tmp_path, process_index=1):  # Another process's own lock.
      pass
  with workdir_lock.held(tmp_path):  # Released on leaving the block.
    pass


def test_main_refuses_a_busy_workdir_and_a_killed_holder_leaves_no_lock(tmp_path):
  holder = subprocess.Popen([sys.executable, '-c', _HOLD, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    start = time.time()
    with pytest.raises(workdir_lock.WorkdirInUse, match=f'PID {holder.pid} '):
      main.run(shapes.get_config('smoke'), epath.Path(tmp_path), 'all')
    assert time.time() - start < 10  # Refused before any work.
    assert not (tmp_path / 'config.json').exists()  # Nothing of the holder's touched.
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with workdir_lock.held(tmp_path):  # The kernel released the killed holder's lock.
    pass
