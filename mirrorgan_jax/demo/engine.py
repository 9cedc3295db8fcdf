"""The web demo's model side: a trained run, one compiled program, page-ready results.

`Engine.load(workdir)` reads the run (`trained_model.load`: EMA generator, frozen
text encoder and STREAM captioner, vocabulary) and `generate` answers one request:
a caption, a number of samples (1 to `max_samples`) and a seed. Every request runs
the same compiled program: `sampling.sample` pads captions to `data.words_num`
tokens and the rows (caption x sample) to a batch of `max_samples`, so neither the
caption's length nor the number of samples recompiles. `warm_up` compiles it once,
before the page is served.

Bad captions raise `CaptionProblem`, whose message is meant for the page (unknown
words with the closest vocabulary words, empty captions); dropped and truncated
words are `notices` of a result.
"""

import dataclasses
import time

from etils import epath
import numpy as np

from mirrorgan_jax.infra import image_grid
from mirrorgan_jax import sampling
from mirrorgan_jax import trained_model
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.models import factory

MAX_SAMPLES = 8


class CaptionProblem(ValueError):
  """A caption the demo cannot draw; the message says why, for the page."""


@dataclasses.dataclass(frozen=True)
class StageAttention:
  """The attention of one refinement stage of one sample.

  Attributes:
    size: side in px of the image the stage drew (its maps are drawn over it).
    words: (word, uint8 [S, S, 3] map over the image) per caption word.
    sentence: uint8 [S, S, 3] sentence-attention map, None for 'word_only' GLAM.
  """
  size: int
  words: list[tuple[str, np.ndarray]]
  sentence: np.ndarray | None


@dataclasses.dataclass(frozen=True)
class Sample:
  """One sample: every stage's image, its attention and STREAM's redescription."""
  stages: list[np.ndarray]  # uint8 [S_i, S_i, 3], one per stage.
  attention: list[StageAttention]  # One per refinement stage.
  redescription: str


@dataclasses.dataclass(frozen=True)
class Result:
  """The answer to one request.

  Attributes:
    caption: how the caption was encoded (`sampling.CaptionReport`).
    samples: one `Sample` per requested sample.
    notices: what was left out of the caption (dropped, truncated words).
    seconds: wall time of the request.
  """
  caption: sampling.CaptionReport
  samples: list[Sample]
  notices: list[str]
  seconds: float


def _notices(report: sampling.CaptionReport, words_num: int) -> list[str]:
  out = []
  if report.dropped:
    out.append(f'Left out unknown words: {", ".join(report.dropped)}.')
  if report.truncated:
    out.append(f'The caption is longer than the model reads ({words_num} words): left '
               f'out its last {len(report.truncated)}: "{" ".join(report.truncated)}".')
  if report.unreadable:
    out.append(f'Left out characters without an ASCII form: {" ".join(report.unreadable)}.')
  return out


def _sentence(text: str) -> str:
  return text[:1].upper() + text[1:]


def _overlay(image: np.ndarray, maps: np.ndarray) -> np.ndarray:
  """uint8 [S, S, 3] image and [T, h, w] maps -> uint8 [T, S, S, 3] overlays."""
  out = image_grid.attention_overlays(image[None], maps[None])[0]
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class Engine:
  """A trained run ready to answer demo requests (see the module docstring)."""

  def __init__(self, trained: trained_model.TrainedModel, workdir: str,
               max_samples: int = MAX_SAMPLES):
    if max_samples < 1:
      raise ValueError(f'max_samples must be >= 1, got {max_samples}')
    self.trained, self.workdir, self.max_samples = trained, workdir, max_samples
    self.words_num = trained.config.data.words_num

  @classmethod
  def load(cls, workdir: epath.PathLike, max_samples: int = MAX_SAMPLES) -> 'Engine':
    """Loads the run of `workdir`; errors name the missing or corrupt file."""
    path = epath.Path(workdir)
    if not path.is_dir():
      raise FileNotFoundError(f'workdir not found: {path}')
    return cls(trained_model.load(path), str(path), max_samples)

  @property
  def info(self) -> dict:
    """What the page shows about the run: config name, step, stage sizes."""
    c = self.trained.config
    name = c.data.name + (f'/{c.data.builder_config}' if c.data.builder_config else '')
    return {'config': name, 'workdir': self.workdir, 'step': self.trained.step,
            'stage_sizes': list(factory.stage_sizes(c)), 'glam': c.model.generator.glam, 'words_num': self.words_num}

  def warm_up(self) -> float:
    """Compiles the request program with a caption of the vocabulary; returns seconds."""
    start = time.perf_counter()
    self.generate(self.trained.vocab.words[1], 1, 0)  # Word 0 is the padding token.
    return time.perf_counter() - start

  def generate(self, text: str, num_samples: int, seed: int,
               drop_unknown: bool = False) -> Result:
    """Samples `num_samples` images of `text` with noise seed `seed`.

    Raises:
      CaptionProblem: an empty caption, unknown words (unless `drop_unknown`),
        a number of samples or a seed out of range.
    """
    start = time.perf_counter()
    if not 1 <= num_samples <= self.max_samples:
      raise CaptionProblem(f'The number of samples must be 1 to {self.max_samples}.')
    try:
      result = sampling.sample(self.trained, [text], num_samples, int(seed),
                               drop_unknown=drop_unknown, batch_size=self.max_samples)
    except vocab_lib.UnknownWordsError as e:
      hints = '; '.join(f'"{w}" (closest: {", ".join(e.suggestions[w]) or "none"})'
                        for w in e.unknown)
      raise CaptionProblem(f'Unknown words: {hints}. Tick "drop unknown words" to '
                           'leave them out.') from e
    except sampling.CaptionError as e:
      raise CaptionProblem(_sentence(str(e).split(': ', 1)[-1])) from e
    except ValueError as e:  # A seed out of range.
      raise CaptionProblem(_sentence(str(e))) from e
    report = result.captions[0]
    samples = []
    for j in range(num_samples):
      stages = [image_grid.to_uint8(s[0, j]) for s in result.images]
      attention = []
      for r, maps in enumerate(result.attention):
        image = stages[r + 1]  # The image this stage's attention drew.
        word_maps = _overlay(image, np.moveaxis(maps[0, j], -1, 0)[:len(report.words)])
        sentence = (_overlay(image, result.sentence_attention[r][0, j][None])[0]
                    if result.sentence_attention else None)
        attention.append(StageAttention(image.shape[0], list(zip(report.words, word_maps)),
                                        sentence))
      samples.append(Sample(stages, attention, result.redescriptions[0][j]))
    return Result(report, samples, _notices(report, self.words_num),
                  time.perf_counter() - start)
