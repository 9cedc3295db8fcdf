"""captioned_shapes: offline `tiny` build, features, determinism, captions vs pixels.

The pixel checks never read the scene metadata. Each image is cut into blobs
(connected pixels far from the border colour). A blob's colour is the palette entry
nearest to its core pixels; its coverage alpha (projection of each pixel onto
background -> blob colour) gives an area centroid, an extent and a shape. Shapes are
told apart by rotation-invariant angular moments of the coverage,
h_n = |sum w e^{i n phi}| / sum w with w = alpha r^2 about the centroid: a shape with
n-fold rotational symmetry has h_k = 0 unless n divides k, so a disc has all h_n = 0,
a triangle a large h_3, a star a large h_5, squares/diamonds/crosses a large h_4, and
a heart (mirror symmetry only) large h_2 and h_3. Among 4-fold shapes the cross has
the larger moment of inertia (J / A^2 = 0.186 for arms 0.36 wide vs 1/6 for a square)
and a square's corners sit at 45 deg (Re e^{4 i phi} < 0) where a diamond's sit at 0.
Captions are parsed with this file's own word lists; every claim is checked.
"""

import dataclasses
import importlib
import re

import numpy as np
import pytest
from scipy import ndimage
import tensorflow as tf
import tensorflow_datasets as tfds

captioned_shapes = importlib.import_module('mirrorgan_jax.data.captioned_shapes')
shapes_scene = importlib.import_module('mirrorgan_jax.data.shapes_scene')

MAX_TOKENS = 18
# Canonical RGB of each word (CSS; brown is saddlebrown); each palette entry must be
# nearest to its own word.
CANONICAL_RGB = {
    'red': (255, 0, 0), 'orange': (255, 165, 0), 'yellow': (255, 255, 0),
    'green': (0, 128, 0), 'cyan': (0, 255, 255), 'blue': (0, 0, 255),
    'purple': (128, 0, 128), 'pink': (255, 192, 203), 'brown': (139, 69, 19),
}
BACKGROUND_WORDS = {'grey': 'grey', 'gray': 'grey', 'black': 'black', 'white': 'white'}
CANONICAL_BACKGROUND = {'grey': (128, 128, 128), 'black': (0, 0, 0),
                        'white': (255, 255, 255)}
SHAPE_WORDS = {'circle': 'circle', 'disk': 'circle', 'square': 'square',
               'triangle': 'triangle', 'diamond': 'diamond', 'star': 'star',
               'cross': 'cross', 'ring': 'ring', 'donut': 'ring', 'heart': 'heart'}
SIZE_WORDS = {'small': 'small', 'little': 'small', 'tiny': 'small', 'large': 'large',
              'big': 'large'}
POSITION_WORDS = {'left': 'left', 'right': 'right', 'top': 'top', 'upper': 'top',
                  'bottom': 'bottom', 'lower': 'bottom', 'center': 'center',
                  'middle': 'center'}
RELATION_WORDS = {'above': 'above', 'over': 'above', 'below': 'below', 'under': 'below',
                  'beneath': 'below'}  # 'left of' / 'right of' are parsed as pairs.
COUNT_WORDS = {'one': 1, 'single': 1, 'only': 1, 'two': 2}
FILLER = {'a', 'an', 'the', 'there', 'is', 'are', 'this', 'image', 'picture', 'shows',
          'contains', 'we', 'see', 'with', 'and', 'of', 'on', 'in', 'at', 'near', 'to',
          'side', 'part', 'background', 'backdrop', 'against', 'front', 'sits', 'shape',
          'shapes'}
# Sizes are the box side: small 0.16-0.19, large 0.27-0.31 of the image; +-1 px at 64.
SMALL_MAX, LARGE_MIN = 0.21, 0.25


def tokens_of(caption):
  return re.findall(r'\w+', caption.lower())


# ------------------------------------------------------------------ pixel analysis


