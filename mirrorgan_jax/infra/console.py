"""What a person reads while a run works: one line per event on stdout.

Library logs (absl INFO of Orbax, TFDS, clu's metric writers) are for
debugging: `main` hides them unless `--verbosity` asks. What matters to a
person is printed here instead: a progress line per phase and logging interval
(step, steps/s, ETA, the key losses), phase summaries, the paths of what was
written, checkpoint fallbacks. Only process 0 prints.
"""

import logging as std_logging

from absl import logging
import jax

# Per-step metrics shown on the progress line, in this order, when a phase has them
# (the rest are in TensorBoard).
KEY_METRICS = ('loss', 'g_loss', 'd_loss', 'caption_ce', 'kl', 'token_accuracy')


def quiet_libraries() -> None:
  """Hides library INFO logs and asyncio's unretrieved-future reports.

  Orbax restores run on asyncio; a corrupt checkpoint leaves futures whose
  exceptions asyncio reports at exit (thousands of lines) although the error
  was already handled and reported in one line.
  """
  logging.set_verbosity(logging.WARNING)
  std_logging.getLogger('asyncio').setLevel(std_logging.CRITICAL)


def say(message: str) -> None:
  """Prints `message` on stdout (process 0 only), flushed at once."""
  if jax.process_index() == 0:
    print(message, flush=True)


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 60:
    return f'{seconds}s'
  if seconds < 3600:
    return f'{seconds // 60}m{seconds % 60:02d}s'
  return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'


def progress_line(phase: str, step: int, num_steps: int, steps_per_sec: float,
                  metrics: dict[str, float]) -> str:
  """E.g. 'gan 500/1250 (40%) 2.10 steps/s ETA 5m57s | g_loss 51.3 d_loss 2.93'.

  Args:
    phase: the phase name.
    step, num_steps: the step just done and the phase's last step.
    steps_per_sec: the rate since the previous line.
    metrics: the interval's mean metrics, without a 'train/' prefix; those in
      KEY_METRICS are shown.
  """
  eta_text = (_duration((num_steps - step) / steps_per_sec) if steps_per_sec > 0
              else '?')
  values = ' '.join(f'{k} {metrics[k]:.4g}' for k in KEY_METRICS if k in metrics)
  return (f'{phase} {step}/{num_steps} ({100 * step / num_steps:.0f}%) '
          f'{steps_per_sec:.2f} steps/s ETA {eta_text}' + (f' | {values}' if values else ''))
