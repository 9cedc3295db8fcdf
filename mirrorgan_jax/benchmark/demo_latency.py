"""Latency of the web demo's requests on a trained run: start-up, first request, steady.

  python -m mirrorgan_jax.benchmark.demo_latency --workdir runs/shapes \
      [--requests 10] [--sample_counts 1,8] [--out demo_latency.json]

Times what the demo server does per request, without the browser: the engine's
`generate` (tokenize, the one compiled sampling program, redescriptions, attention
overlays) and the HTML of the answer (`render.result_html`). Reported: loading the
run, compiling (`Engine.warm_up`), the first request after that, and the median /
min / max of `--requests` more at each sample count. Prints a table and writes JSON.
"""

import argparse
import json
import os
import statistics
import sys
import time
from typing import Sequence

from mirrorgan_jax.infra import runtime_env

runtime_env.set_defaults()  # Before TensorFlow and JAX start.

# pylint: disable=g-import-not-at-top
from mirrorgan_jax.demo import engine as engine_lib
from mirrorgan_jax.demo import render
# pylint: enable=g-import-not-at-top

CAPTION = 'a small red star on the left against a black background'


def _request(engine: engine_lib.Engine, num_samples: int, seed: int) -> float:
  start = time.perf_counter()
  render.result_html(engine.generate(CAPTION, num_samples, seed))
  return time.perf_counter() - start


def measure(workdir: str, requests: int, sample_counts: Sequence[int]) -> dict:
  """The latencies (seconds) described in the module docstring."""
  start = time.perf_counter()
  engine = engine_lib.Engine.load(workdir, max(sample_counts))
  out = {'workdir': workdir, 'load_s': time.perf_counter() - start,
         'compile_s': engine.warm_up(), 'cpu_count': os.cpu_count(),
         'load_average': os.getloadavg()[0], 'requests': {}}
  out['first_request_s'] = _request(engine, max(sample_counts), 0)
  for k in sample_counts:
    times = [_request(engine, k, seed) for seed in range(1, requests + 1)]
    out['requests'][str(k)] = {'median_s': statistics.median(times), 'min_s': min(times),
                               'max_s': max(times)}
  return out


def main(argv: Sequence[str]) -> int:
  """Runs the benchmark; returns the exit code."""
  parser = argparse.ArgumentParser(prog='python -m mirrorgan_jax.benchmark.demo_latency')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--requests', type=int, default=10)
  parser.add_argument('--sample_counts', default='1,8')
  parser.add_argument('--out', default='demo_latency.json')
  args = parser.parse_args(list(argv[1:]))
  counts = [int(k) for k in args.sample_counts.split(',')]
  result = measure(args.workdir, args.requests, counts)
  print(f'load {result["load_s"]:.2f} s, compile {result["compile_s"]:.2f} s, first '
        f'request ({max(counts)} samples) {result["first_request_s"]:.3f} s')
  print('| samples | median s | min s | max s |\n|---:|---:|---:|---:|')
  for k, row in result['requests'].items():
    print(f'| {k} | {row["median_s"]:.3f} | {row["min_s"]:.3f} | {row["max_s"]:.3f} |')
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