@dataclasses.dataclass
class Blob:
  color: str
  color_dist: float  # RGB distance of the core pixels to the palette colour.
  cx: float  # Area centroid, fractions of the image side.
  cy: float
  extent: float  # Longest side of the alpha > 0.5 box, fraction of the side.
  shape: str

  @property
  def region(self):
    names = {(0, 1): 'left', (2, 1): 'right', (1, 0): 'top', (1, 2): 'bottom',
             (1, 1): 'center'}
    return names.get((int(self.cx * 3), int(self.cy * 3)), 'corner')


def _shape_of(alpha, cx, cy, has_hole):
  """Shape name from coverage `alpha` [S, S] and its centroid (pixels)."""
  if has_hole:
    return 'ring'
  yy, xx = np.mgrid[:alpha.shape[0], :alpha.shape[1]] + 0.5
  z = (xx - cx) + 1j * (yy - cy)
  w = alpha * np.abs(z)**2
  inertia = w.sum() / alpha.sum()**2
  phase = np.exp(1j * np.angle(z))
  moments = [(w * phase**n).sum() / w.sum() for n in range(7)]
  h = np.abs(moments)
  if h[5] > 0.35:
    return 'star'
  if h[3] > 0.45:
    return 'triangle'
  if h[2] > 0.12:
    return 'heart'
  if h[4] > 0.15:
    if inertia > 0.176:  # Between a square's 1/6 and a cross's 0.186.
      return 'cross'
    return 'square' if moments[4].real < 0 else 'diamond'
  if h[1:].max() < 0.1:
    return 'circle'
  return 'unknown'


def analyze(image):
  """Returns (background RGB [3], blobs) of a uint8 image [S, S, 3]."""
  img = image.astype(np.float64)
  size = img.shape[0]
  border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
  background = np.median(border, axis=0)
  dist = np.linalg.norm(img - background, axis=-1)
  # 8-connected: thin star tips touch their body only diagonally.
  labels, count = ndimage.label(dist > 30, structure=np.ones((3, 3)))
  palette = {k: np.array(v, np.float64) for k, v in shapes_scene.COLORS.items()}
  yy, xx = np.mgrid[:size, :size] + 0.5
  blobs = []
  for k in range(1, count + 1):
    comp = labels == k
    core = comp & (dist >= 0.9 * dist[comp].max())
    rgb = img[core].mean(axis=0)
    color = min(palette, key=lambda c: np.linalg.norm(rgb - palette[c]))
    v = rgb - background
    alpha = np.clip((img - background) @ v / (v @ v), 0, 1)
    alpha *= ndimage.binary_dilation(comp)
    area = alpha.sum()
    cx, cy = (alpha * xx).sum() / area, (alpha * yy).sum() / area
    mask = alpha > 0.5
    ys, xs = np.nonzero(mask)
    extent = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    has_hole = ndimage.binary_fill_holes(mask).sum() - mask.sum() >= 3
    blobs.append(Blob(color=color, color_dist=float(np.linalg.norm(rgb - palette[color])),
                      cx=cx / size, cy=cy / size, extent=extent / size,
                      shape=_shape_of(alpha, cx, cy, has_hole)))
  return background, blobs


def background_name(rgb):
  return min(CANONICAL_BACKGROUND,
             key=lambda c: np.linalg.norm(rgb - np.array(CANONICAL_BACKGROUND[c])))


def size_ok(blob, size):
  return blob.extent <= SMALL_MAX if size == 'small' else blob.extent >= LARGE_MIN


def relation_holds(a, b, relation):
  dx, dy = b.cx - a.cx, b.cy - a.cy
  return {'left_of': dx > abs(dy), 'right_of': -dx > abs(dy),
          'above': dy > abs(dx), 'below': -dy > abs(dx)}[relation]


