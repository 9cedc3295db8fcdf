"""Serves the web demo of a trained run on this machine.

  python -m mirrorgan_jax.demo --workdir runs/shapes [--port 7860] [--host 127.0.0.1] \
      [--max-samples 8] [--num-examples 8]

Loads the run (EMA generator, frozen text encoder and STREAM captioner), compiles
the one program every request uses, then serves the page and prints its URL. The
example captions are the first caption of the first test images, read from the
run's dataset (left out, with a warning, if the dataset is not on this machine).
A missing or corrupt workdir ends with a one-line `error: ...` and exit code 1.
Needs the demo extra: `pip install -r requirements-demo.txt` (or `make demo`).
"""

import argparse
import os
import sys
import time
from typing import Sequence

from mirrorgan_jax.infra import runtime_env

runtime_env.set_defaults()  # Before TensorFlow and JAX start.
os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # No network but the page.

# pylint: disable=g-import-not-at-top
import tensorflow as tf

from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.demo import engine as engine_lib
from mirrorgan_jax.infra import cli_errors
from mirrorgan_jax.infra import console
# pylint: enable=g-import-not-at-top


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m mirrorgan_jax.demo', allow_abbrev=False,
      description='Serve a web page that draws captions with a trained MirrorGAN.')
  parser.add_argument('--workdir', required=True, help='run directory of mirrorgan_jax.main')
  parser.add_argument('--host', default='127.0.0.1',
                      help='address to serve on (default 127.0.0.1: this machine only)')
  parser.add_argument('--port', type=int, default=7860, help='port (0: any free port)')
  parser.add_argument('--max-samples', '--max_samples', dest='max_samples', type=int,
                      default=engine_lib.MAX_SAMPLES,
                      help='most samples per request; the compiled batch size')
  parser.add_argument('--num-examples', '--num_examples', dest='num_examples', type=int,
                      default=8, help='example captions from the test set')
  return parser


def example_captions(engine: engine_lib.Engine, num: int) -> list[str]:
  """The first caption of the first `num` test images ([] if the data is absent)."""
  if num < 1:
    return []
  try:
    return input_pipeline.eval_captions(engine.trained.config, num)
  except (FileNotFoundError, OSError) as e:
    console.say(f'warning: no example captions ({cli_errors.one_line(e)}).')
    return []


def start(args: argparse.Namespace):
  """Loads the run, compiles, serves the page; returns (page, url)."""
  from mirrorgan_jax.demo import app  # pylint: disable=g-import-not-at-top
  if args.max_samples < 1:
    raise ValueError(f'--max-samples must be >= 1, got {args.max_samples}')
  if not 0 <= args.port < 2**16:
    raise ValueError(f'--port must be in [0, 65535], got {args.port}')
  start_time = time.perf_counter()
  engine = engine_lib.Engine.load(args.workdir, args.max_samples)
  console.say(f'Loaded {args.workdir} (GAN step {engine.trained.step}) in '
              f'{time.perf_counter() - start_time:.1f} s; compiling...')
  console.say(f'Compiled the sampling program in {engine.warm_up():.1f} s.')
  page = app.build(engine, example_captions(engine, args.num_examples))
  url = app.launch(page, args.host, args.port)
  console.say(f'MirrorGAN demo running at {url} (Ctrl-C to stop).')
  return page, url


def main(argv: Sequence[str]) -> int:
  """Runs the CLI. Args: argv with the program name first. Returns: exit code."""
  args = _parser().parse_args(list(argv[1:]))
  tf.config.set_visible_devices([], 'GPU')  # TF only reads files; GPUs belong to JAX.
  console.quiet_libraries()
  try:
    page, _ = start(args)
  except ModuleNotFoundError as e:
    print(f'error: {e}; the demo needs its extra: pip install -r requirements-demo.txt '
          '(or make demo)', file=sys.stderr)
    return 1
  except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
    print(f'error: {cli_errors.one_line(e)}', file=sys.stderr)
    return 1
  try:
    page.block_thread()
  finally:
    page.close()
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
