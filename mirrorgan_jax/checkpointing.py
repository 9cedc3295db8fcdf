"""Orbax checkpoints: the training state (keep-N, async, resume) and artifacts.

Two kinds of checkpoint:
* `Checkpointer`: the training state of one phase under `<workdir>/<phase>/`,
  saved every N steps and at the end, restored onto the current shardings from
  the newest checkpoint that loads. A newest checkpoint that fails to load
  (corrupt files) is reported and the previous one is used; checkpoints cut off
  mid-write are never finalised by Orbax and so never seen.
* Artifacts: frozen networks (DAMSM encoders, STREAM captioner) saved with the
  vocabulary they were trained with, in one directory, so weights and
  vocabulary cannot be separated.
"""

import json
import os
import signal
import threading
from typing import Any

from absl import logging
from etils import epath
import jax
import orbax.checkpoint as ocp

from mirrorgan_jax import console
from mirrorgan_jax import vocab as vocab_lib


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
        arrays shaped like the state, e.g. from `jax.eval_shape`.
    Returns:
      (state, meta, step), or None when the directory has no checkpoint.
    """
    self.manager.reload()
    steps = sorted(self.manager.all_steps(), reverse=True)
    for step in steps:
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
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


class PreemptionFlag:
  """Turns SIGTERM (preemption) into a flag the training loop polls.

  The loop saves a checkpoint and exits cleanly when `requested` is set.
  """

  def __init__(self):
    self.requested = False
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    else:
      self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint before exiting.')
    self.requested = True

  def restore_handler(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


_VOCAB_FILE = 'vocab.json'
_META_FILE = 'meta.json'


def save_artifact(directory: os.PathLike | str, variables: Any,
                  vocab: vocab_lib.Vocabulary | None, meta: dict) -> None:
  """Writes frozen-network variables, their vocabulary and metadata together.

  Args:
    directory: the artifact directory (created).
    variables: pytree of arrays.
    vocab: the vocabulary the network was trained with, or None for networks
      that read no text (e.g. the oracle classifier): then no vocab.json.
    meta: JSON-able metadata.
  """
  directory = resolve(directory)
  directory.mkdir(parents=True, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(directory / 'variables', jax.device_get(variables), force=True)
  checkpointer.wait_until_finished()
  if jax.process_index() == 0:
    if vocab is not None:
      vocab.save(directory / _VOCAB_FILE)
    (directory / _META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))


def _required_files(require_vocab: bool) -> tuple[str, ...]:
  return ('variables', _VOCAB_FILE, _META_FILE) if require_vocab else (
      'variables', _META_FILE)


def artifact_exists(directory: os.PathLike | str, *, require_vocab: bool = True) -> bool:
  """Whether `directory` holds a complete artifact (vocab.json only if required)."""
  directory = resolve(directory)
  return all((directory / name).exists() for name in _required_files(require_vocab))


def load_artifact(directory: os.PathLike | str, *, require_vocab: bool = True
                  ) -> tuple[Any, vocab_lib.Vocabulary | None, dict]:
  """Reads an artifact written by `save_artifact`.

  Args:
    directory: the artifact directory.
    require_vocab: a missing vocab.json is an error; with False it is optional
      (artifacts of networks without text input have none).
  Returns:
    (variables as numpy arrays, vocabulary or None when there is no vocab.json,
    metadata dict).
  Raises:
    FileNotFoundError: a part is missing (names which one).
    ValueError: the variables cannot be read (corrupt checkpoint).
  """
  directory = resolve(directory)
  for name in _required_files(require_vocab):
    if not (directory / name).exists():
      needed = ', '.join(n + ('/' if n == 'variables' else '')
                         for n in _required_files(require_vocab))
      raise FileNotFoundError(
          f'{directory / name} is missing: {directory} is not a complete '
          f'artifact (it needs {needed}).')
  try:
    variables = ocp.StandardCheckpointer().restore(directory / 'variables')
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'cannot read the weights in {directory / "variables"}: '
                     f'{type(e).__name__}: {e}') from e
  meta = json.loads((directory / _META_FILE).read_text())
  vocab_path = directory / _VOCAB_FILE
  vocab = vocab_lib.Vocabulary.load(vocab_path) if vocab_path.exists() else None
  return variables, vocab, meta