def caption_problems(caption, background, blobs):
  """Every claim of `caption` that the pixels contradict (or that is unparsed)."""
  toks = tokens_of(caption)
  bad = [f'{len(toks)} tokens'] if len(toks) > MAX_TOKENS else []
  mentions = []  # (token index of the colour word, blob)
  used = set()
  for i, tok in enumerate(toks):
    if tok not in shapes_scene.COLORS:
      continue
    nxt = toks[i + 1] if i + 1 < len(toks) else ''
    found = [b for b in blobs if b.color == tok]
    if nxt not in SHAPE_WORDS or len(found) != 1:
      bad.append(f'{tok} {nxt}: {len(found)} blobs of that colour')
      continue
    blob = found[0]
    used.update({i, i + 1})
    if blob.shape != SHAPE_WORDS[nxt]:
      bad.append(f'{tok} {nxt} looks like a {blob.shape}')
    if i > 0 and toks[i - 1] in SIZE_WORDS:
      used.add(i - 1)
      if not size_ok(blob, SIZE_WORDS[toks[i - 1]]):
        bad.append(f'{toks[i - 1]} {tok} {nxt} has extent {blob.extent:.3f}')
    mentions.append((i, blob))
  for i, tok in enumerate(toks):
    if i in used:
      continue
    before = [b for j, b in mentions if j < i]
    after = [b for j, b in mentions if j > i]
    is_pair = tok in ('left', 'right') and i + 1 < len(toks) and toks[i + 1] == 'of'
    if tok in RELATION_WORDS or is_pair:
      rel = RELATION_WORDS.get(tok, f'{tok}_of')
      if not (before and after and relation_holds(before[-1], after[0], rel)):
        bad.append(f'relation {rel} does not hold')
    elif tok in POSITION_WORDS:
      owner = before[-1] if before else (after[0] if after else None)
      if owner is None or owner.region != POSITION_WORDS[tok]:
        bad.append(f'position {tok}: centroid in {owner and owner.region}')
    elif tok in BACKGROUND_WORDS:
      if background_name(background) != BACKGROUND_WORDS[tok]:
        bad.append(f'background {tok} is {background_name(background)}')
    elif tok in COUNT_WORDS:
      if len(blobs) != COUNT_WORDS[tok]:
        bad.append(f'{tok}: {len(blobs)} blobs')
    elif tok not in FILLER:
      bad.append(f'unknown word {tok!r}')
  return bad


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope='module')
def tiny_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  tfds.builder('captioned_shapes/tiny', data_dir=data_dir).download_and_prepare()
  return data_dir


def _read(data_dir):
  builder = tfds.builder('captioned_shapes/tiny', data_dir=data_dir)
  return builder, {split: list(tfds.as_numpy(builder.as_dataset(split=split)))
                   for split in ('train', 'test')}


@pytest.fixture(scope='module')
def tiny(tiny_dir):
  return _read(tiny_dir)


def _all_examples(tiny):
  return [ex for split in ('train', 'test') for ex in tiny[1][split]]


# ------------------------------------------------------------------ tests


def test_tiny_builds_with_declared_features(tiny):
  builder, data = tiny
  assert {s: builder.info.splits[s].num_examples for s in data} == {'train': 96,
                                                                    'test': 32}
  assert {s: len(v) for s, v in data.items()} == {'train': 96, 'test': 32}
  keys = set()
  for ex in _all_examples(tiny):
    assert ex['image'].shape == (64, 64, 3) and ex['image'].dtype == np.uint8
    assert ex['captions'].shape == (8,)
    assert all(isinstance(c, bytes) for c in ex['captions'])
    n = len(ex['objects']['shape'])
    assert n in (1, 2)
    for field in ('shape', 'color', 'size', 'position'):
      assert ex['objects'][field].shape == (n,) and ex['objects'][field].dtype == np.int64
    for field in ('relation', 'background', 'class_id'):
      assert np.ndim(ex[field]) == 0 and ex[field].dtype == np.int64
    assert (ex['relation'] == 0) == (n == 1)  # 'none' exactly for one object.
    keys.add(ex['key'])
  assert len(keys) == 128
  features = builder.info.features
  assert features['objects']['shape'].names == list(shapes_scene.SHAPES)
  assert features['relation'].names[0] == 'none'
  assert features['image'].encoding_format == 'png'


