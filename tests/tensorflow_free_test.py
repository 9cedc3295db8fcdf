"""The modules that neither read nor write a dataset do not import TensorFlow.

TensorFlow costs a process about 530 MiB of host memory and seconds of start-up;
only tf.data needs it. Sampling (`sample_cli`), the GAN train step and the speed
benchmark's GAN and sampling rows must run without it. Each check runs in a fresh
interpreter, since this test process has imported TensorFlow already.
"""

import subprocess
import sys

import pytest

_CHECK = """
import sys
import {module}
loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets'))
print(' '.join(loaded[:5]))
"""


@pytest.mark.parametrize('module', [
    'mirrorgan_jax.sample_cli',
    'mirrorgan_jax.phases.gan_step',
    'mirrorgan_jax.benchmark.train_speed',
    'mirrorgan_jax.trained_model',
    'mirrorgan_jax.evaluation.attribute_reading',
    'mirrorgan_jax.data.shapes_scene',
])
def test_module_does_not_import_tensorflow(module):
  result = subprocess.run([sys.executable, '-c', _CHECK.format(module=module)],
                          capture_output=True, text=True, check=True, timeout=300)
  assert result.stdout.strip() == '', f'{module} imports {result.stdout.strip()}'


def test_input_pipeline_registers_every_builder():
  """The data package no longer registers builders on import; input_pipeline does."""
  check = ("import tensorflow_datasets as tfds\n"
           "from mirrorgan_jax.data import input_pipeline\n"
           "print(sorted(set(tfds.list_builders()) & "
           "{'captioned_shapes', 'cub', 'coco2014_captions'}))\n")
  result = subprocess.run([sys.executable, '-c', check], capture_output=True, text=True,
                          check=True, timeout=300)
  assert result.stdout.strip() == "['captioned_shapes', 'coco2014_captions', 'cub']"
