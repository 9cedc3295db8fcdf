"""TFDS builder `captioned_shapes`: the built-in, offline, procedural dataset.

Importing this module registers the builder, after which

  tfds.builder('captioned_shapes/64', data_dir=...).download_and_prepare()

renders the dataset with no network access. Example i of split s is a pure
function of (SEED, s, i): the scene comes from `np.random.default_rng([SEED,
split_id, i, 0])` and its captions from `[SEED, split_id, i, 1]`, so builds are
byte-identical, any generation order gives the same examples, the `tiny` config
holds the first examples of `64`, and `256` draws the same scenes with the same
captions at 256 px. Scenes, rendering and captions live in `shapes_scene`.
"""

import dataclasses

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from mirrorgan_jax.data import shapes_scene

SEED = 20190616  # Fixed: the dataset is defined by it.
SPLIT_IDS = {'train': 0, 'test': 1}


@dataclasses.dataclass(eq=False)
class CaptionedShapesConfig(tfds.core.BuilderConfig):
  """A size of the dataset.

  Attributes:
    image_size: image side in pixels.
    num_train: train examples.
    num_test: test examples.
    captions_per_image: captions stored for each image.
  """
  image_size: int = 64
  num_train: int = 20_000
  num_test: int = 2_000
  captions_per_image: int = 8

  def __post_init__(self):
    if (self.image_size < 8 or self.num_train < 0 or self.num_test < 0
        or self.captions_per_image < 1):
      raise ValueError(f'invalid captioned_shapes config {self}: need image_size >= 8, '
                       'num_train/num_test >= 0 and captions_per_image >= 1')


def make_example(split: str, index: int,
                 config: CaptionedShapesConfig) -> tuple[str, dict]:
  """Generates example `index` of `split`, independently of every other example.

  Args:
    split: 'train' or 'test'.
    index: example index within the split.
    config: sets the image size and the number of captions.
  Returns:
    (key, example): the example has the features of `CaptionedShapes._info`,
    its image a uint8 array [S, S, 3].
  """
  if split not in SPLIT_IDS:
    raise ValueError(f'unknown split {split!r}; expected one of {list(SPLIT_IDS)}')
  seed = [SEED, SPLIT_IDS[split], index]
  scene = shapes_scene.sample_scene(np.random.default_rng(seed + [0]))
  texts = shapes_scene.captions(scene, np.random.default_rng(seed + [1]),
                                config.captions_per_image)
  key = f'{split}_{index:06d}'
  first = scene.objects[0]
  return key, {
      'image': shapes_scene.render(scene, config.image_size),
      'captions': texts,
      'objects': [{'shape': o.shape, 'color': o.color, 'size': o.size,
                   'position': o.position} for o in scene.objects],
      'relation': scene.relation,
      'background': scene.background,
      'class_id': shapes_scene.class_id(first.shape, first.color),
      'key': key,
  }


class CaptionedShapes(tfds.core.GeneratorBasedBuilder):
  """Procedural images of one or two coloured shapes, 8 true captions each."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      CaptionedShapesConfig(name='64', description='64 px, 20,000 train / 2,000 test.',
                            image_size=64, num_train=20_000, num_test=2_000),
      CaptionedShapesConfig(name='256', description='256 px, 20,000 train / 2,000 test.',
                            image_size=256, num_train=20_000, num_test=2_000),
      CaptionedShapesConfig(name='tiny', description='64 px, 96 train / 32 test (tests).',
                            image_size=64, num_train=96, num_test=32),
  ]
  DEFAULT_CONFIG_NAME = '64'

  def _info(self) -> tfds.core.DatasetInfo:
    """Declares the features (built directly: this builder lives outside tfds)."""
    size = self.builder_config.image_size
    label = tfds.features.ClassLabel
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(size, size, 3), encoding_format='png'),
            'captions': tfds.features.Sequence(
                tfds.features.Text(), length=self.builder_config.captions_per_image),
            'objects': tfds.features.Sequence({
                'shape': label(names=shapes_scene.SHAPES),
                'color': label(names=list(shapes_scene.COLORS)),
                'size': label(names=shapes_scene.SIZES),
                'position': label(names=shapes_scene.POSITIONS),
            }),
            'relation': label(names=shapes_scene.RELATIONS),
            'background': label(names=list(shapes_scene.BACKGROUNDS)),
            'class_id': tfds.features.Scalar(dtype=np.int64),
            'key': tfds.features.Text(),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    """Two splits; nothing is downloaded."""
    del dl_manager
    cfg = self.builder_config
    return {'train': self._generate_examples('train', cfg.num_train),
            'test': self._generate_examples('test', cfg.num_test)}

  def _generate_examples(self, split: str, num: int):
    """Yields (key, example) for indices 0..num-1 of `split`."""
    for index in range(num):
      key, example = make_example(split, index, self.builder_config)
      # PIL's PNG encoder is ~3x faster than the TF op TFDS uses for arrays.
      example['image'] = PIL.Image.fromarray(example['image'])
      yield key, example
