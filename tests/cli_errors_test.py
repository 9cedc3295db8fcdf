"""Tests of cli_errors.py and `main`'s answers to user errors: one line, exit code 1."""

import errno
import os
import subprocess
import sys

import pytest

from mirrorgan_jax.infra import cli_errors
from tests.conftest import ROOT


def test_one_line_unwraps_ml_collections_and_joins_lines():
  # What ml_collections raises for an unknown field: the repr of a KeyError's message.
  unknown = AttributeError(KeyError(
      '\'batchsize\'\nDid you mean "batch_size" instead of "batchsize"?'))
  assert cli_errors.one_line(unknown) == (
      '\'batchsize\' Did you mean "batch_size" instead of "batchsize"?')
  assert cli_errors.one_line(OSError('Failed loading\n  Attempted:\n    x.py')) == (
      'Failed loading Attempted: x.py')
  assert cli_errors.one_line(FileNotFoundError("No such file: '/a b'")) == (
      "No such file: '/a b'")
  assert cli_errors.one_line(ValueError('')) == 'ValueError'


def test_full_disk_and_read_only_are_one_line_other_os_errors_are_not(capsys):
  for code in (errno.ENOSPC, errno.EROFS):
    with pytest.raises(SystemExit) as info:
      with cli_errors.reported((), verbose=False):
        raise OSError(code, os.strerror(code), '/runs/x')
    assert info.value.code == 1
    assert capsys.readouterr().err == (
        f"error: [Errno {code}] {os.strerror(code)}: '/runs/x'\n")
  with pytest.raises(OSError):  # A bug's OS error keeps its traceback.
    with cli_errors.reported((), verbose=False):
      raise OSError(errno.EBADF, 'Bad file descriptor')
  with pytest.raises(OSError):  # --verbose keeps it too.
    with cli_errors.reported((), verbose=True):
      raise OSError(errno.ENOSPC, 'No space left on device')


@pytest.mark.parametrize('args,message', [
    (['--config=configs/shapes.py:smoke', '--config.train.batchsize=8'],
     'error: \'batchsize\' Did you mean "batch_size" instead of "batchsize"?'),
    (['--config=configs/nope.py'], "No such file or directory: 'configs/nope.py'"),
    (['--config=configs/shapes.py:smoke', '--config.optim.g_learning_rate=-1',
      '--config.damsm.batch_size=-4'],
     'error: invalid config: optim.g_learning_rate = -1.0: must be a finite number > 0; '
     'damsm.batch_size = -4: must be an integer >= 1'),
])
def test_main_answers_user_errors_with_one_line(tmp_path, args, message):
  out = subprocess.run([sys.executable, '-m', 'mirrorgan_jax.main',
                        f'--workdir={tmp_path / "run"}', *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 1
  errors = [line for line in out.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]
  assert 'Traceback' not in out.stderr
  assert not (tmp_path / 'run').exists()
