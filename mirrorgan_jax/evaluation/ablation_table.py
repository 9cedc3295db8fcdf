r"""Markdown table of an ablation: mean ± std over seeds of each arm's eval results.

  python -m mirrorgan_jax.evaluation.ablation_table --out runs/ablation/ablation.md \
      runs/ablation/lambda0_seed0 runs/ablation/lambda0_seed1 ...

Each argument is a workdir named `<arm>_seed<S>` holding `eval/results.json`
(`--mode eval`). Nested keys are joined with '/'; the metrics shown are
`--metrics` (fnmatch patterns over those keys, in order).
"""

import collections
import fnmatch
import json
import math
import re
from typing import Sequence

from absl import app
from absl import flags
from etils import epath

from mirrorgan_jax.evaluation import eval_protocol as protocol

_OUT = flags.DEFINE_string('out', None, 'Markdown file to write (also printed).')
_METRICS = flags.DEFINE_list(
    'metrics', ['oracle/accuracy/*', 'oracle/oracle_fid', 'r_precision/generated/top1_*',
                'bleu4/generated', 'fid', 'inception_score/mean'],
    'fnmatch patterns of the flattened results.json keys to tabulate.')

_RUN_NAME = re.compile(r'^(?P<arm>.+)_seed(?P<seed>\d+)$')


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
  n = len(values)
  mean = sum(values) / n
  var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
  return mean, math.sqrt(var)


def collect(workdirs: Sequence[epath.PathLike]) -> dict[str, list[dict[str, float]]]:
  """{arm: [flattened results of each seed]} from `<arm>_seed<S>` workdirs."""
  arms = collections.defaultdict(list)
  for workdir in workdirs:
    workdir = epath.Path(workdir)
    match = _RUN_NAME.match(workdir.name)
    if not match:
      raise ValueError(f'{workdir}: run directories must be named <arm>_seed<S>')
    path = workdir / 'eval' / 'results.json'
    if not path.exists():
      raise FileNotFoundError(f'{path} not found: run --mode eval on {workdir} first')
    arms[match['arm']].append(protocol.flat_scalars(json.loads(path.read_text())))
  return dict(arms)


def table(arms: dict[str, list[dict[str, float]]], patterns: Sequence[str]) -> str:
  """Markdown: one row per arm, one column per metric key matching `patterns`."""
  keys = []
  for pattern in patterns:
    for results in arms.values():
      for key in sorted(results[0]):
        if fnmatch.fnmatchcase(key, pattern) and key not in keys:
          keys.append(key)
  lines = ['| arm | seeds | ' + ' | '.join(keys) + ' |',
           '|---|---|' + '---|' * len(keys)]
  for arm, runs in arms.items():
    cells = []
    for key in keys:
      values = [r[key] for r in runs if key in r]
      if values:
        mean, std = mean_std(values)
        cells.append(f'{mean:.4f} ± {std:.4f}')
      else:
        cells.append('n/a')
    lines.append(f'| {arm} | {len(runs)} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('give the run directories (<arm>_seed<S>) to tabulate')
  text = table(collect(argv[1:]), _METRICS.value)
  print(text)
  if _OUT.value:
    epath.Path(_OUT.value).write_text(text)


if __name__ == '__main__':
  app.run(main)
