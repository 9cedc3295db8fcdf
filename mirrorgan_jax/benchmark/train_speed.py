"""Speed and memory of the project's own steps on synthetic batches.

Every measurement runs the code training and sampling run: the GAN step of
`gan_step.make_train_step` (random frozen text encoder and captioner of the
config's shapes), the DAMSM and STREAM steps of `phases/damsm.py` /
`phases/stream.py` (fresh encoders, the phases' optimisers) and
`sampling.generate` with the EMA generator. Batches are synthetic numpy dicts
with every key and dtype `input_pipeline.create_datasets` yields (images
uniform in [-1, 1], random token ids with random lengths), so neither a dataset
nor a pretrained artifact is needed; the host -> device transfer of each batch
is part of a step, the tf.data pipeline is not (`benchmark.input_pipeline`
times it).

Timing: the first call (tracing, lowering, XLA compilation and one execution)
is timed on its own, with the trace/lower and backend-compile durations JAX
reports through `jax.monitoring`; after `warmup` more calls, every one of
`steps` calls is timed to `block_until_ready` and the median is reported.

FLOPs: XLA's cost analysis of the step's lowered (not yet optimised) program,
i.e. the model's FLOPs as written (forward, backward, optimiser), not what a
backend's fusions or rematerialisation add; achieved FLOP/s is that over the
median step time, utilisation that over the devices' peak (`peak_flops`).
"""

import copy
import dataclasses
import functools
import itertools
import resource
import statistics
import sys
import time
from typing import Any, Callable

from absl import logging
import jax
import ml_collections
import numpy as np

from mirrorgan_jax.infra import fast_init
from mirrorgan_jax.phases import gan_step
from mirrorgan_jax.infra import parallel
from mirrorgan_jax import sampling
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.benchmark import peak_flops
from mirrorgan_jax.data import batch_keys
from mirrorgan_jax.models import factory

PHASES = ('gan', 'damsm', 'stream', 'sampling')
DTYPES = ('float32', 'bfloat16')
# Durations JAX reports per compiled function (jax._src.dispatch event names).
_TRACE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
                 '/jax/core/compile/jaxpr_to_mlir_module_duration')
_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'
_NUM_BATCHES = 2  # Distinct synthetic batches cycled through (no reuse of one buffer).
# Period of the DAMSM optimiser's per-epoch Adam restart; longer than any benchmark,
# and the restart is a select inside the step, so its cost does not depend on it.
_DAMSM_STEPS_PER_EPOCH = 1000


@dataclasses.dataclass
class Measurement:
  """One timed program (a row of the report).

  Attributes:
    name: 'gan_step', 'damsm_step', 'stream_step' or 'sampling'.
    dtype: compute dtype, 'float32' or 'bfloat16'.
    batch_size: global images per call.
    first_call_s: wall time of the first call (compile + one execution).
    trace_lower_s: tracing and lowering to StableHLO during the first call.
    compile_s: XLA backend compilation during the first call.
    median_step_s, min_step_s, max_step_s: over the timed calls.
    images_per_s: batch_size / median_step_s.
    steps: timed calls.
    peak_host_mib: the process's peak resident memory so far (ru_maxrss).
    peak_device_mib: the largest `peak_bytes_in_use` of the devices so far,
      or 'n/a' where the backend reports none (CPU).
    gflop_per_image: model GFLOPs of one call (cost analysis) / batch_size.
    gflop_per_s: model GFLOPs of one call / median_step_s.
    utilisation: gflop_per_s over the devices' peak (None where unknown).
  """
  name: str
  dtype: str
  batch_size: int
  first_call_s: float
  trace_lower_s: float
  compile_s: float
  median_step_s: float
  min_step_s: float
  max_step_s: float
  images_per_s: float
  steps: int
  peak_host_mib: float
  peak_device_mib: float | str
  gflop_per_image: float | None = None
  gflop_per_s: float | None = None
  utilisation: float | None = None


