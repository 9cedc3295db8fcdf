"""Where the GAN step's time goes: seconds and FLOPs per part of the step.

  python -m mirrorgan_jax.benchmark.step_profile --config configs/cub.py \
      --config.model.generator.num_stages=1 --config.train.batch_size=4 \
      --steps 3 --out profile_cub1.json

Runs the GAN step of `gan_step.make_train_step` on synthetic batches (as
`python -m mirrorgan_jax.benchmark`), times `--steps` calls, then traces as
many with `jax.profiler` and reads the trace back in-process. Every XLA kernel
in the trace is an instruction of the compiled step, and its HLO metadata names
the `jax.named_scope` and module path it was traced under (`gan_step`'s
text_encoder, G_forward, D_update / G_update with d<size> per D, STREAM, adam,
ema; the generator's stage<i>): that gives its part.

Seconds per part = median step time x the part's share of the traced kernel
time (kernels of XLA's threads overlap, so shares of kernel time are what
compares with wall time). FLOPs per part: the convolutions and dot products of
the part's instructions counted from their HLO shapes (2 x multiply-adds;
element-wise work is not counted; a loop body, e.g. an LSTM step, is counted
once per trip of its known trip count), next to the XLA cost analysis of the
whole program.
"""

import collections
import dataclasses
import glob
import json
import math
import re
import sys
import tempfile
from typing import Sequence

from mirrorgan_jax.infra import runtime_env

runtime_env.set_defaults()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import jax
from ml_collections import config_flags

from mirrorgan_jax.infra import parallel
from mirrorgan_jax.benchmark import train_speed
from mirrorgan_jax.models import factory

# (part, pattern on the HLO op_name); the first match names the part, '{}' takes
# the pattern's group (a D's size or a G stage).
PARTS = (
    ('text encoder', r'/text_encoder/'),
    ('STREAM backward (to the image)', r'transpose\(jvp\(STREAM\)\)'),
    ('STREAM forward', r'STREAM'),
    ('D{} update (fwd + bwd)', r'/D_update/(?:.*[/(])?d(\d+)[/)]'),
    ('D{} in the G loss (fwd + bwd)', r'/G_update/(?:.*[/(])?d(\d+)[/)]'),
    ('Adam (D and G)', r'/adam/'),
    ('EMA', r'/ema/'),
    ('G stage {} backward', r'transpose\(jvp\(Generator\)\)/stage(\d+)'),
    ('G stage {} forward', r'Generator\)/stage(\d+)'),
    ('G conditioning (CA) fwd + bwd', r'Generator\)/ca'),
)
OTHER = 'other (noise, losses, metrics)'
_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = (.*)$')
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def part_of(op_name: str) -> str:
  """The part of the step an HLO op_name belongs to (`PARTS`, else OTHER)."""
  for label, pattern in PARTS:
    m = re.search(pattern, op_name)
    if m:
      return label.format(*m.groups())
  return OTHER


def _dims(shape: str) -> list[int]:
  return [int(d) for d in shape.split(',') if d]


def instruction_flops(text: str, shapes: dict[str, list[int]]) -> float:
  """2 x multiply-adds of one HLO convolution or dot instruction (else 0).

  Args:
    text: the instruction's right-hand side, e.g. 'f32[4,8,8,16]{3,2,1,0}
      convolution(%a, %b), window={size=3x3 ...}, dim_labels=b01f_01io->b01f'.
    shapes: dims of every instruction of the module, by name (the operands).
  """
  out = re.match(r'\w+\[([\d,]*)\]', text)
  op = re.search(r' (convolution|dot)\(%?([\w.\-]+), %?([\w.\-]+)\)', text)
  if out is None or op is None or op.group(2) not in shapes or op.group(3) not in shapes:
    return 0.0
  out_size = math.prod(_dims(out.group(1)))
  lhs, rhs = shapes[op.group(2)], shapes[op.group(3)]
  if op.group(1) == 'convolution':
    labels = re.search(r'dim_labels=\w+_(\w+)->', text)
    window = re.search(r'size=([\dx]+)', text)
    taps = math.prod(int(k) for k in window.group(1).split('x')) if window else 1
    # rhs 'i' is the input width per feature group, so grouped convs count right.
    return 2.0 * out_size * taps * rhs[labels.group(1).index('i')] if labels else 0.0
  contracting = re.search(r'lhs_contracting_dims=\{([\d,]*)\}', text)
  if contracting is None:
    return 0.0
  return 2.0 * out_size * math.prod(lhs[int(d)] for d in _dims(contracting.group(1)))


