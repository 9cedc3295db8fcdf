"""The loop shared by every training phase, and the pretraining-phase runner.

A phase supplies its state, its compiled step and a batch source; this loop adds
what every phase needs: resume from the newest good checkpoint, periodic and
final saves, SIGTERM (preemption) saves, a NaN/Inf guard that stops before a bad
state is saved, clu summaries (process 0 only), progress with steps/s and ETA,
and `jax.profiler` traces of chosen steps. `pretrain` runs a pretraining phase
(DAMSM, STREAM, oracle: a `Pretraining`) through it: parameter overview at the
start, evaluation hook every few epochs, then the phase's artifact.
"""

import dataclasses
import math
import time
from typing import Any, Callable, Iterator, Protocol

from absl import logging
from clu import metric_writers
from clu import parameter_overview
from clu import periodic_actions
from etils import epath
import jax
import numpy as np
import optax

from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import checkpointing
from mirrorgan_jax.infra import console

State = Any
Batch = Any
Metrics = dict[str, Any]


class NonFiniteLossError(FloatingPointError):
  """A loss became NaN or Inf; training stopped, the last good checkpoint kept."""


@dataclasses.dataclass
class Phase:
  """What a training phase plugs into `run`.

  Attributes:
    name: 'damsm', 'stream' or 'gan'; also the workdir sub-directory.
    num_steps: total train steps of the phase.
    init_state: builds a fresh state on the devices (also the restore template).
    train_step: (state, batch) -> (state, metrics of device scalars).
    batches: start_step -> iterator of batches ready for `train_step`.
    evaluate: optional (state, step, writer) -> None, run every `eval_every`
      steps and at the end; writes its own summaries.
    eval_every: steps between evaluations (0 = only at the end).
    log_every: steps between scalar summaries.
    checkpoint_every: steps between saves (always saved at the end).
    keep_checkpoints: checkpoints kept.
    profile_steps: steps traced with jax.profiler (first..last, inclusive).
    on_start: optional (state, writer) -> None, e.g. a parameter overview.
    to_checkpoint: state -> the pytree saved (pmap: one copy, see `parallel`).
    from_checkpoint: restored pytree -> state in `train_step`'s layout.
  """
  name: str
  num_steps: int
  init_state: Callable[[], State]
  train_step: Callable[[State, Batch], tuple[State, Metrics]]
  batches: Callable[[int], Iterator[Batch]]
  evaluate: Callable[[State, int, Any], None] | None = None
  eval_every: int = 0
  log_every: int = 100
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  profile_steps: tuple[int, ...] = ()
  on_start: Callable[[State, Any], None] | None = None
  to_checkpoint: Callable[[State], Any] = lambda state: state
  from_checkpoint: Callable[[Any], State] = lambda state: state


def host_metrics(metrics: Metrics) -> dict[str, float]:
  """Device scalars (or one-element arrays: pmap) -> Python floats."""
  return {k: float(np.asarray(v).reshape(())) for k, v in jax.device_get(metrics).items()}


def check_finite(metrics: dict[str, float], step: int, phase: str) -> None:
  """Raises `NonFiniteLossError` naming every NaN/Inf metric."""
  bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
  if bad:
    raise NonFiniteLossError(
        f'{phase}: non-finite value of {", ".join(bad)} at step {step} '
        f'({ {k: metrics[k] for k in bad} }). Training stopped; the last good '
        'checkpoint is kept. Lower the learning rate or check the inputs.')


class _MetricsWindow:
  """Step metrics, fetched and checked for NaN/Inf one step late, and their means.

  A step's metrics are fetched when the next step has been dispatched, so the host
  reads the next batch and queues the next step while the devices still run this
  one (fetching at once would wait for every step before reading the next batch).
  """

  def __init__(self, phase: str):
    self.phase = phase
    self.pending = None  # (step, device metrics) of the newest step.
    self.window: list[dict[str, float]] = []

  def add(self, step: int, metrics: Metrics) -> None:
    """Settles the previous step's metrics and holds this step's."""
    self.settle()
    self.pending = (step, metrics)

  def settle(self) -> None:
    """Fetches the held metrics; raises `NonFiniteLossError` on a NaN/Inf."""
    if self.pending is not None:
      step, metrics = self.pending
      self.pending = None
      values = host_metrics(metrics)
      check_finite(values, step, self.phase)
      self.window.append(values)

  def pop_means(self) -> dict[str, float]:
    """The means of every step's metrics since the last call."""
    self.settle()
    means = {k: float(np.mean([m[k] for m in self.window])) for k in self.window[0]}
    self.window = []
    return means


