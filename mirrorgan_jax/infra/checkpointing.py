"""Orbax checkpoints of the training state (keep-N, async, resume, SIGTERM).

`Checkpointer` keeps the training state of one phase under `<workdir>/<phase>/`,
saved every N steps and at the end, restored onto the current shardings from
the newest checkpoint that loads. A newest checkpoint that fails to load
(corrupt files) is reported and the previous one is used; checkpoints cut off
mid-write are never finalised by Orbax and so never seen. The frozen networks
the phases leave behind are artifacts (`artifacts.py`).
"""

import itertools
import os
import signal
import threading
from typing import Any

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from mirrorgan_jax.infra import console


def resolve(path: os.PathLike | str) -> epath.Path:
  """Local paths made absolute (Orbax refuses relative ones); URLs (gs://) as given."""
  text = os.fspath(path)
  return epath.Path(text if '://' in text else os.path.abspath(text))


class Checkpointer:
  """Saves and restores a training state pytree with Orbax."""

  def __init__(self, directory: os.PathLike | str, *, max_to_keep: int = 3,
               asynchronous: bool = True):
    self.directory = resolve(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            enable_async_checkpointing=asynchronous),
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'meta': ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, meta: dict | None = None) -> None:
    """Saves `state` (and JSON-able `meta`) as step `step` (async)."""
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        meta=ocp.args.JsonSave(meta or {})), force=True)

  def state_metadata(self, step: int) -> Any:
    """The saved state's tree of array metadata (`.shape`, `.dtype`) at `step`."""
    return self.manager.item_metadata(step)['state'].tree

  def restore(self, abstract_state: Any) -> tuple[Any, dict, int] | None:
    """Restores the newest loadable checkpoint.

    Args:
      abstract_state: a pytree of `jax.ShapeDtypeStruct` (with shardings) or
        arrays shaped like the state, e.g. from `jax.eval_shape`; or a function
        step -> that pytree (e.g. from `state_metadata`; an unreadable one
        counts as a corrupt checkpoint).
    Returns:
      (state, meta, step), or None when the directory has no checkpoint.
    """
    self.manager.reload()
    steps = sorted(self.manager.all_steps(), reverse=True)
    for step in steps:
      try:
        abstract = abstract_state(step) if callable(abstract_state) else abstract_state
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            meta=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except  # any corruption
        logging.info('Checkpoint %s/%d cannot be restored: %s: %s', self.directory, step,
                     type(e).__name__, e)
        console.say(f'Checkpoint {self.directory}/{step} is unreadable '
                    f'({type(e).__name__}); trying the previous one.')
        continue
      console.say(f'Restored {self.directory} at step {step}.')
      return restored['state'], dict(restored['meta'] or {}), step
    if steps:
      raise RuntimeError(
          f'None of the checkpoints {steps} in {self.directory} could be restored '
          '(--verbosity=0 shows why). Move the directory away to start from scratch.')
    return None

  def wait(self) -> None:
    """Blocks until pending async saves are written."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _is_array_metadata(x: Any) -> bool:
  return hasattr(x, 'shape') and hasattr(x, 'dtype')


def restore_as_saved(directory: os.PathLike | str) -> tuple[Any, int] | None:
  """The newest restorable state of `directory` as saved, on this process's first device.

  Reads the checkpoint by its own metadata: no training code or abstract state is
  needed (sampling, comparisons of runs).
  Returns:
    (state pytree of arrays, step), or None when there is no checkpoint.
  Raises:
    RuntimeError: no checkpoint could be restored (corrupt; names the path).
  """
  ckpt = Checkpointer(directory, asynchronous=False)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  as_saved = lambda step: jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(tuple(x.shape), x.dtype, sharding=device),
      ckpt.state_metadata(step), is_leaf=_is_array_metadata)
  try:
    restored = ckpt.restore(as_saved)
  finally:
    ckpt.close()
  return None if restored is None else (restored[0], restored[2])


_STEPS_RUN = itertools.count(1)  # Training steps this process ran, over all phases.


class PreemptionFlag:
  """Turns SIGTERM (preemption) into a stop the training loop asks for at every step.

  One process: a Python SIGTERM handler sets `requested`. Several processes: JAX's
  preemption service (its own SIGTERM notifier, started by `jax.distributed`) tells
  every process and names one step at which all of them stop, so all save the same
  step; a flag each process read alone would stop them at different steps, and
  their collective save would wait forever. JAX's sync point is counted in this
  process's training steps since it started (`_STEPS_RUN`), equal in every process:
  with the phase's own step, a notice that came before the first step of a resumed
  run would never be met (the service then sets the stop at count 1).
  """

  def __init__(self):
    self.requested = False
    self._previous = None
    self._multiprocess = jax.process_count() > 1
    if not self._multiprocess and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint before exiting.')
    self.requested = True

  def stop_after(self, step: int) -> bool:
    """Whether to save and exit after `step` (every process calls it at every step)."""
    count = next(_STEPS_RUN)
    if self._multiprocess and multihost_utils.reached_preemption_sync_point(count):
      logging.warning('Preemption: every process saves at step %d and exits.', step)
      self.requested = True
    return self.requested

  def restore_handler(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
