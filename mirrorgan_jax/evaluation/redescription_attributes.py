"""Attribute accuracy of STREAM redescriptions on captioned_shapes.

A redescription (the captioner's caption of an image) is read back with the
caption generator's own vocabulary tables (`data/shapes_scene.py`) and the
attributes it states are compared with the image's ground truth.

Reading a caption (`parse`), on its `shapes_scene.tokenize` tokens:
  - Objects are the maximal runs of object words (colour, size and shape names
    and their synonyms, e.g. 'big', 'tiny', 'disk', 'donut'): 'a small red star
    left of a blue ring' mentions 'small red star', then 'blue ring'. Colour,
    size and shape are those of the FIRST run (its first word of each kind);
    with no object word all object attributes are unstated.
  - Position and relation phrases (`POSITION_PHRASES`, `RELATION_PHRASES`) are
    matched left to right, the longest phrase first, so 'on the left of' (a
    relation) is never read as 'on the left' (a position). The first object's
    position is the first position phrase before the second object's run
    ('on the left there is a red star', 'a red star on the left and a blue
    ring on the right'); a relation states no position.
  - The background is the first background colour word anywhere (background
    colours are never object colours, so such a word cannot name an object).
In a two-object caption the first object mentioned may be either object of the
scene ('B right of A' describes 'A left of B'), so object attributes are only
scored on one-object scenes (below).

Scoring protocol (`score`), mirroring the oracle's (`phases/oracle.py`):
  - Ground truth: the TFDS labels of `shapes_labels.test_records` (class
    indices in the `shapes_scene` orders; object attributes of `objects[0]`).
  - Colour, shape, size and position are scored on one-object scenes only;
    the background on every image (`oracle_accuracy.real_mask`).
  - Images generated from captions (`source_captions`): an attribute is scored
    only where the caption the image was made from states it
    (`oracle_accuracy.mention_mask`), as the oracle scores generated images;
    an attribute the input caption leaves open has no ground truth.
  - An attribute the redescription does not state counts as WRONG: a
    captioner that says nothing scores 0, not "no error".
"""

from typing import Mapping, Sequence

import numpy as np

from mirrorgan_jax.evaluation import oracle_accuracy
from mirrorgan_jax.data import shapes_scene

OBJECT_ATTRIBUTES = oracle_accuracy.OBJECT_ATTRIBUTES  # shape, color, size, position
ATTRIBUTES = OBJECT_ATTRIBUTES + ('background',)
Parsed = Mapping[str, str | None]  # {attribute: class name, or None if unstated}

# Class names in label order (the TFDS ClassLabel and oracle orders).
_CLASS_NAMES = {
    'shape': tuple(shapes_scene.SHAPES), 'color': tuple(shapes_scene.COLORS),
    'size': tuple(shapes_scene.SIZES), 'position': tuple(shapes_scene.POSITIONS),
    'background': tuple(shapes_scene.BACKGROUNDS),
}
_UNSTATED = -1  # Label index of an unstated attribute: equals no true label.


def _word_table(attribute: str, synonyms: Mapping[str, Sequence[str]]
                ) -> dict[str, str]:
  """{word: class name} of an attribute: every name and its synonyms."""
  return {w: name for name in _CLASS_NAMES[attribute]
          for w in (name, *synonyms.get(name, ()))}


_OBJECT_WORDS = {
    'color': _word_table('color', {}),
    'size': _word_table('size', shapes_scene.SIZE_WORDS),
    'shape': _word_table('shape', shapes_scene.SHAPE_WORDS),
}
_BACKGROUND_WORDS = _word_table('background', shapes_scene.BACKGROUND_WORDS)
# (phrase tokens, position name or None for a relation), longest first.
_PHRASES = sorted(
    [(tuple(shapes_scene.tokenize(p)), name)
     for name, phrases in shapes_scene.POSITION_PHRASES.items() for p in phrases]
    + [(tuple(shapes_scene.tokenize(p)), None)
       for phrases in shapes_scene.RELATION_PHRASES.values() for p in phrases],
    key=lambda item: -len(item[0]))


def _object_runs(tokens: Sequence[str]) -> list[tuple[int, int]]:
  """[start, end) of each maximal run of object words."""
  runs = []
  for i, token in enumerate(tokens):
    if any(token in table for table in _OBJECT_WORDS.values()):
      if runs and runs[-1][1] == i:
        runs[-1] = (runs[-1][0], i + 1)
      else:
        runs.append((i, i + 1))
  return runs