def create_writer(logdir: epath.Path) -> metric_writers.MetricWriter:
  """TensorBoard + console writer; only process 0 writes files."""
  return metric_writers.create_default_writer(
      logdir, just_logging=jax.process_index() > 0, asynchronous=True)


class _Profiler:
  """Traces the steps `first..last` of `steps` into `logdir` (process 0)."""

  def __init__(self, steps: tuple[int, ...], logdir: epath.Path):
    self.first = min(steps) if steps else None
    self.last = max(steps) if steps else None
    self.logdir = logdir
    self.active = False

  def before(self, step: int) -> None:
    if step == self.first and jax.process_index() == 0:
      jax.profiler.start_trace(str(self.logdir))
      self.active = True

  def after(self, step: int, state: State) -> None:
    if self.active and step >= self.last:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active = False
      console.say(f'Profile of steps {self.first}-{self.last} written under {self.logdir}.')


def run(phase: Phase, workdir: epath.Path | str) -> State:
  """Trains `phase` to `phase.num_steps`, resuming from its checkpoints.

  Returns:
    The final state (also saved as the last checkpoint).
  Raises:
    NonFiniteLossError: a metric became NaN/Inf (nothing bad was saved).
  """
  logdir = epath.Path(workdir) / phase.name
  ckpt = checkpointing.Checkpointer(logdir / 'checkpoints', max_to_keep=phase.keep_checkpoints)
  state = phase.init_state()
  restored = ckpt.restore(phase.to_checkpoint(state))
  start = 0
  if restored is not None:
    saved, _, start = restored
    state = phase.from_checkpoint(saved)
  console.say(f'{phase.name}: {"resuming" if start else "starting"} at step {start} of '
              f'{phase.num_steps}.')
  writer = create_writer(logdir)
  if phase.on_start is not None and start == 0:
    phase.on_start(state, writer)
  if start >= phase.num_steps:
    ckpt.close()
    writer.close()
    return state

  progress = periodic_actions.ReportProgress(
      num_train_steps=phase.num_steps, writer=writer, every_steps=phase.log_every,
      every_secs=None)
  profiler = _Profiler(tuple(phase.profile_steps), logdir / 'profile')
  preemption = checkpointing.PreemptionFlag()
  batches = phase.batches(start)
  metrics_window = _MetricsWindow(phase.name)
  t0 = last_line = time.time()
  last_line_step = start
  try:
    for step in range(start + 1, phase.num_steps + 1):
      profiler.before(step)
      with jax.profiler.StepTraceAnnotation(phase.name, step_num=step):
        state, metrics = phase.train_step(state, next(batches))
      metrics_window.add(step, metrics)
      profiler.after(step, state)
      progress(step)
      last = step == phase.num_steps
      stop = preemption.stop_after(step)
      if step % phase.log_every == 0 or last or stop:
        means = metrics_window.pop_means()
        writer.write_scalars(step, {f'train/{k}': v for k, v in means.items()})
        now = time.time()
        console.say(console.progress_line(
            phase.name, step, phase.num_steps,
            (step - last_line_step) / max(now - last_line, 1e-9), means))
        last_line, last_line_step = now, step
      if step % phase.checkpoint_every == 0 or last or stop:
        metrics_window.settle()  # Never save a state whose step gave NaN.
        with progress.timed('checkpoint'):
          ckpt.save(step, phase.to_checkpoint(state), {'phase': phase.name, 'step': step})
      if phase.evaluate is not None and (
          last or (phase.eval_every and step % phase.eval_every == 0)):
        with progress.timed('eval'):
          phase.evaluate(state, step, writer)
      if stop:
        ckpt.wait()
        logging.warning('%s: stopped by SIGTERM at step %d after saving.', phase.name, step)
        raise SystemExit(143)
  finally:
    preemption.restore_handler()
    ckpt.close()
    writer.flush()
    writer.close()
  console.say(f'{phase.name}: {phase.num_steps - start} steps in '
              f'{time.time() - t0:.1f} s.')
  return state