def parse_hlo(hlo_text: str) -> tuple[dict[str, str], dict[str, float]]:
  """({instruction name: op_name}, {part: FLOPs}) of a compiled module's HLO text.

  Instructions of a while-loop body count once per trip where XLA knows the trip
  count (`known_trip_count`), else once.
  """
  trips = {m.group(1): int(m.group(2)) for m in re.finditer(
      r'body=%?([\w.\-]+)[^\n]*known_trip_count[^\d]*(\d+)', hlo_text)}
  shapes, names, flops = {}, {}, collections.Counter()
  instructions = []  # (name, right-hand side, repeat)
  repeat = 1
  for line in hlo_text.splitlines():
    header = re.match(r'^(?:ENTRY )?%?([\w.\-]+) [(]', line)
    if header and line.rstrip().endswith('{'):
      repeat = trips.get(header.group(1), 1)
      continue
    m = _INSTRUCTION.match(line)
    if m:
      dims = re.match(r'\w+\[([\d,]*)\]', m.group(2))
      if dims:
        shapes[m.group(1)] = _dims(dims.group(1))
      instructions.append((m.group(1), m.group(2), repeat))
  for name, rhs, repeat in instructions:
    op = _OP_NAME.search(rhs)
    names[name] = op.group(1) if op else ''
    f = instruction_flops(rhs, shapes)
    if f:
      flops[part_of(names[name])] += f * repeat
  return names, dict(flops)


def kernel_seconds(trace_dir: str, names: dict[str, str]) -> dict[str, float]:
  """{part: summed duration of its kernels} from the trace in `trace_dir`."""
  files = glob.glob(f'{trace_dir}/**/*.xplane.pb', recursive=True)
  if not files:
    raise RuntimeError(f'jax.profiler wrote no trace under {trace_dir}')
  data = jax.profiler.ProfileData.from_file(files[0])
  seconds = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      for event in line.events:
        if event.name in names:
          seconds[part_of(names[event.name])] += event.duration_ns * 1e-9
  return dict(seconds)


@dataclasses.dataclass
class Part:
  """One row: a part of the step."""
  part: str
  seconds: float  # Of the median step, by share of kernel time.
  share: float
  gflop: float  # Convolutions and dots.
  gflop_per_s: float | None


def profile(config, vocab_size: int, steps: int) -> dict:
  """Times and traces the GAN step; returns the report (see the module doc)."""
  config = train_speed.benchmark_config(config, config.model.compute_dtype)
  models = factory.create_models(config, vocab_size)
  frozen_key, state_key = jax.random.split(jax.random.PRNGKey(config.seed))
  frozen, state = train_speed.gan_variables(config, models, vocab_size, frozen_key,
                                            state_key)
  stepper = train_speed.gan_stepper(config, models, frozen, state, vocab_size,
                                    parallel.create_mesh())
  timing = train_speed.time_calls(stepper, 'gan_step', config.model.compute_dtype,
                                  config.train.batch_size, steps, warmup=0)
  median = timing.median_step_s
  lowered = stepper.lower()
  names, flops = parse_hlo(lowered.compile().as_text())
  total_flops = train_speed.program_flops(lowered)
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    for _ in range(steps):
      jax.block_until_ready(stepper())
    jax.profiler.stop_trace()
    seconds = kernel_seconds(trace_dir, names)
  kernel_total = sum(seconds.values())
  rows = []
  for part in sorted(set(seconds) | set(flops), key=lambda p: -seconds.get(p, 0.0)):
    share = seconds.get(part, 0.0) / kernel_total
    s = median * share
    gflop = flops.get(part, 0.0) / 1e9
    rows.append(Part(part, s, share, gflop, gflop / s if s > 0 and gflop else None))
  return {'batch_size': config.train.batch_size,
          'image_sizes': [d.image_size for d in models.discriminators.values()],
          'median_step_s': median,
          'min_step_s': timing.min_step_s, 'max_step_s': timing.max_step_s,
          'cost_analysis_gflop': None if total_flops is None else total_flops / 1e9,
          'counted_gflop': sum(flops.values()) / 1e9,
          'parts': [dataclasses.asdict(r) for r in rows]}


def table(report: dict) -> str:
  """The report as aligned text."""
  lines = [f"{'part':36s} {'s/step':>8s} {'share':>7s} {'GFLOP':>9s} {'GFLOP/s':>8s}"]
  for r in report['parts']:
    rate = f"{r['gflop_per_s']:.1f}" if r['gflop_per_s'] else '-'
    lines.append(f"{r['part']:36s} {r['seconds']:8.3f} {r['share']:7.1%} "
                 f"{r['gflop']:9.2f} {rate:>8s}")
  lines.append(f"{'step (median)':36s} {report['median_step_s']:8.3f} {'':7s} "
               f"{report['counted_gflop']:9.2f}  (XLA cost analysis: "
               f"{report['cost_analysis_gflop']:.2f} GFLOP)")
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> int:
  """Runs the CLI (argv with the program name first); returns the exit code."""
  fv = flags.FlagValues()  # Private: no clash with other entry points' flags.
  config_flags.DEFINE_config_file('config', None, 'Experiment config.', flag_values=fv,
                                  lock_config=True, sys_argv=list(argv))
  flags.DEFINE_integer('steps', 3, 'Timed and traced steps (each).', lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer('vocab_size', 5450, 'Vocabulary of the random text nets.',
                       lower_bound=2, flag_values=fv)
  flags.DEFINE_string('out', None, 'JSON output (optional).', flag_values=fv)
  try:
    fv(list(argv))
    if fv.config is None:
      raise flags.Error('--config is required, e.g. --config configs/shapes.py')
  except flags.Error as e:
    print(f'error: {e}\n{__doc__}', file=sys.stderr)
    return 2
  report = profile(fv.config, fv.vocab_size, fv.steps)
  print(table(report))
  if fv.out:
    with open(fv.out, 'w') as f:
      json.dump(report, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
