"""One run per workdir: exclusive locks held for the life of the process.

Two runs writing checkpoints into one workdir destroy each other's saves. `main`
takes `<workdir>/.lock.<role>.<process index>` with `flock` before any work,
where the role is 'train' (the training phases) or 'eval' (writing `eval/`), so
an evaluation of a finished checkpoint may run beside training, but not two
trainings or two evaluations. Readers (`sample_cli`) take no lock.

The kernel releases a lock when its process ends in any way (SIGKILL included),
so a dead holder never blocks a restart. A holder that ends normally empties
its lock file; one that still names a holder when taken was left by a process
that was killed or failed, and the take-over is logged. Each JAX process of a multi-host run
locks its own files. Paths that are not local (e.g. gs://) are used unlocked.
"""

import contextlib
import datetime
import fcntl
import os
import socket
from typing import Iterator, Sequence

from absl import logging
from etils import epath

ROLES = ('train', 'eval')


class WorkdirInUse(RuntimeError):
  """Another live process holds the workdir."""


def _is_local(workdir: epath.Path) -> bool:
  return '://' not in os.fspath(workdir)


@contextlib.contextmanager
def _held(workdir: epath.Path, role: str, process_index: int) -> Iterator[None]:
  path = os.path.join(os.fspath(workdir), f'.lock.{role}.{process_index}')
  handle = open(path, 'a+', encoding='utf-8')  # pylint: disable=consider-using-with
  try:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or 'another process'
      raise WorkdirInUse(
          f'workdir {workdir} is in use ({role}) by {holder}; two runs on one workdir '
          "would overwrite each other's files. Wait for it, stop it, or use another "
          '--workdir.') from None
    handle.seek(0)
    left = handle.read().strip()
    if left:
      logging.warning('Workdir %s: the %s lock of %s was left by a process that did not end '
                      'normally; taking it over.', workdir, role, left)
    handle.seek(0)
    handle.truncate()
    started = datetime.datetime.now().isoformat(timespec='seconds')
    handle.write(f'PID {os.getpid()} on {socket.gethostname()} (started {started})\n')
    handle.flush()
    yield
    handle.seek(0)
    handle.truncate()  # Ended normally: nothing to take over.
  finally:
    handle.close()  # Releases the lock.


@contextlib.contextmanager
def held(workdir: epath.Path, roles: Sequence[str] = ('train',),
         process_index: int = 0) -> Iterator[None]:
  """Holds `workdir`'s locks of `roles` for this process inside the `with` block.

  The workdir must exist. A non-local workdir is not locked.

  Raises:
    WorkdirInUse: another process holds one of the locks; the message names
      its PID, host and start time.
    ValueError: an unknown role.
  """
  unknown = set(roles) - set(ROLES)
  if unknown:
    raise ValueError(f'unknown lock roles {sorted(unknown)}; expected some of {ROLES}')
  with contextlib.ExitStack() as stack:
    if _is_local(workdir):
      for role in roles:
        stack.enter_context(_held(workdir, role, process_index))
    yield