def test_configs_and_default():
  expected = {'64': (64, 20_000, 2_000), '256': (256, 20_000, 2_000),
              'tiny': (64, 96, 32)}
  for name, (size, train, test) in expected.items():
    builder = tfds.builder(f'captioned_shapes/{name}', data_dir='/nonexistent')
    cfg = builder.builder_config
    assert (cfg.image_size, cfg.num_train, cfg.num_test) == (size, train, test)
    assert cfg.captions_per_image == 8
    assert builder.info.features['image'].shape == (size, size, 3)
  default = tfds.builder('captioned_shapes', data_dir='/nonexistent')
  assert default.builder_config.name == '64'


def test_unknown_or_invalid_config_is_a_clear_error():
  with pytest.raises(ValueError, match='bogus not found'):
    tfds.builder('captioned_shapes/bogus', data_dir='/nonexistent')
  with pytest.raises(ValueError, match='image_size >= 8'):
    captioned_shapes.CaptionedShapesConfig(name='bad', image_size=4)
  with pytest.raises(ValueError, match='unknown split'):
    captioned_shapes.make_example(
        'validation', 0, captioned_shapes.CaptionedShapes.BUILDER_CONFIGS[2])


def test_rebuild_gives_identical_records(tiny_dir, tmp_path):
  # Protobuf serialises the feature map in a per-process order, so records are
  # compared as parsed tf.train.Example protos (equal fields, equal PNG bytes).
  tfds.builder('captioned_shapes/tiny', data_dir=tmp_path).download_and_prepare()
  for split in ('train', 'test'):
    name = f'captioned_shapes-{split}.tfrecord-00000-of-00001'
    first, second = [
        [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
            str(d / 'captioned_shapes' / 'tiny' / '1.0.0' / name))]
        for d in (tiny_dir, tmp_path)]
    assert len(first) == len(second) > 0
    assert all(a == b for a, b in zip(first, second))


def test_example_is_a_pure_function_of_split_and_index(tiny):
  configs = {c.name: c for c in captioned_shapes.CaptionedShapes.BUILDER_CONFIGS}
  make = captioned_shapes.make_example
  key, first = make('train', 7, configs['tiny'])
  for i in (9, 3, 0):  # Other examples in between change nothing.
    make('train', i, configs['tiny'])
  _, again = make('train', 7, configs['64'])  # tiny is a prefix of 64.
  np.testing.assert_array_equal(first['image'], again['image'])
  assert first['captions'] == again['captions'] and key == 'train_000007'
  _, other = make('test', 7, configs['tiny'])
  assert not np.array_equal(first['image'], other['image'])
  built = {ex['key']: ex for ex in tiny[1]['train']}[b'train_000007']
  np.testing.assert_array_equal(built['image'], first['image'])
  assert [c.decode() for c in built['captions']] == first['captions']


def test_every_caption_is_true_of_the_pixels(tiny):
  cfg = captioned_shapes.CaptionedShapes.BUILDER_CONFIGS[0]
  images_and_captions = [(ex['image'], [c.decode() for c in ex['captions']])
                         for ex in _all_examples(tiny)]
  for i in range(500, 800):  # More scenes from the 64 config, without a build.
    _, ex = captioned_shapes.make_example('test', i, cfg)
    images_and_captions.append((ex['image'], ex['captions']))
  failures = []
  for image, captions in images_and_captions:
    background, blobs = analyze(image)
    assert all(b.color_dist < 40 for b in blobs), blobs
    assert len(captions) == 8
    for caption in captions:
      bad = caption_problems(caption, background, blobs)
      if bad:
        failures.append((caption, bad))
  assert not failures, failures[:10]


