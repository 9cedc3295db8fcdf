"""Joining a multi-process JAX job, with bounded waits and one clear error per failure.

`join` wraps `jax.distributed.initialize`: a coordinator that cannot be reached, or
a job whose processes never all arrive (a wrong process count), ends after
`timeout_s` with one error line that names the address, this process and the
count, and exit code 1, instead of a long hang or a C++ abort. A process that dies later is noticed
by the others within `heartbeat_s`. Orbax is switched to the coordination
service's barriers, and JAX's persistent compilation cache is turned off (see
`join`). `check_same_config` then compares the configs
of all processes (a hash, gathered from each), so processes started with different
overrides stop before training rather than diverging or hanging in a collective.
"""

import os
import sys
import threading
import zlib

from absl import flags
import jax
from jax._src import distributed  # The coordination service's client (as Orbax uses it).
import ml_collections


_ORBAX_BARRIER_FLAG = 'experimental_orbax_use_distributed_barrier'
_JAX_TIMEOUT_MARGIN_S = 10  # JAX's own join timeout comes after the watchdog's.


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
