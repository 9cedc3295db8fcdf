"""Redescription attribute accuracy (evaluation/redescription_attributes.py).

Expected attributes are written out by hand or taken from the sampled scenes
that `shapes_scene.captions` describes; expected accuracies are counted by hand.
"""

import numpy as np
import pytest

from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import shapes_labels
from mirrorgan_jax.data import shapes_scene
from mirrorgan_jax.evaluation import eval_protocol
from mirrorgan_jax.evaluation import redescription_attributes as ra

def _attrs(shape=None, color=None, size=None, position=None, background=None):
  return {'shape': shape, 'color': color, 'size': size, 'position': position,
          'background': background}


@pytest.mark.parametrize('caption, want', [
    ('a big red disk on the left on a gray background',
     _attrs('circle', 'red', 'large', 'left', 'grey')),
    ('on the left side there is a tiny cyan donut',
     _attrs('ring', 'cyan', 'small', 'left')),
    ('A large orange heart at the top of the image, on a white backdrop.',
     _attrs('heart', 'orange', 'large', 'top', 'white')),
    ('a black background with a little brown diamond in the middle of the image',
     _attrs('diamond', 'brown', 'small', 'center', 'black')),
    ('the big yellow star sits in the lower part and the background is grey',
     _attrs('star', 'yellow', 'large', 'bottom', 'grey')),
    # Two objects: the first one mentioned; relations state no position.
    ('the tiny cyan donut is on the left of the purple square',
     _attrs('ring', 'cyan', 'small')),
    ('a green cross to the right of a small pink circle on a black backdrop',
     _attrs('cross', 'green', background='black')),
    ('a blue triangle over a red heart in the center', _attrs('triangle', 'blue')),
    ('red star left of blue ring', _attrs('star', 'red')),
    ('two shapes: a red star at the top and a blue ring near the bottom',
     _attrs('star', 'red', position='top')),
    ('a red star and a blue ring on the right', _attrs('star', 'red')),
    # Nothing, or only part, stated.
    ('the image shows nothing', _attrs()),
    ('', _attrs()),
    ('<end>', _attrs()),
    ('on the left on a white background', _attrs(background='white')),
    ('a small red', _attrs(color='red', size='small')),
])
def test_parse_hand_written_captions(caption, want):
  assert ra.parse(caption) == want


def test_parse_every_synonym():
  tables = {'shape': (shapes_scene.SHAPE_WORDS, 'a blue {}'),
            'size': (shapes_scene.SIZE_WORDS, 'a {} blue star'),
            'background': (shapes_scene.BACKGROUND_WORDS, 'a star on a {} background')}
  for attribute, (table, template) in tables.items():
    for name, words in table.items():
      for word in words:
        caption = template.format(word)
        assert ra.parse(caption)[attribute] == name, caption
  for name in shapes_scene.SHAPES:
    assert ra.parse(f'one {name}')['shape'] == name
  for name in shapes_scene.COLORS:
    assert ra.parse(f'one {name} ring')['color'] == name
  for name, phrases in shapes_scene.POSITION_PHRASES.items():
    for phrase in phrases:
      assert ra.parse(f'a star {phrase}')['position'] == name, phrase
  for phrases in shapes_scene.RELATION_PHRASES.values():
    for phrase in phrases:
      assert ra.parse(f'a star {phrase} a ring')['position'] is None, phrase


def _object_attrs(obj):
  return {'shape': obj.shape, 'color': obj.color, 'size': obj.size,
          'position': obj.position}


def test_parse_recovers_the_scenes_of_generated_captions():
  stated = dict.fromkeys(ra.ATTRIBUTES, 0)
  num_one = 0
  for seed in range(400):
    scene = shapes_scene.sample_scene(np.random.default_rng(seed))
    for caption in shapes_scene.captions(scene, np.random.default_rng(seed + 10_000), 4):
      got = ra.parse(caption)
      assert got['background'] in (None, scene.background), caption
      # The first object mentioned is the one of its colour (colours differ).
      [obj] = [o for o in scene.objects if o.color == got['color']]
      want = _object_attrs(obj)
      assert got['shape'] == want['shape'], caption  # Every caption names both.
      for a in ('size', 'position'):
        assert got[a] in (None, want[a]), (caption, a)
      if len(scene.objects) == 1:
        assert obj is scene.objects[0]
        num_one += 1
        for a, value in got.items():
          stated[a] += value is not None
  # Every attribute is read from a good share of one-object captions.
  assert num_one > 500
  assert stated['shape'] == stated['color'] == num_one
  for a in ('size', 'position', 'background'):
    assert 0.3 * num_one < stated[a] < num_one, (a, stated)


# Hand-made test set: (redescription, true labels, objects); labels are class
# indices: SHAPES circle 0, square 1, star 4, ring 6, heart 7; COLORS red 0,
# blue 5, pink 7, brown 8; SIZES small 0, large 1; POSITIONS left 0, top 2,
# center 4; BACKGROUNDS grey 0, black 1, white 2.
REDESCRIPTIONS = [
    'a big red disk on the left on a gray background',  # All right.
    'a blue square',  # Shape wrong, colour right, the rest unstated.
    'a pink ring on the left on a white background',  # Two objects: background.
    '',  # States nothing.
]
LABELS = {'shape': np.array([0, 4, 6, 7]), 'color': np.array([0, 5, 7, 8]),
          'size': np.array([1, 0, 0, 1]), 'position': np.array([0, 2, 0, 4]),
          'count': np.array([0, 0, 1, 0]), 'background': np.array([0, 1, 2, 2])}
