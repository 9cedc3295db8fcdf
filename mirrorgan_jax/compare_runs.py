r"""Compares two runs of the same config: logged losses, final parameters, eval results.

  python -m mirrorgan_jax.compare_runs WORKDIR_A WORKDIR_B [--rtol 1e-3] [--atol 1e-4] \
      [--tree_rtol 1e-3]

What must agree, phase by phase (`damsm`, `stream`, `oracle`, `gan`, `eval`, those
present in A):
- every continuous scalar summary of the phase (losses, norms, rms) logged under
  `train/` or `eval/` at every step, each within `atol + rtol * |value|`;
  decisions (accuracies, R-precision, BLEU, the probe) are left out: a logit that
  crosses 0 flips them for any difference, however small;
- the variables of each artifact and every leaf of the newest GAN checkpoint
  (parameters, EMA, optimiser states, BatchNorm statistics), as a whole:
  |A - B| / |A| over all floating-point values (L2 norms) within `tree_rtol`,
  integer leaves (steps, random keys) exactly. A runs with
  another device layout sum in another order, and Adam turns the float32 noise of
  gradients that are ~0 in theory (a bias before BatchNorm) into full steps, so
  single small leaves differ more than the whole;
- every number of `eval/results.json` but the speed, each as the scalars.
Used by `launch/local_multiprocess.sh` to check that a run spread over several
processes equals the one-process run. Prints one line per check with its largest
difference; exits 1 if anything differs beyond the tolerances.
"""

import argparse
import json
import sys
from typing import Any, Iterator, Sequence

from etils import epath
import jax
import numpy as np

from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import checkpointing

PHASES = ('damsm', 'stream', 'oracle', 'gan', 'eval')
_KINDS = {'damsm': artifacts.DAMSM, 'stream': artifacts.STREAM, 'oracle': artifacts.ORACLE}
_COMPARED_PREFIXES = ('train/', 'eval/')
_DECISIONS = ('acc', 'r_precision', 'bleu', 'oracle/', 'redescription')
_UNCOMPARED_RESULTS = ('images_per_second', 'path', 'note')


def logged_scalars(logdir: epath.PathLike) -> dict[tuple[int, str], float]:
  """{(step, tag): value} of every scalar summary in the event files of `logdir`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  scalars = {}
  for events in sorted(epath.Path(logdir).glob('events.out.tfevents*')):
    for event in tf.compat.v1.train.summary_iterator(str(events)):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == 'scalars':
          scalars[(event.step, value.tag)] = float(tf.make_ndarray(value.tensor))
  return scalars


def _leaves(tree: Any, prefix: str = '') -> Iterator[tuple[str, Any]]:
  """(path, leaf) of nested dicts / lists / arrays / numbers, in key order."""
  if isinstance(tree, dict):
    for k in sorted(tree):
      yield from _leaves(tree[k], f'{prefix}/{k}' if prefix else str(k))
  elif isinstance(tree, (list, tuple)):
    for i, v in enumerate(tree):
      yield from _leaves(v, f'{prefix}[{i}]')
  else:
    yield prefix, tree


def _difference(a: Any, b: Any, rtol: float, atol: float) -> tuple[float, bool]:
  """(largest |a - b|, within tolerance) of two numbers or arrays."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    return float('inf'), False
  if not a.size:
    return 0.0, True
  same_nan = np.isnan(a) & np.isnan(b)
  diff = np.where(same_nan, 0.0, np.abs(a - b))
  ok = bool(np.all(same_nan | (diff <= atol + rtol * np.abs(b))))
  return float(np.max(diff)), ok


class Report:
  """The checks made so far and whether they all passed."""

  def __init__(self, rtol: float, atol: float, tree_rtol: float):
    self.rtol, self.atol, self.tree_rtol = rtol, atol, tree_rtol
    self.lines, self.failed = [], False

  def _same_leaves(self, what: str, a: Any, b: Any) -> dict[str, tuple] | None:
    left, right = dict(_leaves(a)), dict(_leaves(b))
    if left.keys() != right.keys():
      missing = sorted(left.keys() ^ right.keys())
      self.fail(f'{what}: different structure ({len(missing)} leaves in one only, e.g. '
                f'{missing[0]})')
      return None
    return {k: (left[k], right[k]) for k in left}

  def values(self, what: str, a: Any, b: Any) -> None:
    """Compares two trees of numbers value by value (atol + rtol * |b|)."""
    pairs = self._same_leaves(what, a, b)
    if pairs is None:
      return
    worst, bad = 0.0, []
    for path, (x, y) in pairs.items():
      diff, ok = _difference(x, y, self.rtol, self.atol)
      worst = max(worst, diff)
      if not ok:
        bad.append(path)
    line = f'{what}: {len(pairs)} values, largest difference {worst:.3g}'
    if bad:
      self.fail(f'{line}; {len(bad)} beyond tolerance (first: {bad[0]})')
    else:
      self.lines.append(f'same  {line}')

  def tree(self, what: str, a: Any, b: Any) -> None:
    """Compares two trees of arrays as a whole: |a - b| / |a| (L2) <= tree_rtol."""
    pairs = self._same_leaves(what, a, b)
    if pairs is None:
      return
    squares, norm, worst, worst_path = 0.0, 0.0, 0.0, ''
    for path, (x, y) in pairs.items():
      x, y = np.asarray(x), np.asarray(y)
      if x.shape != y.shape or x.dtype != y.dtype:
        self.fail(f'{what}: {path} is {x.dtype}{list(x.shape)} against '
                  f'{y.dtype}{list(y.shape)}')
        return
      if not np.issubdtype(x.dtype, np.floating):  # Steps, random keys: exactly.
        if not np.array_equal(x, y):
          self.fail(f'{what}: {path} differs ({x.dtype} values)')
          return
        continue
      x, y = x.astype(np.float64), y.astype(np.float64)
      diff = np.where(np.isnan(x) & np.isnan(y), 0.0, np.abs(x - y))
      squares += float(np.sum(diff**2))
      norm += float(np.nansum(x**2))
      if diff.size and diff.max() > worst:
        worst, worst_path = float(diff.max()), path
    relative = np.sqrt(squares) / max(np.sqrt(norm), 1e-30)
    line = (f'{what}: {len(pairs)} arrays, relative difference {relative:.2g} (largest '
            f'value difference {worst:.3g}, in {worst_path or "none"})')
    if not relative <= self.tree_rtol:
      self.fail(f'{line} > {self.tree_rtol}')
    else:
      self.lines.append(f'same  {line}')

  def fail(self, line: str) -> None:
    self.failed = True
    self.lines.append(f'DIFF  {line}')