def _phrases(tokens: Sequence[str]) -> list[tuple[int, str | None]]:
  """(start, position name or None for a relation) of each phrase, left to right."""
  found, i = [], 0
  while i < len(tokens):
    match = next(((words, name) for words, name in _PHRASES
                  if tuple(tokens[i:i + len(words)]) == words), None)
    if match is None:
      i += 1
    else:
      found.append((i, match[1]))
      i += len(match[0])
  return found


def parse(caption: str) -> dict[str, str | None]:
  """The attributes a caption states about its first object and the background.

  Args:
    caption: a caption or decoded redescription (any case, punctuation ignored).
  Returns:
    {attribute: class name or None} for ATTRIBUTES (see the module docstring),
    e.g. 'a big red disk on the left of a blue square on a gray background' ->
    {'shape': 'circle', 'color': 'red', 'size': 'large', 'position': None,
    'background': 'grey'}.
  """
  tokens = shapes_scene.tokenize(caption)
  out = dict.fromkeys(ATTRIBUTES)
  runs = _object_runs(tokens)
  if runs:
    start, end = runs[0]
    for a, table in _OBJECT_WORDS.items():
      out[a] = next((table[w] for w in tokens[start:end] if w in table), None)
    second = runs[1][0] if len(runs) > 1 else len(tokens)
    out['position'] = next((name for i, name in _phrases(tokens)
                            if name is not None and i < second), None)
  out['background'] = next((_BACKGROUND_WORDS[w] for w in tokens
                            if w in _BACKGROUND_WORDS), None)
  return out


def score(parsed: Sequence[Parsed], labels: Mapping[str, np.ndarray],
          num_objects: np.ndarray, source_captions: Sequence[str] | None = None
          ) -> dict[str, tuple[float, int]]:
  """Per-attribute accuracy of parsed redescriptions against ground truth.

  Args:
    parsed: `parse` of the redescription of each image [N].
    labels: {attribute: int [N]} true class indices, for every one of
      ATTRIBUTES (e.g. `shapes_labels.test_records(...).labels`, indexed by
      the images' test indices).
    num_objects: int [N], objects in each image's scene (1 or 2).
    source_captions: for generated images, the caption each was made from; an
      attribute is then scored only where that caption states it. None: real
      images, scored as `oracle_accuracy.real_mask`.
  Returns:
    {attribute: (accuracy, number scored)} for ATTRIBUTES; an unstated
    attribute counts as wrong; accuracy is NaN when nothing is scored.
  """
  num_objects = np.asarray(num_objects)
  mask = (oracle_accuracy.real_mask(num_objects) if source_captions is None
          else oracle_accuracy.mention_mask(source_captions, num_objects))
  predictions = {
      a: np.array([_UNSTATED if p[a] is None else _CLASS_NAMES[a].index(p[a])
                   for p in parsed], np.int64)
      for a in ATTRIBUTES}
  return oracle_accuracy.accuracy(predictions, labels, mask)


def stated_fraction(parsed: Sequence[Parsed], num_objects: np.ndarray,
                    source_captions: Sequence[str] | None = None) -> dict[str, float]:
  """{attribute: fraction of the scored redescriptions that state it} (NaN: none scored).

  With `score`'s strict accuracy (unstated = wrong), accuracy / stated is the
  accuracy of what the captioner does say: a greedy caption of a one-object
  image may leave out the background or the position, which some true
  captions do too. Arguments as `score`.
  """
  num_objects = np.asarray(num_objects)
  mask = (oracle_accuracy.real_mask(num_objects) if source_captions is None
          else oracle_accuracy.mention_mask(source_captions, num_objects))
  out = {}
  for a in ATTRIBUTES:
    said = np.array([p[a] is not None for p in parsed], bool)[mask[a]]
    out[a] = float(said.mean()) if said.size else float('nan')
  return out


def attribute_accuracy(captions: Sequence[str], labels: Mapping[str, np.ndarray],
                       num_objects: np.ndarray,
                       source_captions: Sequence[str] | None = None
                       ) -> dict[str, float]:
  """{attribute: accuracy} of caption strings (e.g. a periodic in-training score).

  `score` of `parse` of each caption, without the counts; arguments as `score`.
  """
  return {a: acc for a, (acc, _) in score(
      [parse(c) for c in captions], labels, num_objects, source_captions).items()}