def program_flops(lowered: jax.stages.Lowered, copies: int = 1) -> float | None:
  """FLOPs of a lowered program (x `copies`: pmap lowers one device's share)."""
  cost = lowered.cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older JAX: one dict per program.
    cost = cost[0] if cost else None
  flops = (cost or {}).get('flops')
  return None if flops is None or flops <= 0 else float(flops) * copies


# ----------------------------------------------------------------- inputs
def synthetic_batch(config: ml_collections.ConfigDict, batch_size: int, vocab_size: int,
                    seed: int) -> dict[str, np.ndarray]:
  """A host train batch with the keys, shapes and dtypes of the input pipeline.

  Args:
    config: experiment config (stage sizes, `data.words_num`).
    batch_size: examples B.
    vocab_size: token ids are drawn from [1, vocab_size).
    seed: numpy seed.
  Returns:
    {'image_<s>': float32 [B, s, s, 3] in [-1, 1] per stage size s,
     'caption_ids': int32 [B, T] (0 after each length), 'caption_len': int32 [B]
     in [1, T], 'mismatch_ids' / 'mismatch_len' (captions rolled by one),
     'class_id': int32 [B], all distinct}.
  """
  if vocab_size < 2:
    raise ValueError(f'vocab_size must be >= 2 (padding + one word), got {vocab_size}')
  rng = np.random.default_rng(seed)
  words = config.data.words_num
  lengths = rng.integers(1, words + 1, batch_size).astype(np.int32)
  ids = rng.integers(1, vocab_size, (batch_size, words)).astype(np.int32)
  ids = np.where(np.arange(words)[None] < lengths[:, None], ids, 0).astype(np.int32)
  batch = {'caption_ids': ids, 'caption_len': lengths,
           'mismatch_ids': np.roll(ids, 1, axis=0), 'mismatch_len': np.roll(lengths, 1),
           'class_id': np.arange(batch_size, dtype=np.int32)}
  for size in factory.stage_sizes(config):
    batch[batch_keys.image_key(size)] = rng.uniform(
        -1.0, 1.0, (batch_size, size, size, 3)).astype(np.float32)
  return batch


def synthetic_vocabulary(vocab_size: int) -> vocab_lib.Vocabulary:
  """A vocabulary of `vocab_size` entries (padding + placeholder words)."""
  return vocab_lib.Vocabulary([vocab_lib.PAD] + [f'w{i}' for i in range(1, vocab_size)])


def random_frozen(config: ml_collections.ConfigDict, models: factory.Models,
                  rng: jax.Array, vocab_size: int) -> gan_step.Frozen:
  """Randomly initialised text encoder and captioner of the config's shapes."""
  del vocab_size  # The shapes come from `models`.
  text_key, captioner_key = jax.random.split(rng)
  return gan_step.Frozen(
      text_encoder=factory.init_variables(config, models.text_encoder, text_key),
      captioner=factory.init_variables(config, models.captioner, captioner_key))


def benchmark_config(config: ml_collections.ConfigDict,
                     dtype: str) -> ml_collections.ConfigDict:
  """A copy of `config` computing in `dtype`, starting every phase from scratch."""
  if dtype not in DTYPES:
    raise ValueError(f'compute dtype must be one of {DTYPES}, got {dtype!r}')
  config = copy.deepcopy(config)
  config.model.compute_dtype = dtype
  # Random weights of the right shapes: no pretrained artifact is read.
  config.damsm.init_text_encoder = ''
  config.damsm.init_image_encoder = ''
  config.stream.init_checkpoint = ''
  return config


def check_batch_sizes(config: ml_collections.ConfigDict, phases: tuple[str, ...],
                      num_devices: int) -> None:
  """Raises ValueError if a data-parallel phase's batch does not split over devices."""
  fields = {'gan': 'train.batch_size', 'damsm': 'damsm.batch_size',
            'stream': 'stream.batch_size'}
  for phase, field in fields.items():
    if phase not in phases:
      continue
    section, name = field.split('.')
    size = config[section][name]
    if size < 1 or size % num_devices:
      raise ValueError(f'{field} = {size} must be a positive multiple of the '
                       f'{num_devices} device(s); set --config.{field}')