def _scalars(workdir: epath.Path, phase: str) -> dict[str, float]:
  return {f'{tag}@{step}': v for (step, tag), v in logged_scalars(workdir / phase).items()
          if tag.startswith(_COMPARED_PREFIXES) and not any(d in tag for d in _DECISIONS)}


def _gan_state(workdir: epath.Path) -> Any:
  restored = checkpointing.restore_as_saved(workdir / 'gan' / 'checkpoints')
  if restored is None:
    raise FileNotFoundError(f'no GAN checkpoint in {workdir}/gan/checkpoints')
  state, step = restored
  return {'step': step, 'state': jax.device_get(state)}


def _results(workdir: epath.Path) -> Any:
  results = json.loads((workdir / 'eval' / 'results.json').read_text())
  return {path: leaf for path, leaf in _leaves(results)
          if not any(part in path for part in _UNCOMPARED_RESULTS)
          and isinstance(leaf, (int, float)) and not isinstance(leaf, bool)}



def compare(a: epath.PathLike, b: epath.PathLike, rtol: float = 1e-3,
            atol: float = 1e-4, tree_rtol: float = 1e-3,
            phases: Sequence[str] = PHASES) -> Report:
  """Compares run `b` with run `a` (see the module docstring).

  Args:
    a, b: the workdirs.
    rtol, atol, tree_rtol: the tolerances of the module docstring.
    phases: which phases to compare (those of them in `a`); 'eval' is
      `eval/results.json`.
  """
  a, b = epath.Path(a), epath.Path(b)
  report = Report(rtol, atol, tree_rtol)
  phases = [p for p in phases if (a / p).is_dir()]
  if not phases:
    raise FileNotFoundError(f'{a} holds no phase directory ({", ".join(PHASES)})')
  for phase in (p for p in phases if p != 'eval'):
    if not (b / phase).is_dir():
      report.fail(f'{phase}: missing in {b}')
      continue
    report.values(f'{phase} logged scalars', _scalars(a, phase), _scalars(b, phase))
    if phase in _KINDS:
      path = artifacts.directory(a, _KINDS[phase])
      if artifacts.exists(path, _KINDS[phase]):
        report.tree(f'{phase} artifact variables', artifacts.read(path, _KINDS[phase])[0],
                    artifacts.read(artifacts.directory(b, _KINDS[phase]), _KINDS[phase])[0])
  if 'gan' in phases and (a / 'gan' / 'checkpoints').is_dir():
    report.tree('gan newest checkpoint', _gan_state(a), _gan_state(b))
  if 'eval' in phases and (a / 'eval' / 'results.json').exists():
    report.values('eval results.json', _results(a), _results(b))
  return report


def main(argv: Sequence[str]) -> int:
  """Runs the CLI; returns 0 when the runs agree, 1 otherwise."""
  parser = argparse.ArgumentParser(prog='python -m mirrorgan_jax.compare_runs')
  parser.add_argument('workdir_a')
  parser.add_argument('workdir_b')
  parser.add_argument('--rtol', type=float, default=1e-3)
  parser.add_argument('--atol', type=float, default=1e-4)
  parser.add_argument('--tree_rtol', type=float, default=1e-3)
  args = parser.parse_args(list(argv[1:]))
  try:
    report = compare(args.workdir_a, args.workdir_b, args.rtol, args.atol, args.tree_rtol)
  except (FileNotFoundError, ValueError, RuntimeError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print('\n'.join(report.lines))
  print(f'{args.workdir_b} {"DIFFERS from" if report.failed else "equals"} {args.workdir_a} '
        f'(rtol {args.rtol}, atol {args.atol}, tree_rtol {args.tree_rtol}).')
  return int(report.failed)


if __name__ == '__main__':
  sys.exit(main(sys.argv))
