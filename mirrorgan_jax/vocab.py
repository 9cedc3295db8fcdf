"""Word vocabulary: built from a dataset's captions, stored as JSON, never pickled.

Index 0 is the padding / end token `<end>` (as the reference). Words are ordered
by descending count, then alphabetically, so a vocabulary built twice from the
same captions is identical (the reference's order depended on Python 2 dict
order). The vocabulary travels with the weights that use it: encoders and
captioner checkpoints store a copy.
"""

import collections
import dataclasses
import difflib
import json
import os
from typing import Iterable

from etils import epath

from mirrorgan_jax import tokenizer

PAD = '<end>'
_FORMAT = 'mirrorgan_jax.vocab/1'


class UnknownWordsError(ValueError):
  """Raised by strict encoding when a caption has words outside the vocabulary."""

  def __init__(self, unknown: list[str], suggestions: dict[str, list[str]]):
    self.unknown = unknown
    self.suggestions = suggestions
    hints = '; '.join(
        f'{w!r} (closest: {", ".join(suggestions[w]) or "none"})' for w in unknown)
    super().__init__(
        f'{len(unknown)} word(s) not in the vocabulary: {hints}. Rephrase, or '
        'drop unknown words explicitly (unknown="drop" / --drop-unknown-words).')


@dataclasses.dataclass(frozen=True)
class Encoded:
  """A tokenized caption: ids (no padding) and the words that were dropped."""
  ids: list[int]
  dropped: list[str]


class Vocabulary:
  """Maps words to ids and back; id 0 is padding."""

  def __init__(self, words: list[str]):
    if not words or words[0] != PAD:
      raise ValueError(f'vocabulary must start with the padding token {PAD!r}')
    if len(set(words)) != len(words):
      raise ValueError('vocabulary has duplicate words')
    self.words = list(words)
    self.index = {w: i for i, w in enumerate(self.words)}

  def __len__(self) -> int:
    return len(self.words)

  def __eq__(self, other) -> bool:
    return isinstance(other, Vocabulary) and self.words == other.words

  @classmethod
  def build(cls, captions: Iterable[str]) -> 'Vocabulary':
    """Builds the vocabulary of every token in `captions` (no minimum count, as ref)."""
    counts = collections.Counter()
    for caption in captions:
      counts.update(tokenizer.tokenize(caption))
    counts.pop(PAD, None)
    if not counts:
      raise ValueError('cannot build a vocabulary: the captions contain no words')
    ordered = sorted(counts, key=lambda w: (-counts[w], w))
    return cls([PAD] + ordered)

  def encode(self, text: str, unknown: str = 'error') -> Encoded:
    """Tokenizes `text` and maps it to ids.

    Args:
      text: a caption.
      unknown: 'error' raises `UnknownWordsError` naming every unknown word (with
        the closest vocabulary words); 'drop' leaves them out and reports them in
        `Encoded.dropped`.
    Returns:
      The ids (without padding) and the dropped words.
    Raises:
      ValueError: empty caption, or no known word left after dropping.
    """
    if unknown not in ('error', 'drop'):
      raise ValueError(f"unknown must be 'error' or 'drop', got {unknown!r}")
    tokens = tokenizer.tokenize(text)
    if not tokens:
      raise ValueError(f'caption {text!r} has no words')
    missing = [t for t in tokens if t not in self.index]
    if missing and unknown == 'error':
      distinct = list(dict.fromkeys(missing))
      raise UnknownWordsError(distinct, {w: self.closest(w) for w in distinct})
    ids = [self.index[t] for t in tokens if t in self.index]
    if not ids:
      raise ValueError(
          f'caption {text!r} has no word in the vocabulary (dropped: {missing})')
    return Encoded(ids=ids, dropped=missing)

  def decode(self, ids: Iterable[int]) -> str:
    """Joins the words of `ids`, stopping at the first padding id."""
    words = []
    for i in ids:
      i = int(i)
      if i == 0:
        break
      words.append(self.words[i])
    return ' '.join(words)

  def closest(self, word: str, n: int = 3) -> list[str]:
    """The vocabulary words most similar in spelling to `word`."""
    return difflib.get_close_matches(word, self.words[1:], n=n, cutoff=0.6)

  def to_json(self) -> str:
    return json.dumps({'format': _FORMAT, 'words': self.words}, indent=0)

  def save(self, path: os.PathLike | str) -> None:
    """Writes the vocabulary as JSON (local path or gs://)."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(self.to_json())

  @classmethod
  def load(cls, path: os.PathLike | str) -> 'Vocabulary':
    """Reads a vocabulary written by `save`, with clear errors for bad files."""
    path = epath.Path(path)
    if not path.exists():
      raise FileNotFoundError(f'vocabulary file not found: {path}')
    try:
      data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise ValueError(f'vocabulary file {path} is not valid JSON: {e}') from e
    if not isinstance(data, dict) or data.get('format') != _FORMAT:
      raise ValueError(f'{path} is not a MirrorGAN-JAX vocabulary ({_FORMAT})')
    return cls(data['words'])
