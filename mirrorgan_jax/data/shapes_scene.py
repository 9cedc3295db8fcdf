"""Procedural scenes of the captioned_shapes dataset: sampling, rendering, captions.

A scene is a background colour plus one or two non-overlapping objects. Each object
has a shape, a colour, a size and a position, all named from the small lists below;
with two objects the scene also has a relation (the first object is left of / right
of / above / below the second) that holds in the drawn image. The exact hue,
extent, rotation and position are jittered so that the task is not trivial.

Geometry is resolution free: points are (x, y) fractions of the image side with y
pointing down. A position names the cell of a 3 x 3 grid of thirds that holds the
object's area centroid ('left' is the middle-left cell, 'center' the middle one; the
corner cells are never used). A size is the longest side of the object's
axis-aligned bounding box as drawn: 'small' in [0.16, 0.19], 'large' in
[0.27, 0.31] of the image side. Two objects are separated along the relation's axis
by at least `GAP`, so they never overlap.

Pure numpy + PIL, no TensorFlow: evaluation code (an oracle classifier) uses it too.
"""

import colorsys
import dataclasses
import functools
import re

import numpy as np
from PIL import Image
from PIL import ImageDraw

DATASET = 'captioned_shapes'  # The TFDS name; the only dataset with ground-truth attributes.

SHAPES = ('circle', 'square', 'triangle', 'diamond', 'star', 'cross', 'ring', 'heart')
# Object colours (name -> RGB): pairwise >= 80 apart and >= 95 from every background.
COLORS = {
    'red': (215, 35, 35),
    'orange': (245, 135, 20),
    'yellow': (240, 215, 35),
    'green': (40, 170, 60),
    'cyan': (40, 200, 215),
    'blue': (40, 75, 215),
    'purple': (135, 55, 190),
    'pink': (245, 125, 190),
    'brown': (130, 80, 40),
}
BACKGROUNDS = {'grey': (128, 128, 128), 'black': (16, 16, 16), 'white': (240, 240, 240)}
SIZES = ('small', 'large')
POSITIONS = ('left', 'right', 'top', 'bottom', 'center')
# Relation of objects[0] to objects[1]; 'none' for one-object scenes.
RELATIONS = ('none', 'left_of', 'right_of', 'above', 'below')
NUM_CLASSES = len(SHAPES) * len(COLORS)  # class_id ranges over (shape, colour).

# Centre of each position's grid cell, (x, y).
POSITION_CENTERS = {
    'left': (1 / 6, 1 / 2), 'right': (5 / 6, 1 / 2), 'top': (1 / 2, 1 / 6),
    'bottom': (1 / 2, 5 / 6), 'center': (1 / 2, 1 / 2),
}
EXTENT_RANGES = {'small': (0.16, 0.19), 'large': (0.27, 0.31)}
SIZE_THRESHOLD = 0.23  # Extents below are 'small', above 'large'.
JITTER = 0.1  # Max centroid offset from its cell centre (cells are 1/3 wide).
MARGIN = 0.03  # Min distance from an object's bounding box to the image border.
GAP = 0.05  # Min gap between two objects' boxes along the relation's axis.
MAX_ROTATION = 10.0  # Degrees; keeps squares and diamonds (45 deg) apart.
RING_HOLE = 0.5  # Inner / outer radius of a ring.

# Two-object layouts: (position of first, position of second, relation first->second).
_PAIRS = tuple(
    [(a, b, 'left_of') for a, b in (('left', 'center'), ('left', 'right'),
                                    ('center', 'right'))]
    + [(b, a, 'right_of') for a, b in (('left', 'center'), ('left', 'right'),
                                       ('center', 'right'))]
    + [(a, b, 'above') for a, b in (('top', 'center'), ('top', 'bottom'),
                                    ('center', 'bottom'))]
    + [(b, a, 'below') for a, b in (('top', 'center'), ('top', 'bottom'),
                                    ('center', 'bottom'))])
_MAX_TRIES = 100


@dataclasses.dataclass(frozen=True)
class SceneObject:
  """One drawn object.

  Attributes:
    shape, color, size, position: names from SHAPES, COLORS, SIZES, POSITIONS.
    rgb: the jittered fill colour actually drawn.
    xy: area centroid (x, y), fractions of the image side.
    extent: longest side of the drawn bounding box, fraction of the image side.
    rotation: degrees, clockwise on screen, in [-MAX_ROTATION, MAX_ROTATION].
  """
  shape: str
  color: str
  size: str
  position: str
  rgb: tuple[int, int, int]
  xy: tuple[float, float]
  extent: float
  rotation: float


@dataclasses.dataclass(frozen=True)
class Scene:
  """A background plus one or two objects; `relation` is objects[0] -> objects[1]."""
  background: str
  background_rgb: tuple[int, int, int]
  objects: tuple[SceneObject, ...]
  relation: str


