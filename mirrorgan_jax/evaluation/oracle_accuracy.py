"""The oracle accuracy of generated captioned_shapes images: which attributes count.

Protocol (used by the evaluator and the in-training semantic probe):
  1. `shapes_labels.test_records(config)` lists the test split in the order of
     the eval set: every image's captions and true labels.
  2. Generated image i is made from caption c of test image i.
  3. Attribute a of image i is scored iff `mentioned(c, num_objects[i])[a]`:
     the caption states it (object attributes only in one-object scenes: in a
     two-object scene nothing says which object is objects[0]); the target is
     test image i's ground-truth label.
  4. The oracle (`artifacts.load_oracle`) predicts labels and `accuracy`
     gives the per-attribute accuracy. Real images are scored with `real_mask`.
"""

from typing import Any, Sequence

import numpy as np

from mirrorgan_jax import tokenizer
from mirrorgan_jax.data import shapes_scene
from mirrorgan_jax.models import oracle as oracle_lib

ATTRIBUTES = oracle_lib.ATTRIBUTES
OBJECT_ATTRIBUTES = oracle_lib.OBJECT_ATTRIBUTES

# Caption words that state an attribute, from the caption generator's tables.
_SIZE_WORDS = frozenset(w for ws in shapes_scene.SIZE_WORDS.values() for w in ws)
_BACKGROUND_WORDS = frozenset(
    [*shapes_scene.BACKGROUNDS, *(w for ws in shapes_scene.BACKGROUND_WORDS.values()
                                  for w in ws)])


def _position_words() -> frozenset[str]:
  """Words of a position's phrases that no other position's phrases use.

  E.g. 'left' (not 'on', 'the', 'side'); 'top' and 'upper'; 'center' and 'middle'.
  """
  words = {p: {w for phrase in v for w in tokenizer.tokenize(phrase)}
           for p, v in shapes_scene.POSITION_PHRASES.items()}
  return frozenset(w for p, ws in words.items() for w in ws
                   if not any(w in words[q] for q in words if q != p))


_POSITION_WORDS = _position_words()



def mentioned(caption: str, num_objects: int) -> dict[str, bool]:
  """Which attributes `caption` states about its image (so which are scored).

  Args:
    caption: a captioned_shapes caption.
    num_objects: objects in the described scene (1 or 2).
  Returns:
    {attribute: bool}. One-object scenes: shape and colour always (every
    caption names them), size / position iff a size / position word occurs.
    Two-object scenes: no object attribute (which object is objects[0] is
    ambiguous). `count` always; `background` iff a background colour word
    occurs (background colours are never object colours).
  """
  if num_objects not in (1, 2):
    raise ValueError(f'num_objects must be 1 or 2, got {num_objects}')
  words = set(tokenizer.tokenize(caption))
  one = num_objects == 1
  return {'shape': one, 'color': one, 'size': one and bool(words & _SIZE_WORDS),
          'position': one and bool(words & _POSITION_WORDS), 'count': True,
          'background': bool(words & _BACKGROUND_WORDS)}


def mention_mask(captions: Sequence[str], num_objects: Sequence[int]
                 ) -> dict[str, np.ndarray]:
  """`mentioned` of caption i with num_objects[i], as {attribute: bool [N]}."""
  if len(captions) != len(num_objects):
    raise ValueError(f'{len(captions)} captions but {len(num_objects)} object counts')
  rows = [mentioned(c, int(n)) for c, n in zip(captions, num_objects)]
  return {a: np.array([r[a] for r in rows], bool) for a in ATTRIBUTES}


def real_mask(num_objects: np.ndarray) -> dict[str, np.ndarray]:
  """Scored on real images: object attributes of one-object scenes, others always."""
  num_objects = np.asarray(num_objects)
  return {a: (num_objects == 1) if a in OBJECT_ATTRIBUTES
          else np.ones(num_objects.shape, bool) for a in ATTRIBUTES}


def accuracy(predictions: dict[str, Any], labels: dict[str, Any],
             mask: dict[str, Any] | None = None) -> dict[str, tuple[float, int]]:
  """Per-attribute accuracy over the entries where the attribute's mask is True.

  Args:
    predictions: {attribute: int [N]} (e.g. `OracleClassifier.predict`).
    labels: {attribute: int [N]} targets, for every predicted attribute.
    mask: {attribute: bool [N]} entries to score (missing / None: all).
  Returns:
    {attribute: (accuracy, number scored)}; accuracy is NaN when none is.
  """
  out = {}
  for a, pred in predictions.items():
    if a not in labels:
      raise ValueError(f'no labels for attribute {a!r} (labels have {sorted(labels)})')
    pred, label = np.asarray(pred), np.asarray(labels[a])
    keep = np.ones(pred.shape, bool) if mask is None or a not in mask else np.asarray(
        mask[a], bool)
    if not pred.shape == label.shape == keep.shape or pred.ndim != 1:
      raise ValueError(f'{a}: predictions {pred.shape}, labels {label.shape} and mask '
                       f'{keep.shape} must be equal 1-D shapes')
    n = int(keep.sum())
    out[a] = (float(np.mean(pred[keep] == label[keep])) if n else float('nan'), n)
  return out


def format_accuracy(result: dict[str, tuple[float, int]]) -> str:
  """'shape 0.9950 (n=1012), ...' for logs."""
  return ', '.join(f'{a} {acc:.4f} (n={n})' for a, (acc, n) in result.items())