class EvalHook(Protocol):
  """A pretraining phase's evaluation, run by the loop as `Phase.evaluate`."""
  last: Any  # Scalars of the latest evaluation, or None.

  def compute(self, state: State) -> tuple[Any, Any]:
    """(scalars as `last` holds them, extras for summaries) of `state`."""

  def __call__(self, state: State, step: int, writer: Any) -> None:
    """Evaluates, sets `last` and writes summaries."""


@dataclasses.dataclass
class Pretraining:
  """What a pretraining phase (DAMSM, STREAM, oracle) plugs into `pretrain`.

  Attributes:
    kind: the artifact it writes (its `phase` names the workdir sub-directory).
    num_steps, init_state, train_step, batches: as in `Phase`.
    steps_per_epoch: train steps per epoch.
    eval_every_epochs: epochs between evaluations (the last step is always one).
    hook: the evaluation.
    parameters: state -> {name: params}, for the parameter overview at start.
    artifact_variables: state -> {key: variables} of the artifact (`kind.keys`).
    meta: final evaluation -> the artifact's phase-specific metadata.
    vocab: saved with the artifact (None: networks without text).
  """
  kind: artifacts.Kind
  num_steps: int
  steps_per_epoch: int
  eval_every_epochs: int
  init_state: Callable[[], State]
  train_step: Callable[[State, Batch], tuple[State, Metrics]]
  batches: Callable[[int], Iterator[Batch]]
  hook: EvalHook
  parameters: Callable[[State], dict[str, Any]]
  artifact_variables: Callable[[State], dict[str, Any]]
  meta: Callable[[Any], dict[str, Any]]
  vocab: Any = None


def apply_gradients(state: State, tx: optax.GradientTransformation, grads: Any,
                    **changes: Any) -> State:
  """`state` after one `tx` update of `state.params` by `grads`: step + 1, `changes`.

  For the pretraining states (fields step, params, opt_state).
  """
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state, **changes)


def report_eval(name: str, step: int, scalars: dict[str, float], writer) -> None:
  """One console line and the `eval/<key>` summaries of an evaluation's scalars."""
  console.say(f'{name} eval at step {step}: '
              + ', '.join(f'{k} {v:.4f}' for k, v in scalars.items()))
  writer.write_scalars(step, {f'eval/{k}': v for k, v in scalars.items()})


def log_parameters(name: str, params: dict[str, Any], writer) -> None:
  """Logs and writes (as text summary 'parameters') the overview of {key: params}."""
  overview = '\n\n'.join(
      f'{key}\n' + parameter_overview.get_parameter_overview(
          jax.device_get(p), include_stats=False) for key, p in params.items())
  logging.info('%s parameters:\n%s', name, overview)
  writer.write_texts(0, {'parameters': f'```\n{overview}\n```'})


def pretrain(config, workdir: epath.Path | str,
             p: Pretraining) -> tuple[epath.Path, Any]:
  """Runs a pretraining phase, evaluated every few epochs, and writes its artifact.

  Args:
    config: experiment config (`train` cadences of logs and checkpoints; the
      architecture sections `p.kind` records).
    workdir: run directory.
    p: the phase.
  Returns:
    (the artifact directory, the final evaluation).
  """
  phase = Phase(
      name=p.kind.phase, num_steps=p.num_steps, init_state=p.init_state,
      train_step=p.train_step, batches=p.batches, evaluate=p.hook,
      eval_every=p.eval_every_epochs * p.steps_per_epoch,
      log_every=config.train.log_every_steps,
      checkpoint_every=config.train.checkpoint_every_steps,
      keep_checkpoints=config.train.keep_checkpoints,
      on_start=lambda state, writer: log_parameters(p.kind.name, p.parameters(state),
                                                    writer))
  state = run(phase, workdir)
  final = p.hook.last
  if final is None:  # Resumed after the last step: the loop evaluated nothing.
    final, _ = p.hook.compute(state)
  meta = {'phase': p.kind.phase, **artifacts.meta_sections(config, p.kind),
          'steps': p.num_steps, **p.meta(final)}
  path = artifacts.directory(workdir, p.kind)
  artifacts.save(path, p.artifact_variables(state), p.vocab, meta)
  return path, final