def class_id(shape: str, color: str) -> int:
  """Class of a (shape, colour) pair, in [0, NUM_CLASSES)."""
  return SHAPES.index(shape) * len(COLORS) + list(COLORS).index(color)


def position_of(x: float, y: float) -> str | None:
  """Position name whose cell holds the point (x, y); None for corner cells."""
  col, row = min(int(x * 3), 2), min(int(y * 3), 2)
  names = {(0, 1): 'left', (2, 1): 'right', (1, 0): 'top', (1, 2): 'bottom',
           (1, 1): 'center'}
  return names.get((col, row))


def size_of(extent: float) -> str:
  """Size name of a bounding-box extent (fraction of the image side)."""
  return 'small' if extent < SIZE_THRESHOLD else 'large'


# ------------------------------------------------------------------ geometry


def _regular(n: int, radius: float, phase: float) -> np.ndarray:
  """Vertices [n, 2] of a regular n-gon; phase in radians, y down."""
  t = phase + 2 * np.pi * np.arange(n) / n
  return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _centroid(poly: np.ndarray) -> np.ndarray:
  """Area centroid [2] of a simple polygon [K, 2] (shoelace formula)."""
  x, y = poly[:, 0], poly[:, 1]
  xn, yn = np.roll(x, -1), np.roll(y, -1)
  cross = x * yn - xn * y
  area = cross.sum() / 2
  return np.array([((x + xn) * cross).sum(), ((y + yn) * cross).sum()]) / (6 * area)


@functools.cache
def _unit_outline(shape: str) -> tuple[np.ndarray, ...]:
  """Unrotated outline (outer polygon, then holes), centred on its area centroid."""
  up = -np.pi / 2  # Angle of a vertex pointing up (y is down).
  if shape in ('circle', 'ring'):
    polys = [_regular(64, 0.5, 0.0)]
    if shape == 'ring':
      polys.append(_regular(64, 0.5 * RING_HOLE, 0.0))
  elif shape == 'square':
    polys = [_regular(4, 0.5, np.pi / 4)]
  elif shape == 'diamond':
    polys = [_regular(4, 0.5, 0.0)]
  elif shape == 'triangle':
    polys = [_regular(3, 0.5, up)]
  elif shape == 'star':
    radii = np.where(np.arange(10) % 2 == 0, 0.5, 0.5 * 0.45)
    t = up + np.pi * np.arange(10) / 5
    polys = [radii[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)]
  elif shape == 'cross':
    a, b = 0.5, 0.18  # Half length and half width of each arm.
    polys = [np.array([(b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a),
                       (-b, b), (-a, b), (-a, -b), (-b, -b), (-b, -a)])]
  elif shape == 'heart':
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    x = 16 * np.sin(t)**3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    polys = [np.stack([x, y], axis=1) / 34.0]
  else:
    raise ValueError(f'unknown shape {shape!r}; expected one of {SHAPES}')
  center = _centroid(polys[0])
  return tuple(p - center for p in polys)


def _local_outline(shape: str, extent: float, rotation: float) -> list[np.ndarray]:
  """Rotated outline around the centroid, scaled so its box's longest side is `extent`."""
  rad = np.deg2rad(rotation)
  rot = np.array([[np.cos(rad), np.sin(rad)], [-np.sin(rad), np.cos(rad)]])
  polys = [p @ rot for p in _unit_outline(shape)]
  side = (polys[0].max(axis=0) - polys[0].min(axis=0)).max()
  return [p * (extent / side) for p in polys]


def object_outline(obj: SceneObject) -> list[np.ndarray]:
  """Polygons of a placed object: [outer [K, 2], *holes], in image fractions."""
  return [p + np.asarray(obj.xy) for p in
          _local_outline(obj.shape, obj.extent, obj.rotation)]


# ------------------------------------------------------------------ sampling


def _pick(rng: np.random.Generator, options):
  """A uniform choice from a sequence (rng.random() is ~3x faster than integers())."""
  return options[int(rng.random() * len(options))]


def _jitter_rgb(rgb: tuple[int, int, int], rng: np.random.Generator,
                hue: float, sat: float, val: float) -> tuple[int, int, int]:
  """Jitters hue (+-hue turns), saturation and value (x [1-s, 1+s], x [1-v, 1+v])."""
  h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
  h = (h + rng.uniform(-hue, hue)) % 1.0
  s = min(1.0, s * rng.uniform(1 - sat, 1 + sat))
  v = min(1.0, v * rng.uniform(1 - val, 1 + val))
  return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def _sample_xy(rng: np.random.Generator, position: str,
               local: np.ndarray) -> tuple[float, float]:
  """Centroid in `position`'s cell (+-JITTER) keeping the box MARGIN inside."""
  lo, hi = local.min(axis=0), local.max(axis=0)
  xy = []
  for axis, c in enumerate(POSITION_CENTERS[position]):
    low = max(c - JITTER, MARGIN - lo[axis])
    high = min(c + JITTER, 1 - MARGIN - hi[axis])
    xy.append(float(rng.uniform(low, high)))
  return xy[0], xy[1]