# ----------------------------------------------------------------- timing
class CompileClock:
  """Sums the trace/lower and backend-compile durations JAX reports while active."""

  def __init__(self):
    self.trace_lower_s = 0.0
    self.compile_s = 0.0

  def _listen(self, event: str, duration: float, **kwargs) -> None:
    del kwargs
    if event in _TRACE_EVENTS:
      self.trace_lower_s += duration
    elif event == _COMPILE_EVENT:
      self.compile_s += duration

  def __enter__(self) -> 'CompileClock':
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    return self

  def __exit__(self, *exc) -> None:
    jax.monitoring.unregister_event_duration_listener(self._listen)


def host_peak_mib() -> float:
  """Peak resident memory of this process so far, MiB."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / 2**20 if sys.platform == 'darwin' else peak / 2**10  # bytes vs KiB.


def device_peak_mib() -> float | str:
  """Largest `peak_bytes_in_use` over the local devices, MiB, or 'n/a'."""
  peaks = []
  for device in jax.local_devices():
    stats = device.memory_stats() or {}
    if 'peak_bytes_in_use' in stats:
      peaks.append(stats['peak_bytes_in_use'] / 2**20)
  return max(peaks) if peaks else 'n/a'


def time_calls(call: Callable[[], Any], name: str, dtype: str, batch_size: int,
               steps: int, warmup: int,
               count_flops: Callable[[], float | None] | None = None) -> Measurement:
  """Times `call` (one step or sampling batch; returns what to block on).

  Args:
    call: runs one step and returns its outputs (blocked on before the clock stops).
    name, dtype, batch_size: labels of the measurement.
    steps: timed calls (>= 1) after the first call and `warmup` more.
    warmup: untimed calls after the first.
    count_flops: returns the model FLOPs of one call (`program_flops`); run
      after the timed calls, so that lowering it does not pre-empt the first
      call's tracing.
  Returns:
    The measurement, memory peaks read after the last call.
  """
  if steps < 1 or warmup < 0:
    raise ValueError(f'need steps >= 1 and warmup >= 0, got {steps} and {warmup}')
  logging.info('%s (%s, batch %d): compiling.', name, dtype, batch_size)
  with CompileClock() as clock:
    start = time.perf_counter()
    jax.block_until_ready(call())
    first = time.perf_counter() - start
  logging.info('%s (%s): first call %.2f s (compile %.2f s); %d warm-up + %d timed '
               'calls.', name, dtype, first, clock.compile_s, warmup, steps)
  for _ in range(warmup):
    jax.block_until_ready(call())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  flops = count_flops() if count_flops else None
  logging.info('%s (%s): median %.4f s/step, %.1f images/s.', name, dtype, median,
               batch_size / median)
  return Measurement(
      name=name, dtype=dtype, batch_size=batch_size, first_call_s=first,
      trace_lower_s=clock.trace_lower_s, compile_s=clock.compile_s,
      median_step_s=median, min_step_s=min(times), max_step_s=max(times),
      images_per_s=batch_size / median, steps=steps, peak_host_mib=host_peak_mib(),
      peak_device_mib=device_peak_mib(),
      gflop_per_image=None if flops is None else flops / batch_size / 1e9,
      gflop_per_s=None if flops is None else flops / median / 1e9)


class Stepper:
  """Calls a compiled train step on cycling batches, threading its (donated) state.

  Calling it runs one step and returns (state, metrics) to block on; `lower()`
  lowers the step at the current state, `flops()` is that program's FLOPs
  (all devices' share in pmap mode, which lowers one device's program).
  """

  def __init__(self, train_step: parallel.CompiledStep, state,
               batches: list[dict[str, np.ndarray]]):
    self.train_step, self.batches = train_step, batches
    self.state = train_step.place_state(state)
    self.copies = jax.local_device_count() if train_step.mode == 'pmap' else 1
    self._cycle = itertools.cycle(batches)

  def __call__(self) -> tuple[Any, Any]:
    self.state, metrics = self.train_step(self.state, next(self._cycle))
    return self.state, metrics

  def lower(self) -> jax.stages.Lowered:
    return self.train_step.lower(self.state, self.batches[0])

  def flops(self) -> float | None:
    return program_flops(self.lower(), self.copies)


def gan_stepper(config: ml_collections.ConfigDict, models: factory.Models, frozen, state,
                vocab_size: int, mesh: jax.sharding.Mesh) -> Stepper:
  """The GAN step of `gan_step.make_train_step` on synthetic batches."""
  return Stepper(gan_step.make_train_step(config, models, frozen, mesh), state,
                 _batches(config, config.train.batch_size, vocab_size))


def gan_variables(config: ml_collections.ConfigDict, models: factory.Models,
                  vocab_size: int, frozen_key: jax.Array, state_key: jax.Array):
  """(random frozen networks, fresh GAN state), each built by one fast-compiled init."""
  frozen = fast_init.run(lambda key: random_frozen(config, models, key, vocab_size),
                         frozen_key)
  state = fast_init.run(functools.partial(gan_step.create_state, config, models), state_key)
  return frozen, state


def _batches(config, batch_size, vocab_size):
  return [synthetic_batch(config, batch_size, vocab_size, seed)
          for seed in range(_NUM_BATCHES)]


# ----------------------------------------------------------------- phases
def _measure_gan(config, models, frozen, state, vocab_size, mesh, steps,
                 warmup) -> Measurement:
  stepper = gan_stepper(config, models, frozen, state, vocab_size, mesh)
  return time_calls(stepper, 'gan_step', config.model.compute_dtype,
                    config.train.batch_size, steps, warmup, stepper.flops)


def _measure_damsm(config, models, vocab_size, mesh, rng, steps, warmup) -> Measurement:
  # Imported here, as in _measure_stream: the DAMSM and STREAM phase modules also
  # read datasets, so they import TensorFlow (~530 MiB host memory), which the GAN
  # step and sampling rows must not count.
  from mirrorgan_jax.phases import damsm as damsm_phase  # pylint: disable=g-import-not-at-top
  tx = damsm_phase.create_optimizer(config, _DAMSM_STEPS_PER_EPOCH)
  train_step = damsm_phase.make_train_step(config, models, tx, _DAMSM_STEPS_PER_EPOCH, mesh)
  vocab = synthetic_vocabulary(vocab_size)
  # init_variables compiles its own fast init program (as in training).
  state = damsm_phase.create_state(
      damsm_phase.init_variables(config, models, vocab, rng), tx, rng)
  stepper = Stepper(train_step, state, _batches(config, config.damsm.batch_size, vocab_size))
  return time_calls(stepper, 'damsm_step', config.model.compute_dtype,
                    config.damsm.batch_size, steps, warmup, stepper.flops)


def _measure_stream(config, models, vocab_size, mesh, rng, steps,
                    warmup) -> Measurement:
  from mirrorgan_jax.phases import stream as stream_phase  # pylint: disable=g-import-not-at-top
  tx = stream_phase.create_optimizer(config, steps + warmup)
  train_step = stream_phase.make_train_step(config, models.captioner, tx, mesh)
  vocab = synthetic_vocabulary(vocab_size)
  state = stream_phase.create_state(
      stream_phase.init_variables(config, models.captioner, vocab, rng), tx)
  stepper = Stepper(train_step, state, _batches(config, config.stream.batch_size, vocab_size))
  return time_calls(stepper, 'stream_step', config.model.compute_dtype,
                    config.stream.batch_size, steps, warmup, stepper.flops)


def _measure_sampling(config, models, frozen, ema_generator, batch_size, vocab_size,
                      steps, warmup) -> Measurement:
  """Images/s of `sampling.generate` (EMA G + text encoder) at one batch size."""
  g = config.model.generator
  g_vars, text_vars = jax.device_put((ema_generator, frozen.text_encoder))
  rng = np.random.default_rng(batch_size)
  inputs = [(b['caption_ids'], b['caption_len'],
             rng.standard_normal((batch_size, g.z_dim)).astype(np.float32),
             rng.standard_normal((batch_size, g.condition_dim)).astype(np.float32))
            for b in _batches(config, batch_size, vocab_size)]
  cycle = itertools.cycle(inputs)
  generate = functools.partial(sampling.generate, models.generator, models.text_encoder,
                               g_vars, text_vars)
  flops = lambda: program_flops(sampling.generate.lower(
      models.generator, models.text_encoder, g_vars, text_vars, *inputs[0]))

  def call():
    return generate(*next(cycle))['images']
  return time_calls(call, 'sampling', config.model.compute_dtype, batch_size, steps,
                    warmup, flops)


def measure(config: ml_collections.ConfigDict, dtype: str, phases: tuple[str, ...],
            vocab_size: int, steps: int, warmup: int,
            sample_batch_sizes: tuple[int, ...] = (1, 64)) -> list[Measurement]:
  """Times the chosen phases' steps for one compute dtype.

  Args:
    config: experiment config (batch sizes `train.batch_size`,
      `damsm.batch_size`, `stream.batch_size`; `parallel.mode` for the GAN step).
    dtype: 'float32' or 'bfloat16' (`model.compute_dtype`).
    phases: a subset of PHASES, measured in PHASES order.
    vocab_size: vocabulary size of the text encoder and captioner.
    steps, warmup: see `time_calls`.
    sample_batch_sizes: batches timed for 'sampling' (one device: `generate` is
      a plain jit).
  Returns:
    One Measurement per GAN/DAMSM/STREAM phase and per sampling batch size.
  """
  unknown = set(phases) - set(PHASES)
  if unknown:
    raise ValueError(f'unknown phases {sorted(unknown)}; choose from {PHASES}')
  if not sample_batch_sizes or min(sample_batch_sizes) < 1:
    raise ValueError(f'sampling batch sizes must be >= 1, got {sample_batch_sizes}')
  config = benchmark_config(config, dtype)
  check_batch_sizes(config, phases, jax.device_count())
  pmap = config.parallel.mode == 'pmap'
  models = factory.create_models(config, vocab_size,
                                 bn_axis_name=parallel.PMAP_AXIS if pmap else None)
  mesh = parallel.create_mesh()
  frozen_key, gan_key, damsm_key, stream_key = jax.random.split(
      jax.random.PRNGKey(config.seed), 4)
  out = []
  if 'gan' in phases or 'sampling' in phases:
    start = time.perf_counter()
    frozen, state = gan_variables(config, models, vocab_size, frozen_key, gan_key)
    # Host copies before the GAN step donates the state's buffers.
    ema_generator = jax.device_get({'params': state.ema_g_params,
                                    'batch_stats': state.g_batch_stats})
    logging.info('GAN variables initialised in %.1f s.', time.perf_counter() - start)
    if 'gan' in phases:
      out.append(_measure_gan(config, models, frozen, state, vocab_size, mesh, steps,
                              warmup))
    del state
  if 'damsm' in phases:
    out.append(_measure_damsm(config, models, vocab_size, mesh, damsm_key, steps, warmup))
  if 'stream' in phases:
    out.append(_measure_stream(config, models, vocab_size, mesh, stream_key, steps,
                               warmup))
  if 'sampling' in phases:
    for batch_size in sample_batch_sizes:
      out.append(_measure_sampling(config, models, frozen, ema_generator, batch_size,
                                   vocab_size, steps, warmup))
  peak, _ = peak_flops.peak_flops(jax.default_backend(), jax.devices()[0].device_kind,
                                  dtype, jax.device_count())
  return [m if m.gflop_per_s is None or not peak
          else dataclasses.replace(m, utilisation=m.gflop_per_s * 1e9 / peak) for m in out]
