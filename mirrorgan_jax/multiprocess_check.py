r"""Runs a config as several JAX processes on this machine and checks it equals one process.

  python -m mirrorgan_jax.multiprocess_check [--config configs/shapes.py:smoke] \
      [--modes jit,pmap] [--processes 2] [--devices 4] [--root DIR] [--timeout 900]

For each `parallel.mode`: trains every phase and evaluates (`main --mode all`) once
as 1 process holding `--devices` CPU devices, then as `--processes` processes holding
`devices / processes` each, joined by `jax.distributed` on 127.0.0.1 (CPU
collectives over gloo: the code path of a TPU pod or a multi-GPU cluster), and
compares them with `compare_runs` (losses, final parameters, eval results; the
GAN and eval from the same frozen networks, see `check`). Exits 1 if a run fails
or the runs differ. `launch/local_multiprocess.sh`
runs it with these defaults.

`spawn` is the launcher: it starts the processes of one run, and when one of them
fails it stops the others at once (each process would also stop on its own, within
half the heartbeat timeout: `infra/multihost.py`), so a broken job ends in bounded time.
"""

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from typing import Sequence

from mirrorgan_jax import compare_runs
from mirrorgan_jax.infra import ports

_PEER_GRACE_S = 30  # After one process fails, the others get this long to stop.


@dataclasses.dataclass(frozen=True)
class Outcome:
  """How the processes of one run ended."""
  returncodes: list[int]
  logs: list[str]  # Paths of each process's combined stdout / stderr.
  seconds: float

  @property
  def ok(self) -> bool:
    return all(code == 0 for code in self.returncodes)


def spawn(args: Sequence[str], workdir: str, processes: int, devices_per_process: int,
          timeout: float, extra_env: dict[str, str] | None = None) -> Outcome:
  """Runs `python -m mirrorgan_jax.main --workdir workdir *args` as `processes` processes.

  Args:
    args: flags of `mirrorgan_jax.main` (config, mode, overrides).
    workdir: the run directory (shared by the processes); logs go beside it.
    processes: number of JAX processes (1: no `jax.distributed`).
    devices_per_process: CPU devices each process holds.
    timeout: seconds before every process still running is killed.
    extra_env: more environment variables for every process.
  Returns:
    The `Outcome`; a process killed on timeout or after a peer failed has a
    negative return code.
  """
  port = ports.free_port()
  env = {**os.environ, **(extra_env or {}), 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': (os.environ.get('XLA_FLAGS', '') +
                       f' --xla_force_host_platform_device_count={devices_per_process}')}
  procs, logs = [], []
  start = time.monotonic()
  for index in range(processes):
    command = [sys.executable, '-m', 'mirrorgan_jax.main', f'--workdir={workdir}', *args]
    if processes > 1:
      command += ['--distributed', f'--coordinator_address=127.0.0.1:{port}',
                  f'--num_processes={processes}', f'--process_id={index}']
    logs.append(f'{workdir}.process{index}.log')
    with open(logs[-1], 'w') as log:
      procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
  deadline = start + timeout
  while any(p.poll() is None for p in procs):
    failed = any(p.returncode not in (None, 0) for p in procs)
    if failed:
      deadline = min(deadline, time.monotonic() + _PEER_GRACE_S)
    if time.monotonic() > deadline:
      for p in procs:
        if p.poll() is None:
          p.kill()
    time.sleep(0.2)
  return Outcome([p.wait() for p in procs], logs, time.monotonic() - start)


def _tail(path: str, lines: int = 15) -> str:
  with open(path) as f:
    return ''.join(f.readlines()[-lines:])


def frozen_copy(source: str, target: str) -> str:
  """A new workdir with `source`'s config, vocabulary and frozen networks only."""
  os.makedirs(target)
  for name in ('config.json', 'vocab.json'):
    shutil.copy(os.path.join(source, name), os.path.join(target, name))
  for phase in ('damsm', 'stream', 'oracle'):
    if os.path.isdir(os.path.join(source, phase, 'artifact')):
      shutil.copytree(os.path.join(source, phase, 'artifact'),
                      os.path.join(target, phase, 'artifact'))
  return target


def _run(args: Sequence[str], workdir: str, processes: int, devices: int,
         timeout: float) -> bool:
  outcome = spawn(args, workdir, processes, devices // processes, timeout)
  print(f'  {processes} process(es) x {devices // processes} devices: '
        f'{"ok" if outcome.ok else f"FAILED {outcome.returncodes}"} in '
        f'{outcome.seconds:.0f} s ({workdir})', flush=True)
  if not outcome.ok:
    for log in outcome.logs:
      print(f'--- end of {log}:\n{_tail(log)}')
  return outcome.ok


def check(config: str, modes: Sequence[str], processes: int, devices: int, root: str,
          timeout: float) -> bool:
  """Runs and compares (see the module docstring); prints the report; True if equal.

  Per mode: run A, 1 process, every phase and eval; run B, n processes, every
  phase; run C, n processes, the GAN phase and eval from A's frozen networks. B's
  pretraining phases and C's GAN and eval are compared with A's. (B's own GAN is
  not: it starts from B's frozen networks, whose float32 differences from A's, ~1e-4
  relative, a GAN amplifies to ~1e-2 in 12 steps.)
  """
  if devices % processes:
    raise ValueError(f'{devices} devices cannot be split over {processes} processes')
  os.makedirs(root, exist_ok=True)
  data_dir = os.path.join(root, 'tfds')
  args = [f'--config={config}', f'--config.data.data_dir={data_dir}']
  same = True
  for mode in modes:
    print(f'{mode}:', flush=True)
    margs = [*args, f'--config.parallel.mode={mode}']
    a, b = (os.path.join(root, f'{mode}_{name}') for name in ('one', 'many'))
    # A first: it also builds the dataset the others read.
    if not (_run(margs, a, 1, devices, timeout) and _run(margs, b, processes, devices, timeout)
            and _run(margs, frozen_copy(a, b + '_gan'), processes, devices, timeout)):
      return False
    reports = [compare_runs.compare(a, b, phases=('damsm', 'stream', 'oracle')),
               compare_runs.compare(a, b + '_gan', phases=('gan', 'eval'))]
    for report in reports:
      print('\n'.join('  ' + line for line in report.lines))
    failed = any(r.failed for r in reports)
    print(f'{mode}: {processes} processes {"DIFFER from" if failed else "equal"} '
          '1 process.', flush=True)
    same &= not failed
  return same


def main(argv: Sequence[str]) -> int:
  """Runs the CLI; returns 0 when every mode's runs are equal."""
  parser = argparse.ArgumentParser(prog='python -m mirrorgan_jax.multiprocess_check')
  parser.add_argument('--config', default='configs/shapes.py:smoke')
  parser.add_argument('--modes', default='jit,pmap', help='parallel.mode values, e.g. jit,pmap')
  parser.add_argument('--processes', type=int, default=2)
  parser.add_argument('--devices', type=int, default=4)
  parser.add_argument('--root', default='/tmp/mirrorgan_multiprocess_check')
  parser.add_argument('--timeout', type=float, default=600,
                      help='seconds per run before its processes are killed')
  args = parser.parse_args(list(argv[1:]))
  try:
    ok = check(args.config, args.modes.split(','), args.processes, args.devices,
               args.root, args.timeout)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0 if ok else 1


if __name__ == '__main__':
  sys.exit(main(sys.argv))