def _separated(first: SceneObject, second: SceneObject, relation: str) -> bool:
  """Whether the boxes are GAP apart along the relation's axis, in its order."""
  a, b = object_outline(first)[0], object_outline(second)[0]
  if relation in ('left_of', 'above'):
    a, b = b, a  # Now `b` must come before `a` on the axis.
  axis = 0 if relation in ('left_of', 'right_of') else 1
  return b[:, axis].max() + GAP <= a[:, axis].min()


def sample_scene(rng: np.random.Generator) -> Scene:
  """Samples a scene (names, jittered colours, geometry) from `rng`.

  Args:
    rng: the only source of randomness; equal generator states give equal scenes.
  Returns:
    A Scene with one or two objects of different colours.
  """
  background = _pick(rng, list(BACKGROUNDS))
  level = rng.uniform(-8, 8)
  background_rgb = tuple(int(np.clip(round(c + level), 0, 255))
                         for c in BACKGROUNDS[background])
  if rng.random() < 0.5:
    layout = ((_pick(rng, POSITIONS),), 'none')
  else:
    first, second, relation = _pick(rng, _PAIRS)
    layout = ((first, second), relation)
  positions, relation = layout
  color_names = list(COLORS)
  color_idx = rng.choice(len(color_names), size=len(positions), replace=False)
  for _ in range(_MAX_TRIES):
    objects = []
    for position, ci in zip(positions, color_idx):
      shape = _pick(rng, SHAPES)
      size = _pick(rng, SIZES)
      extent = float(rng.uniform(*EXTENT_RANGES[size]))
      rotation = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
      rgb = _jitter_rgb(COLORS[color_names[ci]], rng, hue=0.012, sat=0.08, val=0.06)
      local = _local_outline(shape, extent, rotation)[0]
      objects.append(SceneObject(
          shape=shape, color=color_names[ci], size=size, position=position,
          rgb=rgb, xy=_sample_xy(rng, position, local), extent=extent,
          rotation=rotation))
    if len(objects) == 1 or _separated(objects[0], objects[1], relation):
      return Scene(background=background, background_rgb=background_rgb,
                   objects=tuple(objects), relation=relation)
  raise RuntimeError(f'could not place two objects for {layout} in {_MAX_TRIES} tries')


# ------------------------------------------------------------------ rendering


def render(scene: Scene, size: int, supersample: int = 4) -> np.ndarray:
  """Draws a scene, anti-aliased by drawing at `supersample` x and box-filtering.

  Args:
    scene: what to draw.
    size: side of the output image in pixels.
    supersample: drawing resolution factor (4 gives 16 coverage levels per pixel).
  Returns:
    uint8 image [size, size, 3].
  """
  if size < 8 or supersample < 1:
    raise ValueError(f'need size >= 8 and supersample >= 1, got {size}, {supersample}')
  big = size * supersample
  image = Image.new('RGB', (big, big), scene.background_rgb)
  draw = ImageDraw.Draw(image)
  for obj in scene.objects:
    outer, *holes = object_outline(obj)
    # Pixel k covers [k, k + 1); PIL fills pixels whose integer point is inside.
    draw.polygon((outer * big - 0.5).ravel().tolist(), fill=obj.rgb)
    for hole in holes:
      draw.polygon((hole * big - 0.5).ravel().tolist(), fill=scene.background_rgb)
  return np.asarray(image.reduce(supersample))  # Box filter: mean of each block.


# ------------------------------------------------------------------ captions

MAX_CAPTION_TOKENS = 18
# Synonym and phrase tables (public: the oracle's protocol and the redescription
# parser of `evaluation.redescription_attributes` read captions with them).
SIZE_WORDS = {'small': ('small', 'little', 'tiny'), 'large': ('large', 'big')}
SHAPE_WORDS = {'circle': ('circle', 'disk'), 'ring': ('ring', 'donut')}
BACKGROUND_WORDS = {'grey': ('grey', 'gray')}
POSITION_PHRASES = {
    'left': ('on the left', 'on the left side', 'at the left', 'in the left part'),
    'right': ('on the right', 'on the right side', 'at the right', 'in the right part'),
    'top': ('at the top', 'near the top', 'in the upper part', 'at the top of the image'),
    'bottom': ('at the bottom', 'near the bottom', 'in the lower part',
               'at the bottom of the image'),
    'center': ('in the center', 'in the middle', 'at the center',
               'in the middle of the image'),
}
RELATION_PHRASES = {
    'left_of': ('to the left of', 'left of', 'on the left of'),
    'right_of': ('to the right of', 'right of', 'on the right of'),
    'above': ('above', 'over'),
    'below': ('below', 'under', 'beneath'),
}
_INVERSE = {'left_of': 'right_of', 'right_of': 'left_of', 'above': 'below',
            'below': 'above'}
