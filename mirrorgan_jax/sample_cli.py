r"""Samples a trained MirrorGAN from any sentence.

  python -m mirrorgan_jax.sample_cli --workdir DIR --text "a small red star left of a blue \
      circle" [--text ...] [--captions-file F] [--num-samples 8] [--seed S] \
      [--out DIR] [--drop-unknown-words] [--batch-size B] [--config FILE [--config.x=y]]

Loads the run's newest GAN checkpoint (EMA generator), its frozen text encoder
and STREAM captioner with their vocabulary (`trained_model.load`), and writes to
`--out` (default `<workdir>/samples`), for caption i:

* `NN_<words>.png`: per sample, a row with every stage (upscaled to the last
  size), then for each refinement stage a row with that stage's image and its
  word-attention maps overlaid on it, the word under each map;
* `NN_<words>.txt`: the caption, the words used, and the STREAM redescription
  of each sample's final image (also printed);

and `samples.json`, a summary of every caption (ids, dropped and truncated
words, file names, redescriptions). `--captions-file` has one caption per line
(blank lines skipped). Underscore spellings of the flags work too. Bad input
(unknown words, empty text, a missing or corrupt workdir/checkpoint) ends with
a one-line `error: ...` on stderr and exit code 1.
"""

import argparse
import json
import math
import sys
from typing import Sequence

from mirrorgan_jax.infra import runtime_env

runtime_env.set_defaults()  # Before TensorFlow and JAX start.

# pylint: disable=g-import-not-at-top
from etils import epath
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from mirrorgan_jax.infra import cli_errors
from mirrorgan_jax.infra import config_loading
from mirrorgan_jax.infra import console
from mirrorgan_jax.infra import image_grid
from mirrorgan_jax import sampling
from mirrorgan_jax import trained_model
# pylint: enable=g-import-not-at-top

MIN_CELL = 64  # Smallest cell side in px in the figure, so that words fit under maps.
_PAD = 2  # White pixels between cells (as image_grid.tile).
_FONT_SIZE = 11
_LABEL_HEIGHT = 14  # Height in px of a strip of labels.
_GAP = 8  # White pixels between the samples of a figure.


# ----------------------------------------------------------------- figure
def _font() -> ImageFont.ImageFont:
  return ImageFont.load_default(size=_FONT_SIZE)


def _fit(text: str, width: int, font) -> str:
  """`text`, cut and ended with '.' until it is at most `width` px wide."""
  if font.getlength(text) <= width:
    return text
  while len(text) > 1 and font.getlength(text + '.') > width:
    text = text[:-1]
  return text + '.'


def _strip(width: int, labels: Sequence[str], cell: int) -> np.ndarray:
  """A white strip of `width` px with labels centred under the cells of a row."""
  image = Image.new('RGB', (width, _LABEL_HEIGHT), 'white')
  draw, font = ImageDraw.Draw(image), _font()
  for k, label in enumerate(labels):
    label = _fit(label, cell, font)
    x = _PAD + k * (cell + _PAD) + (cell - font.getlength(label)) / 2
    draw.text((x, 1), label, fill='black', font=font)
  return np.asarray(image)


def _stack(blocks: Sequence[np.ndarray]) -> np.ndarray:
  """Stacks uint8 [h, w_i, 3] blocks vertically, padding each to the widest."""
  width = max(b.shape[1] for b in blocks)
  return np.concatenate(
      [np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)), constant_values=255)
       for b in blocks])


def caption_figure(result: sampling.SampleResult, index: int) -> np.ndarray:
  """The figure of caption `index` of `result`: stages and labelled attention maps.

  Args:
    result: `sampling.sample` output.
    index: which caption.
  Returns:
    uint8 [H, W, 3]. Per sample: one row of every stage, upscaled to the last
    stage's size (at least MIN_CELL px); then, per refinement stage, that
    stage's image followed by its attention map of each word, each with its
    label underneath.
  """
  words = result.captions[index].words
  stages = [image_grid.to_uint8(s[index]) for s in result.images]  # [K, S, S, 3]
  sizes = [s.shape[1] for s in stages]
  cell = sizes[-1] * math.ceil(MIN_CELL / sizes[-1])
  stages = [image_grid.upscale(s, cell) for s in stages]
  lengths = np.array([len(words)])
  blocks = []
  for j in range(stages[0].shape[0]):
    row = image_grid.tile(np.stack([s[j] for s in stages])[None])
    blocks += [row, _strip(row.shape[1], [f'{s} px' for s in sizes], cell)]
    for r, maps in enumerate(result.attention):
      # Stage r + 1 is the image this attention produced: [T, H, W] maps over it.
      att = image_grid.attention_grid(stages[r + 1][j:j + 1],
                                      np.moveaxis(maps[index, j], -1, 0)[None],
                                      lengths, len(words))
      labels = [f'stage {r + 2}'] + list(words)
      blocks += [att, _strip(att.shape[1], labels, cell)]
    blocks.append(np.full((_GAP, 1, 3), 255, np.uint8))
  return _stack(blocks[:-1])


