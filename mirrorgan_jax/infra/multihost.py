"""Joining a multi-process JAX job, with bounded waits and one clear error per failure.

`join` wraps `jax.distributed.initialize`: a coordinator that cannot be reached, or
a job whose processes never all arrive (a wrong process count), ends after
`timeout_s` with one error line that names the address, this process and the
count, and exit code 1, instead of a long hang or a C++ abort. A process that dies
or hangs later is noticed by the others within half of `heartbeat_s` (`_PeerWatch`):
each ends with one error line and exit code 1, and a restart of every process
resumes from the newest checkpoints. Orbax is switched to the coordination
service's barriers, and JAX's persistent compilation cache is turned off (see
`join`). `check_same_config` then compares the configs
of all processes (a hash, gathered from each), so processes started with different
overrides stop before training rather than diverging or hanging in a collective.
"""

import atexit
import contextlib
import os
import sys
import threading
import time
import zlib

from absl import flags
import jax
from jax._src import distributed  # The coordination service's client (as Orbax uses it).
import ml_collections


_ORBAX_BARRIER_FLAG = 'experimental_orbax_use_distributed_barrier'
_JAX_TIMEOUT_MARGIN_S = 10  # JAX's own join timeout comes after the watchdog's.
_BEAT_S = 1.0  # How often each process marks itself alive.
_ALIVE_KEY = 'mirrorgan/alive/'
_DONE = 'done'  # The value of a process that finished normally.
_RESTART = ('Restart every process with the same command: each phase resumes from its '
            'newest checkpoint.')


class JobError(RuntimeError):
  """The multi-process job cannot run as started; the message says why."""


def join(coordinator_address: str | None, num_processes: int | None,
         process_id: int | None, timeout_s: int, heartbeat_s: int) -> None:
  """`jax.distributed.initialize` (unset values are detected on TPU, SLURM, MPI).

  JAX's client aborts the process from C++ when it cannot join in time (no Python
  exception), so a watchdog ends it first: after `timeout_s` without joining, it
  prints one `error: ...` line naming the address, this process and the count, and
  exits with code 1.
  """
  where = coordinator_address or 'the detected coordinator'
  message = (f'error: could not join the JAX job at {where} as process {process_id} of '
             f'{num_processes} within {timeout_s} s: is process 0 running there, and was '
             'every process started with the same --num_processes?')
  joined = threading.Event()

  def watchdog():
    if not joined.wait(timeout_s):
      print(message, file=sys.stderr, flush=True)
      os._exit(1)  # pylint: disable=protected-access  # The main thread is stuck in C++.

  threading.Thread(target=watchdog, name='join-watchdog', daemon=True).start()
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=timeout_s + _JAX_TIMEOUT_MARGIN_S,
                               heartbeat_timeout_seconds=heartbeat_s)
  except Exception as e:  # pylint: disable=broad-except  # XLA raises several types.
    raise JobError(f'{message[len("error: "):]} ({type(e).__name__}: '
                   f'{str(e).splitlines()[0] if str(e) else ""})') from e
  finally:
    joined.set()
  # JAX's persistent compilation cache is off in multi-process jobs: with it, the
  # processes of a 2 x 2 CPU job ran programs whose collectives did not match (gloo
  # aborted: "collective mismatch"), whether the cache held programs of a 1 x 4 run
  # or only of 2 x 2 runs; without it, every run matched. Each process compiles.
  jax.config.update('jax_enable_compilation_cache', False)
  # Orbax's default barrier is a device collective issued from its async-save
  # thread; racing the training step's collectives, it aborted gloo ("collective
  # mismatch"). The coordination service's barrier has no such race (and times out).
  if _ORBAX_BARRIER_FLAG in flags.FLAGS:  # Defined once orbax is imported (by main).
    flags.FLAGS[_ORBAX_BARRIER_FLAG].value = True
  _PeerWatch(stale_s=heartbeat_s / 2).start()