def test_labels_and_class_ids_agree_with_pixels(tiny):
  info = tiny[0].info.features

  def name(field, value):
    return info['objects'][field].int2str(int(value))

  class_of = {}
  colours_seen = set()
  for ex in _all_examples(tiny):
    background, blobs = analyze(ex['image'])
    by_colour = {b.color: b for b in blobs}
    objects = ex['objects']
    assert len(blobs) == len(objects['color'])
    label = info['background'].int2str(int(ex['background']))
    assert background_name(background) == label
    for k in range(len(blobs)):
      blob = by_colour[name('color', objects['color'][k])]
      assert blob.shape == name('shape', objects['shape'][k])
      assert blob.region == name('position', objects['position'][k])
      assert size_ok(blob, name('size', objects['size'][k]))
      colours_seen.add(blob.color)
    relation = info['relation'].int2str(int(ex['relation']))
    if relation != 'none':
      first = by_colour[name('color', objects['color'][0])]
      second = by_colour[name('color', objects['color'][1])]
      assert relation_holds(first, second, relation)
    pair = (int(objects['shape'][0]), int(objects['color'][0]))
    assert class_of.setdefault(pair, int(ex['class_id'])) == int(ex['class_id'])
  assert len(set(class_of.values())) == len(class_of)  # One id per (shape, colour).
  assert all(0 <= c < shapes_scene.NUM_CLASSES for c in class_of.values())
  assert len(colours_seen) >= 8


def test_palette_is_named_right_and_distinct():
  colours = {k: np.array(v, float) for k, v in shapes_scene.COLORS.items()}
  assert len(colours) >= 8 and len(shapes_scene.SHAPES) >= 8
  for name, rgb in colours.items():
    nearest = min(CANONICAL_RGB, key=lambda c: np.linalg.norm(rgb - CANONICAL_RGB[c]))
    assert nearest == name
  names = list(colours)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      assert np.linalg.norm(colours[a] - colours[b]) >= 70, (a, b)
    for bg in shapes_scene.BACKGROUNDS.values():
      assert np.linalg.norm(colours[a] - np.array(bg)) >= 90, (a, bg)
  for bg, rgb in shapes_scene.BACKGROUNDS.items():
    assert background_name(np.array(rgb, float)) == bg


def test_caption_lengths_and_vocabulary():
  vocab, longest = set(), 0
  for i in range(1500):
    scene = shapes_scene.sample_scene(np.random.default_rng([1, i]))
    for caption in shapes_scene.captions(scene, np.random.default_rng([2, i]), 8):
      toks = tokens_of(caption)
      longest = max(longest, len(toks))
      vocab.update(toks)
  assert longest <= MAX_TOKENS
  assert 50 <= len(vocab) <= 120, sorted(vocab)
  known = (set(shapes_scene.COLORS) | set(BACKGROUND_WORDS) | set(SHAPE_WORDS)
           | set(SIZE_WORDS) | set(POSITION_WORDS) | set(RELATION_WORDS)
           | set(COUNT_WORDS) | FILLER)
  assert vocab <= known, vocab - known


def test_render_does_not_depend_on_caption_sampling():
  scene = shapes_scene.sample_scene(np.random.default_rng([3, 0]))
  before = shapes_scene.render(scene, 64)
  shapes_scene.captions(scene, np.random.default_rng(0), 8)
  np.testing.assert_array_equal(before, shapes_scene.render(scene, 64))
  big = shapes_scene.render(scene, 256)
  assert big.shape == (256, 256, 3) and big.dtype == np.uint8
  # Box-filtering the 256 px image gives the 64 px one up to edge coverage.
  diff = np.abs(big.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3)) - before)
  assert diff.mean() < 0.5 and diff.max() < 64
  with pytest.raises(ValueError, match='size >= 8'):
    shapes_scene.render(scene, 4)


def test_position_and_size_helpers():
  assert shapes_scene.position_of(0.1, 0.5) == 'left'
  assert shapes_scene.position_of(0.5, 0.9) == 'bottom'
  assert shapes_scene.position_of(0.5, 0.5) == 'center'
  assert shapes_scene.position_of(0.1, 0.1) is None
  assert shapes_scene.size_of(0.17) == 'small' and shapes_scene.size_of(0.29) == 'large'
  assert shapes_scene.class_id('circle', 'red') == 0
  assert shapes_scene.class_id('heart', 'brown') == shapes_scene.NUM_CLASSES - 1
