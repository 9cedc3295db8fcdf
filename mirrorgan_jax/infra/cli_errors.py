"""How the command-line tools answer user errors: one `error:` line, exit code 1.

A bad flag, config override, path or config value is the user's to fix, so
it is reported as one line on stderr without a traceback (`--verbose` brings
the traceback back). Anything else is a bug and keeps its traceback.
"""

import contextlib
import errno
import re
import sys
from typing import Iterator, NoReturn, Sequence

from absl import flags

from mirrorgan_jax.infra import config_check
from mirrorgan_jax.infra import multihost
from mirrorgan_jax.infra import workdir_lock

# Errors of the user's making once the flags are parsed.
USER_ERRORS = (config_check.ConfigError, workdir_lock.WorkdirInUse, multihost.JobError,
               FileNotFoundError,
               PermissionError, IsADirectoryError, NotADirectoryError)
# Operating-system errors that are the machine's state, not a bug: a full disk
# or quota, a read-only file system.
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES})
# What a bad flag or config override raises while absl parses the flags
# (ml_collections raises AttributeError for an unknown field, the config loader
# OSError or its own errors for a bad file).
FLAG_ERRORS = (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError)


def one_line(error: BaseException) -> str:
  """The error's message on one line (whitespace runs, newlines included, become one space).

  ml_collections wraps the repr of a KeyError message in its AttributeError
  (quotes and newlines escaped); that is unwrapped.
  """
  text = str(error).strip()
  if isinstance(error, AttributeError) and text[:1] == text[-1:] and text[:1] in '\'"':
    text = text[1:-1].replace('\\n', ' ').replace("\\'", "'")
  return re.sub(r'\s+', ' ', text) or type(error).__name__


def fail(error: BaseException) -> NoReturn:
  """Prints `error: <message>` on stderr and exits with code 1."""
  print(f'error: {one_line(error)}', file=sys.stderr)
  sys.exit(1)


@contextlib.contextmanager
def reported(kinds: tuple[type[BaseException], ...], verbose: bool) -> Iterator[None]:
  """Errors of `kinds`, or OS errors of USER_ERRNOS, end in `fail` unless `verbose`."""
  try:
    yield
  except kinds as e:
    if verbose:
      raise
    fail(e)
  except OSError as e:
    if verbose or e.errno not in USER_ERRNOS:
      raise
    fail(e)


def parse_flags(argv: Sequence[str]) -> list[str]:
  """`app.run`'s flags parser: a bad flag or config override ends in `fail`."""
  with reported(FLAG_ERRORS, verbose='--verbose' in argv):
    return flags.FLAGS(list(argv))