_BACKGROUND_PREPOSITIONS = ('on', 'against', 'in front of')
_BACKGROUND_NOUNS = ('background', 'background', 'backdrop')
# {o}: 'a small red star'; {oo}: 'small red star'; {p}: position; {bgpp}: 'on a
# grey background'; {bgnp}: 'a grey background'; {bgw}: 'grey'. Two objects: {a},
# {aa}, {pa}, {b}, {bb}, {pb}; {rel}: first -> second; {inv}: second -> first.
_ONE_OBJECT_TEMPLATES = (
    '{o} {p} {bgpp}', 'there is {o} {p} {bgpp}', '{p} there is {o}',
    '{bgnp} with {o} {p}', 'the image shows {o} {p}', '{o} {bgpp}',
    'a single {oo} {p} {bgpp}', 'the {oo} is {p}',
    '{o} sits {p} and the background is {bgw}',
    'this picture contains {o} {p}', 'we see {o} {p} {bgpp}', 'one {oo} {p}',
    '{o} {p}', 'only one shape, {o} {p}',
)
_TWO_OBJECT_TEMPLATES = (
    '{a} {rel} {b}', 'there is {a} {rel} {b} {bgpp}', '{b} {inv} {a} {bgpp}',
    'the {aa} is {rel} the {bb}', '{a} {pa} and {b} {pb}', '{a} and {b} {bgpp}',
    '{bgnp} with {a} {rel} {b}', 'the image shows {a} {rel} {b}',
    'there are two shapes, {a} and {b}', '{b} is {inv} {a}', 'the {bb} is {inv} the {aa}',
    'two shapes: {a} {pa} and {b} {pb}',
)


def tokenize(caption: str) -> list[str]:
  """The project tokenizer: lower-case `\\w+` runs."""
  return re.findall(r'\w+', caption.lower())


def _with_article(phrase: str) -> str:
  return ('an ' if phrase[0] in 'aeiou' else 'a ') + phrase


def _object_words(obj: SceneObject, rng: np.random.Generator) -> str:
  """'[size] colour shape', the size left out 15% of the time (still true)."""
  shape = _pick(rng, SHAPE_WORDS.get(obj.shape, (obj.shape,)))
  words = f'{obj.color} {shape}'
  if rng.random() >= 0.15:
    words = f'{_pick(rng, SIZE_WORDS[obj.size])} {words}'
  return words


def _fill(template: str, scene: Scene, rng: np.random.Generator) -> str:
  """Fills one template with freshly sampled synonyms."""
  bgw = _pick(rng, BACKGROUND_WORDS.get(scene.background, (scene.background,)))
  bgnp = f'a {bgw} {_pick(rng, _BACKGROUND_NOUNS)}'
  fields = {'bgw': bgw, 'bgnp': bgnp,
            'bgpp': f'{_pick(rng, _BACKGROUND_PREPOSITIONS)} {bgnp}'}
  for key, obj in zip('ab', scene.objects):
    words = _object_words(obj, rng)
    fields[key + key] = words
    fields[key] = _with_article(words)
    fields['p' + key] = _pick(rng, POSITION_PHRASES[obj.position])
  if len(scene.objects) == 1:
    fields.update(o=fields['a'], oo=fields['aa'], p=fields['pa'])
  else:
    fields['rel'] = _pick(rng, RELATION_PHRASES[scene.relation])
    fields['inv'] = _pick(rng, RELATION_PHRASES[_INVERSE[scene.relation]])
  return template.format(**fields)


def captions(scene: Scene, rng: np.random.Generator, n: int) -> list[str]:
  """Samples `n` captions that are true of `scene`, distinct where possible.

  Args:
    scene: the described scene.
    rng: caption randomness (templates, synonyms); separate from the scene's.
    n: number of captions.
  Returns:
    `n` strings of at most MAX_CAPTION_TOKENS tokens each.
  """
  templates = (_ONE_OBJECT_TEMPLATES if len(scene.objects) == 1
               else _TWO_OBJECT_TEMPLATES)
  out, fallback = [], []
  for _ in range(50 * n):
    if len(out) == n:
      break
    text = _fill(_pick(rng, templates), scene, rng)
    if len(tokenize(text)) > MAX_CAPTION_TOKENS:
      continue
    (fallback if text in out else out).append(text)
  if len(out) + len(fallback) < n:
    raise RuntimeError(f'could not sample {n} captions of <= {MAX_CAPTION_TOKENS} tokens')
  return (out + fallback)[:n]
