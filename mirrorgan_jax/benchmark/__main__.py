r"""Training and sampling speed of a config on the devices present.

  python -m mirrorgan_jax.benchmark --config configs/shapes.py [--steps 10] \
      [--warmup 2] [--dtypes float32,bfloat16] [--phases gan,damsm,stream,sampling] \
      [--sample_batch_sizes 1,64] [--vocab_size N] [--out FILE.json] \
      [--config.train.batch_size=2]

For each compute dtype: compile time and median seconds per step / images per
second of the GAN step, of one DAMSM and one STREAM pretraining step, and of
sampling (EMA generator + text encoder) at each sampling batch size, with peak
host and device memory; data parallel over every device (sampling on one).
Synthetic batches and random weights (`train_speed`): no dataset or
pretrained artifact is read. Batch sizes are the config's (`train.batch_size`,
`damsm.batch_size`, `stream.batch_size`); `--phases` skips slow phases (e.g.
the Inception-v3 / ResNet-152 pretraining steps of the paper config on a CPU).
Prints a table (one row per measurement) and writes JSON to `--out` (default
`benchmark_<config>.json` in the current directory).
"""

import dataclasses
import json
import os
import pathlib
import platform
import sys
from typing import Any, Sequence

from mirrorgan_jax.infra import runtime_env

runtime_env.set_defaults()  # Before JAX starts: XLA:CPU options timed as trained.

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from mirrorgan_jax.benchmark import peak_flops
from mirrorgan_jax.benchmark import train_speed
from mirrorgan_jax.models import factory

# Vocabulary sizes of the datasets (CUB / COCO: AttnGAN's released encoders).
DEFAULT_VOCAB_SIZES = {'captioned_shapes': 80, 'cub': 5450, 'coco2014_captions': 27297}
_COLUMNS = (('measurement', 'name'), ('dtype', 'dtype'), ('batch', 'batch_size'),
            ('first call s', 'first_call_s'), ('compile s', 'compile_s'),
            ('s/step', 'median_step_s'), ('images/s', 'images_per_s'),
            ('GFLOP/image', 'gflop_per_image'), ('GFLOP/s', 'gflop_per_s'),
            ('of peak', 'utilisation'),
            ('host MiB', 'peak_host_mib'), ('device MiB', 'peak_device_mib'))