@contextlib.contextmanager
def collective_failures_end_the_process():
  """In a multi-process job, a failed computation ends this process at once, in one line.

  When another process dies, gloo (or NCCL) can fail this process's collective with
  an error instead of waiting. Left to Python, the error would be followed by JAX's
  exit-time barrier, which waits for the dead process until the heartbeat timeout
  and then aborts with stack dumps.
  """
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    if jax.process_count() == 1:
      raise
    _fail(f'process {jax.process_index()} of {jax.process_count()}: a computation failed '
          f'({str(e).splitlines()[0]}). If another process stopped: {_RESTART}')


def _fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr, flush=True)
  os._exit(1)  # pylint: disable=protected-access  # The main thread may be in a collective.


class _PeerWatch(threading.Thread):
  """Ends this process with one error line when another process stops.

  JAX's coordination service notices a process that died only after the heartbeat
  timeout, and then aborts the others from C++ amid stack dumps; a collective
  waiting for the dead process waits until then. Here every process counts up a
  key in the coordination service's key-value store each `_BEAT_S`; a peer whose
  count stands still for `stale_s` (dead, or hung) ends this process first, with
  a message that says how to resume. A process that exits normally marks itself
  done, so the others may finish later without alarm. A lost coordinator (process 0
  died) ends it at once (JAX's own abort may come first).
  """

  def __init__(self, stale_s: float):
    super().__init__(name='peer-watch', daemon=True)
    self.stale_s = stale_s
    self.stopping = threading.Event()
    self.lock = threading.Lock()  # A beat is never written after `_DONE`.
    self.key = f'{_ALIVE_KEY}{jax.process_index()}'
    # Before JAX's own exit handler (atexit runs in reverse), while the store is up.
    atexit.register(self.finish)

  def finish(self) -> None:
    """Marks this process as finished (the others stop watching it) and stops."""
    with self.lock:
      self.stopping.set()
      try:
        distributed.global_state.client.key_value_set(self.key, _DONE, allow_overwrite=True)
      except Exception:  # pylint: disable=broad-except  # The job is ending anyway.
        pass

  def run(self) -> None:
    client = distributed.global_state.client
    me, count = jax.process_index(), jax.process_count()
    last = {peer: (None, time.monotonic()) for peer in range(count) if peer != me}
    beat = 0
    while not self.stopping.wait(_BEAT_S):
      beat += 1
      with self.lock:
        if self.stopping.is_set():
          return
        try:
          client.key_value_set(self.key, str(beat), allow_overwrite=True)
          beats = {key.rsplit('/', 1)[-1]: value  # Keys come back with or without the path.
                   for key, value in client.key_value_dir_get(_ALIVE_KEY)}
        except Exception as e:  # pylint: disable=broad-except  # XLA raises several types.
          _fail(f'process {me} of {count} lost the job\'s coordinator (process 0: it '
                f'stopped; {type(e).__name__}). {_RESTART}')
      now = time.monotonic()
      for peer, (value, since) in last.items():
        value_now = beats.get(str(peer))
        if value_now != value:
          last[peer] = (value_now, now)
        elif value_now != _DONE and now - since > self.stale_s:
          _fail(f'process {peer} of {count} stopped responding {now - since:.0f} s ago '
                f'(it died or hangs); process {me} stops too. {_RESTART}')


def config_hash(config: ml_collections.ConfigDict) -> int:
  """A 31-bit hash of the config's JSON (equal configs, equal hashes)."""
  return zlib.crc32(config.to_json_best_effort(sort_keys=True).encode()) & 0x7FFFFFFF


def check_same_config(config: ml_collections.ConfigDict, timeout_s: int = 60) -> None:
  """Raises JobError unless every process of the job has the same config.

  The hashes go through the coordination service's key-value store, not a device
  collective (a collective here shifted the later collectives of the processes out
  of step).
  """
  if jax.process_count() == 1:
    return
  client = distributed.global_state.client
  client.key_value_set(f'mirrorgan/config_hash/{jax.process_index()}', str(config_hash(config)))
  hashes = [int(client.blocking_key_value_get(f'mirrorgan/config_hash/{i}', timeout_s * 1000))
            for i in range(jax.process_count())]
  if len(set(hashes)) > 1:
    raise JobError(
        f'the {jax.process_count()} processes were started with different configs '
        f'(hashes by process: {hashes}); start every process with the same --config '
        'and --config.* overrides')
