"""A tiny TFDS dataset whose examples identify themselves, for pipeline tests.

Example i of a split has a solid image whose red channel is i (so a batch tells
which examples it holds), 4 captions 'item<i> caption<j> ...' (caption 3 is 24
words long, to exercise the length cap) and class id i % 5.
"""

import numpy as np
import tensorflow_datasets as tfds

SIZES = {'train': 100, 'test': 21}
CAPTIONS = 4
LONG_CAPTION = ' '.join(f'w{k}' for k in range(24))


def caption(i: int, j: int) -> str:
  """Caption j of example i."""
  return LONG_CAPTION if j == 3 else f'item{i} caption{j} of the fixture'


class PipelineFixture(tfds.core.GeneratorBasedBuilder):
  """Self-identifying examples with the common image/captions/class_id features."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(32, 32, 3), encoding_format='png'),
            'captions': tfds.features.Sequence(tfds.features.Text()),
            'class_id': np.int64,
        }))

  def _split_generators(self, dl_manager):
    return {name: self._generate_examples(n) for name, n in SIZES.items()}

  def _generate_examples(self, n):
    for i in range(n):
      image = np.zeros((32, 32, 3), np.uint8)
      image[..., 0] = i
      yield i, {'image': image, 'class_id': i % 5,
                'captions': [caption(i, j) for j in range(CAPTIONS)]}