# ----------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m mirrorgan_jax.sample_cli', allow_abbrev=False,
      description='Generate images from sentences with a trained MirrorGAN.',
      epilog='Config overrides (--config.a.b=value) follow --config.')
  parser.add_argument('--workdir', required=True,
                      help='run directory of mirrorgan_jax.main')
  parser.add_argument('--text', action='append', default=[],
                      help='a caption (repeat for more)')
  parser.add_argument('--captions-file', '--captions_file', dest='captions_file',
                      help='text file, one caption per line')
  parser.add_argument('--num-samples', '--num_samples', dest='num_samples', type=int,
                      default=8, help='images per caption (default 8)')
  parser.add_argument('--seed', type=int, default=0, help='noise seed (default 0)')
  parser.add_argument('--out', help='output directory (default <workdir>/samples)')
  parser.add_argument('--drop-unknown-words', '--drop_unknown_words',
                      dest='drop_unknown_words', action='store_true',
                      help='leave words outside the vocabulary out (reported)')
  parser.add_argument('--batch-size', '--batch_size', dest='batch_size', type=int,
                      help='rows per compiled call (default config eval.batch_size)')
  parser.add_argument('--config', help="config file (default: the run's config.json)")
  return parser


def read_captions(texts: Sequence[str], captions_file: str | None) -> list[str]:
  """The --text captions, then the non-blank lines of the captions file."""
  captions = list(texts)
  if captions_file:
    path = epath.Path(captions_file)
    if not path.is_file():
      raise FileNotFoundError(f'captions file not found: {path}')
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
      raise ValueError(f'captions file {path} has no caption (one per line)')
    captions += lines
  if not captions:
    raise ValueError('no caption: give --text "..." or --captions-file')
  return captions


def _stem(index: int, words: Sequence[str]) -> str:
  return f'{index:02d}_' + '_'.join(words[:8])


def _describe(report: sampling.CaptionReport) -> list[str]:
  lines = [f'caption: {report.text}', f'words: {" ".join(report.words)}']
  if report.dropped:
    lines.append(f'dropped unknown words: {sampling.summarize(report.dropped)}')
  if report.truncated:
    lines.append(f'truncated (over words_num): {sampling.summarize(report.truncated)}')
  if report.unreadable:
    lines.append(f'left out (no ASCII form): {" ".join(report.unreadable)}')
  return lines


def write_samples(result: sampling.SampleResult, out: epath.Path, meta: dict) -> dict:
  """Writes the figures, texts and `samples.json` of `result` to `out`.

  Args:
    result: `sampling.sample` output.
    out: output directory (created).
    meta: extra fields for `samples.json` (workdir, decoder, ...).
  Returns:
    The `samples.json` content.
  """
  out.mkdir(parents=True, exist_ok=True)
  entries = []
  for i, report in enumerate(result.captions):
    stem = _stem(i, report.words)
    image_grid.save_png(caption_figure(result, i), out / f'{stem}.png')
    lines = _describe(report) + ['STREAM redescriptions of the final images:'] + [
        f'  sample {j + 1}: {text}' for j, text in enumerate(result.redescriptions[i])]
    (out / f'{stem}.txt').write_text('\n'.join(lines) + '\n')
    entries.append({
        'caption': report.text, 'words': report.words,
        'ids': [int(t) for t in result.ids[i, :result.lengths[i]]],
        'dropped': report.dropped, 'truncated': report.truncated,
        'png': f'{stem}.png', 'txt': f'{stem}.txt',
        'redescriptions': result.redescriptions[i]})
  summary = {**meta, 'checkpoint_step': result.step, 'seed': result.seed,
             'num_samples': int(result.images[0].shape[1]),
             'stage_sizes': [int(s.shape[2]) for s in result.images], 'captions': entries}
  (out / 'samples.json').write_text(json.dumps(summary, indent=1) + '\n')
  return summary


def run(args: argparse.Namespace, overrides: Sequence[str]) -> dict:
  """Loads the run, samples, writes the files, prints the redescriptions.

  Args:
    args: the parsed flags; overrides: `--config.x=y` arguments.
  Returns:
    The `samples.json` content.
  """
  if overrides and not args.config:
    raise ValueError(f'config overrides {list(overrides)} need --config')
  if args.num_samples < 1:
    raise ValueError(f'--num-samples must be >= 1, got {args.num_samples}')
  captions = read_captions(args.text, args.captions_file)
  workdir = epath.Path(args.workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f'workdir not found: {workdir}')
  config = config_loading.load_config(args.config, overrides, 'sample') if args.config else None
  trained = trained_model.load(workdir, config)
  result = sampling.sample(trained, captions, args.num_samples, args.seed,
                           drop_unknown=args.drop_unknown_words,
                           batch_size=args.batch_size)
  beam = trained.config.model.captioner.beam_size
  decoder = f'beam search (beam {beam})' if beam > 1 else 'greedy'
  out = epath.Path(args.out or workdir / 'samples')
  summary = write_samples(result, out, {'workdir': str(workdir), 'decoder': decoder})
  for report, entry in zip(result.captions, summary['captions']):
    lines = [line for line in _describe(report) if not line.startswith('words:')]
    lines.append(f'STREAM redescriptions ({decoder}):')
    lines += [f'  sample {j + 1}: {text}'
              for j, text in enumerate(entry['redescriptions'])]
    print('\n'.join(lines + [f'  -> {out / entry["png"]}', '']))
  return summary


def main(argv: Sequence[str]) -> int:
  """Runs the CLI. Args: argv with the program name first. Returns: exit code."""
  args, extra = _parser().parse_known_args(list(argv[1:]))
  bad = [a for a in extra if not a.startswith('--config.')]
  if bad:
    _parser().error(f'unrecognized arguments: {" ".join(bad)}')
  console.quiet_libraries()
  try:
    run(args, extra)
  except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
    print(f'error: {cli_errors.one_line(e)}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