def _define_flags(argv: Sequence[str]) -> flags.FlagValues:
  """A private flag set (no clash with other entry points' global flags)."""
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file(
      'config', None, 'Experiment config, e.g. configs/shapes.py, configs/cub.py.',
      flag_values=fv, lock_config=True, sys_argv=list(argv))
  flags.DEFINE_integer('steps', 10, 'Timed calls per measurement (median reported).',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('warmup', 2, 'Untimed calls after the first (compiling) call.',
                       lower_bound=0, flag_values=fv)
  flags.DEFINE_list('dtypes', list(train_speed.DTYPES), 'Compute dtypes to measure.',
                    flag_values=fv)
  flags.DEFINE_list('phases', list(train_speed.PHASES), 'What to measure.',
                    flag_values=fv)
  flags.DEFINE_list('sample_batch_sizes', ['1', '64'], 'Batch sizes of the sampling '
                    'measurement.', flag_values=fv)
  flags.DEFINE_integer('vocab_size', None, 'Vocabulary size (default: the dataset\'s, '
                       f'{DEFAULT_VOCAB_SIZES}).', lower_bound=2, flag_values=fv)
  flags.DEFINE_string('out', None, 'JSON output (default benchmark_<config>.json).',
                      flag_values=fv)
  return fv


@dataclasses.dataclass(frozen=True)
class Options:
  """Validated command line."""
  config: Any
  config_arg: str  # As given, e.g. 'configs/shapes.py:smoke'.
  overrides: dict[str, Any]
  steps: int
  warmup: int
  dtypes: tuple[str, ...]
  phases: tuple[str, ...]
  sample_batch_sizes: tuple[int, ...]
  vocab_size: int
  out: pathlib.Path


def config_name(config_arg: str) -> str:
  """'configs/shapes.py:smoke' -> 'shapes_smoke' (for the default output name)."""
  path, _, arg = config_arg.partition(':')
  name = pathlib.Path(path).stem
  arg = ''.join(c if c.isalnum() else '_' for c in arg)
  return f'{name}_{arg}' if arg else name


def _choices(values: list[str], allowed: Sequence[str], flag: str) -> tuple[str, ...]:
  bad = [v for v in values if v not in allowed]
  if bad or not values:
    raise flags.Error(f'--{flag} takes a comma-separated subset of {",".join(allowed)}; '
                      f'got {",".join(values) or "nothing"}')
  return tuple(dict.fromkeys(values))


def parse(argv: Sequence[str]) -> Options:
  """Parses and checks the command line; raises flags.Error with a clear message."""
  fv = _define_flags(argv)
  rest = fv(list(argv))
  if len(rest) > 1:
    raise flags.Error(f'unexpected arguments: {rest[1:]}')
  if fv.config is None:
    raise flags.Error('--config is required, e.g. --config configs/shapes.py')
  config = fv.config
  _ = config.model  # A config file that failed to load raises only when read.
  try:
    sample_sizes = tuple(int(s) for s in fv.sample_batch_sizes)
  except ValueError:
    sample_sizes = ()
  if not sample_sizes or min(sample_sizes) < 1:
    raise flags.Error('--sample_batch_sizes takes positive integers, e.g. 1,64; got '
                      f'{",".join(fv.sample_batch_sizes)}')
  vocab_size = fv.vocab_size or DEFAULT_VOCAB_SIZES.get(config.data.name)
  if vocab_size is None:
    raise flags.Error(f'no default vocabulary size for dataset {config.data.name!r}; '
                      'pass --vocab_size')
  config_arg = config_flags.get_config_filename(fv['config'])
  return Options(
      config=config, config_arg=config_arg,
      overrides=config_flags.get_override_values(fv['config']),
      steps=fv.steps, warmup=fv.warmup,
      dtypes=_choices(fv.dtypes, train_speed.DTYPES, 'dtypes'),
      phases=_choices(fv.phases, train_speed.PHASES, 'phases'),
      sample_batch_sizes=sample_sizes, vocab_size=vocab_size,
      out=pathlib.Path(fv.out or f'benchmark_{config_name(config_arg)}.json'))


def _cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def environment() -> dict[str, Any]:
  """Devices, software and host load of this run."""
  devices = jax.devices()
  return {
      'backend': jax.default_backend(), 'device_kind': devices[0].device_kind,
      'device_count': len(devices), 'process_count': jax.process_count(),
      'jax_version': jax.__version__, 'python_version': platform.python_version(),
      'cpu_model': _cpu_model(), 'cpu_cores': len(os.sched_getaffinity(0)),
      'load_average_1m': os.getloadavg()[0],
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      # Tests set it to compile fast; timings taken with it are not representative.
      'jax_disable_most_optimizations': bool(
          jax.config.values.get('jax_disable_most_optimizations', False)),
  }


def report(options: Options, env: dict[str, Any],
           results: list[train_speed.Measurement]) -> dict[str, Any]:
  """The JSON document of a run."""
  c = options.config
  device_peaks = [r.peak_device_mib for r in results if r.peak_device_mib != 'n/a']
  return {
      'config': options.config_arg, 'config_overrides': options.overrides,
      **env, 'load_average_1m_end': os.getloadavg()[0],
      'steps': options.steps, 'warmup': options.warmup, 'vocab_size': options.vocab_size,
      'dtypes': list(options.dtypes), 'phases': list(options.phases),
      'parallel_mode': c.parallel.mode,
      'image_sizes': list(factory.stage_sizes(c)),
      'batch_sizes': {'gan': c.train.batch_size, 'damsm': c.damsm.batch_size,
                      'stream': c.stream.batch_size,
                      'sampling': list(options.sample_batch_sizes)},
      'peak_host_mib': train_speed.host_peak_mib(),
      'peak_device_mib': max(device_peaks) if device_peaks else 'n/a',
      # The denominators of `utilisation`: {dtype: [FLOP/s or None, how derived]}.
      'peak_flops': {d: list(peak_flops.peak_flops(env['backend'], env['device_kind'], d,
                                                   env['device_count']))
                     for d in options.dtypes},
      'results': [dataclasses.asdict(r) for r in results],
  }


def table(results: list[train_speed.Measurement]) -> str:
  """One row per measurement, aligned columns."""
  def cell(value):
    if value is None:
      return 'n/a'
    if isinstance(value, float):
      return f'{value:.4f}' if value < 1 else f'{value:,.2f}'
    return str(value)
  rows = [[title for title, _ in _COLUMNS]]
  rows += [[cell(getattr(r, key)) for _, key in _COLUMNS] for r in results]
  widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
  lines = ['  '.join(v.ljust(w) if i < 2 else v.rjust(w)
                     for i, (v, w) in enumerate(zip(row, widths))) for row in rows]
  lines.insert(1, '-' * len(lines[0]))
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> int:
  """Runs the CLI. Args: argv with the program name first. Returns: exit code."""
  if any(a in ('-h', '--help', '-help') for a in argv[1:]):
    print(__doc__ + '\n' + _define_flags(argv).get_help())
    return 0
  try:
    options = parse(argv)
    train_speed.check_batch_sizes(options.config, options.phases, jax.device_count())
  except (flags.Error, ValueError, AttributeError, KeyError, OSError) as e:
    print(f'error: {e}\n{__doc__}', file=sys.stderr)  # Bad flag or config.
    return 2
  logging.set_verbosity(logging.INFO)
  env = environment()
  logging.info('Benchmarking %s on %d %s device(s), jax %s.', options.config_arg,
               env['device_count'], env['device_kind'], env['jax_version'])
  results = []
  for dtype in options.dtypes:
    results += train_speed.measure(
        options.config, dtype, options.phases, options.vocab_size, options.steps,
        options.warmup, options.sample_batch_sizes)
  doc = report(options, env, results)
  device_peak = doc['peak_device_mib']
  print(table(results))
  print(f"{env['device_count']} x {env['device_kind']}; peak host memory "
        f"{doc['peak_host_mib']:,.0f} MiB; peak device memory "
        + (f'{device_peak:,.0f} MiB' if device_peak != 'n/a' else 'n/a'))
  for dtype, (_, how) in doc['peak_flops'].items():
    print(f'Peak {dtype}: {how}.')
  options.out.parent.mkdir(parents=True, exist_ok=True)
  options.out.write_text(json.dumps(doc, indent=1) + '\n')
  logging.info('Wrote %s.', options.out)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