NUM_OBJECTS = np.array([1, 1, 2, 1])


def test_score_real_images_by_hand():
  got = ra.score([ra.parse(c) for c in REDESCRIPTIONS], LABELS, NUM_OBJECTS)
  # Object attributes on images 0, 1 and 3; the background on all four.
  assert got == {'shape': (pytest.approx(1 / 3), 3), 'color': (pytest.approx(2 / 3), 3),
                 'size': (pytest.approx(1 / 3), 3), 'position': (pytest.approx(1 / 3), 3),
                 'background': (0.5, 4)}
  assert ra.attribute_accuracy(REDESCRIPTIONS, LABELS, NUM_OBJECTS) == {
      a: acc for a, (acc, _) in got.items()}


def test_stated_fraction_by_hand():
  parsed = [ra.parse(c) for c in REDESCRIPTIONS]
  # Real: object attributes of images 0, 1, 3 (one object); background of all four.
  assert ra.stated_fraction(parsed, NUM_OBJECTS) == {
      'shape': pytest.approx(2 / 3), 'color': pytest.approx(2 / 3),
      'size': pytest.approx(1 / 3), 'position': pytest.approx(1 / 3), 'background': 0.5}
  sources = ['a red circle', 'a blue star at the top', 'a pink ring left of a green star',
             'a brown heart']
  got = ra.stated_fraction(parsed, NUM_OBJECTS, sources)
  assert got['shape'] == pytest.approx(2 / 3) and got['position'] == 0.0
  assert np.isnan(got['size']) and np.isnan(got['background'])  # No source states them.


def test_score_generated_images_by_hand():
  sources = ['a red circle',  # Shape and colour.
             'a small blue star at the top on a black background',  # Everything.
             'a pink ring left of a green star on a white background',  # Background.
             'a large brown heart on a white background']  # All but position.
  got = ra.score([ra.parse(c) for c in REDESCRIPTIONS], LABELS, NUM_OBJECTS, sources)
  assert got == {'shape': (pytest.approx(1 / 3), 3), 'color': (pytest.approx(2 / 3), 3),
                 'size': (0.0, 2), 'position': (0.0, 1),
                 'background': (pytest.approx(1 / 3), 3)}


def test_saying_nothing_scores_zero_and_nothing_scored_is_nan():
  silent = ra.attribute_accuracy([''] * 4, LABELS, NUM_OBJECTS)
  assert silent == dict.fromkeys(ra.ATTRIBUTES, 0.0)
  two = ra.score([ra.parse('a red circle on a grey background')],
                 {a: v[2:3] for a, v in LABELS.items()}, NUM_OBJECTS[2:3])
  assert all(np.isnan(two[a][0]) and two[a][1] == 0 for a in ra.OBJECT_ATTRIBUTES)
  assert two['background'] == (0.0, 1)  # Grey stated, white true.
  with pytest.raises(ValueError, match='1-D shapes'):
    ra.score([ra.parse('a red circle')], LABELS, NUM_OBJECTS)


def test_eval_glue_decodes_and_follows_the_sample_plan():
  vocab = vocab_lib.Vocabulary(
      [vocab_lib.PAD] + sorted({w for c in REDESCRIPTIONS for w in c.split()}))
  encode = lambda text: [vocab.index[w] for w in text.split()] + [0, 0]
  records = shapes_labels.TestRecords(
      captions=[[c, c] for c in ('a big red circle on the left', 'a blue star',
                                 'a pink ring left of a red star', 'a brown heart')],
      labels=LABELS, num_objects=NUM_OBJECTS)
  plan = eval_protocol.sample_plan(4, 2, 6)  # Images 0 1 2 3 0 1.
  generated = REDESCRIPTIONS + ['a blue square'] * 2
  got = eval_protocol.redescription_attribute_scores(
      vocab, [encode(c) for c in REDESCRIPTIONS], [encode(c) for c in generated],
      records, plan)
  parsed = [ra.parse(c) for c in REDESCRIPTIONS]
  assert got['real'] == (ra.score(parsed, LABELS, NUM_OBJECTS),
                         ra.stated_fraction(parsed, NUM_OBJECTS))
  got = {k: scores for k, (scores, _) in got.items()}
  # Scored (the input captions): shape and colour of samples 0 1 3 4 5, size and
  # position of 0 and 4 (image 0's caption), the background never.
  # Right: sample 0 everything; 1 and 5 ('a blue square' of the blue star) colour.
  background = got['generated'].pop('background')
  assert np.isnan(background[0]) and background[1] == 0
  assert got['generated'] == {
      'shape': (pytest.approx(1 / 5), 5), 'color': (pytest.approx(3 / 5), 5),
      'size': (0.5, 2), 'position': (0.5, 2)}
