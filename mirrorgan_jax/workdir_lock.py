"""One run per workdir: an exclusive lock held for the life of the process.

Two runs writing checkpoints into one workdir destroy each other's saves. `main`
takes `<workdir>/.lock.<process index>` with `flock` before any work: the lock is
released by the kernel when the process ends in any way (SIGKILL included), so
a killed run never leaves a stale lock behind and resumes at once. Each JAX
process of a multi-host run locks its own file. Paths that are not local files
(e.g. gs://) cannot be locked and are used unlocked.
"""

import contextlib
import datetime
import fcntl
import os
from typing import Iterator

from etils import epath


class WorkdirInUse(RuntimeError):
  """Another live process holds the workdir."""


def _is_local(workdir: epath.Path) -> bool:
  return '://' not in os.fspath(workdir)


@contextlib.contextmanager
def held(workdir: epath.Path, process_index: int = 0) -> Iterator[None]:
  """Holds `workdir`'s lock for this process inside the `with` block.

  The workdir must exist. A non-local workdir is not locked.

  Raises:
    WorkdirInUse: another process holds the lock; the message names its PID
      and start time.
  """
  if not _is_local(workdir):
    yield
    return
  path = os.path.join(os.fspath(workdir), f'.lock.{process_index}')
  handle = open(path, 'a+', encoding='utf-8')  # pylint: disable=consider-using-with
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    handle.seek(0)
    holder = handle.read().strip() or 'an unknown process'
    handle.close()
    raise WorkdirInUse(
        f'workdir {workdir} is in use by {holder}; two runs on one workdir would '
        'overwrite each other\'s checkpoints. Wait for it to finish, stop it, or use '
        'another --workdir.') from None
  handle.seek(0)
  handle.truncate()
  started = datetime.datetime.now().isoformat(timespec='seconds')
  handle.write(f'PID {os.getpid()} (started {started})\n')
  handle.flush()
  try:
    yield
  finally:
    handle.close()  # Releases the lock.
