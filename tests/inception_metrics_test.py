"""Tests of evaluation/inception_metrics.py (random weights; no download possible).

The network itself is checked against a numpy forward pass in inception_test.py;
here: resizing and quantisation by hand, shapes, batching and padding
invariance, one compile per shape, and loading a converted artifact.
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.evaluation import fid
from mirrorgan_jax.evaluation import inception_metrics as im
from mirrorgan_jax.pretrained import converters
from tests.inception_test import torchvision_inception_shapes
from tests.resnet_test import random_state_dict

SMALL = 75  # The network's minimum input size: the cheapest compile and run.


def _softmax(z):
  e = np.exp(z - z.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def _images(n, size, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope='module')
def small():
  return im.InceptionExtractor.with_random_weights(seed=0, batch_size=2, image_size=SMALL)


@pytest.fixture(scope='module')
def five_images():
  return _images(5, 64)


@pytest.fixture(scope='module')
def small_outputs(small, five_images):
  return small(five_images)


def test_resize_hand_values():
  ramp = jnp.array([0.0, 1.0]).reshape(1, 1, 2, 1) * jnp.ones((1, 2, 1, 1))
  # Up 2 -> 4, half-pixel centres: sources -0.25, 0.25, 0.75, 1.25 (edges clamp).
  np.testing.assert_allclose(im.resize_bilinear(ramp, 4)[0, 0, :, 0],
                             [0.0, 0.25, 0.75, 1.0], atol=1e-6)
  row = jnp.arange(4.0).reshape(1, 1, 4, 1) * jnp.ones((1, 4, 1, 1))
  # Down 4 -> 2 without antialiasing: sources 0.5 and 2.5, the mean of two pixels.
  np.testing.assert_allclose(im.resize_bilinear(row, 2)[0, 0, :, 0], [0.5, 2.5],
                             atol=1e-6)
  assert im.resize_bilinear(row, 4) is row


def test_quantize_hand_values():
  x = jnp.array([-1.0, 1.0, 0.0, 0.999, -0.9999])
  # (x + 1) * 127.5 = 0, 255, 127.5, 254.87, 0.01 -> floor -> / 127.5 - 1.
  want = np.array([0, 255, 127, 254, 0]) / 127.5 - 1
  np.testing.assert_allclose(im.quantize_8bit(x), want, atol=1e-6)


def test_shapes_probabilities_and_one_compile(small, small_outputs):
  out = small_outputs
  assert out.pool3.shape == (5, im.FEATURE_DIM)
  assert out.logits.shape == out.probs.shape == (5, im.PYTORCH_FID_CLASSES)
  assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in out)
  np.testing.assert_allclose(out.probs, _softmax(out.logits.astype(np.float64)),
                             rtol=1e-4, atol=1e-7)
  assert np.ptp(out.pool3, axis=0).max() > 0  # Different images, different features.
  assert small._forward._cache_size() == 1  # 3 batches of 2 (the last padded).


def test_padding_and_batch_size_do_not_change_results(small, five_images, small_outputs):
  whole = im.InceptionExtractor.with_random_weights(seed=0, batch_size=5,
                                                    image_size=SMALL)(five_images)
  one = small(five_images[4:])  # One image padded with copies of itself.
  split = small.extract([five_images[:3], five_images[3:]])
  for other in (whole, split):
    for got, want in zip(other, small_outputs):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
  for got, want in zip(one, small_outputs):
    np.testing.assert_allclose(got[0], want[4], rtol=1e-4, atol=1e-5 * np.abs(want).max())
  assert small._forward._cache_size() == 1


def test_downsizing_is_not_antialiased(small):
  x = _images(2, SMALL, seed=1)
  doubled = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)  # 150x150 blocks of 2x2.
  # Without antialiasing, output pixel i samples source 2i + 0.5: the mean of a
  # block of equal pixels, i.e. x itself.
  np.testing.assert_allclose(small.features(doubled), small.features(x), rtol=1e-4,
                             atol=1e-5)


def test_input_checks(small):
  with pytest.raises(ValueError, match=r'\[N>0, H, W, 3\]'):
    small(np.zeros((2, 3, 64, 64), np.float32))
  with pytest.raises(ValueError, match=r'\[N>0, H, W, 3\]'):
    small(np.zeros((0, 64, 64, 3), np.float32))
  with pytest.raises(ValueError, match='uint8'):
    small(np.zeros((1, 64, 64, 3), np.uint8))
  with pytest.raises(ValueError, match=r'\[-1, 1\]'):
    small(np.full((1, 64, 64, 3), 255.0, np.float32))
  with pytest.raises(ValueError, match='image_size'):
    im.InceptionExtractor.with_random_weights(image_size=64)
  with pytest.raises(ValueError, match='no images'):
    small.extract([])


def test_fid_from_extractor_features(small, five_images):
  # 32 of the 2048 features: the plumbing is the same, the 2048-d matrix square
  # roots would take a minute on a loaded 2-core machine.
  features = lambda x: small.features(x)[:, :32]
  noise = _images(5, 64, seed=7) * 0.1
  real = fid.compute_statistics([five_images[:3], five_images[3:]], features)
  same = fid.compute_statistics([five_images], features)
  other = fid.compute_statistics([noise], features)
  scale = 2 * np.trace(real.sigma)
  assert abs(fid.fid_from_statistics(real, same)) <= 1e-4 * scale
  assert fid.fid_from_statistics(real, other) > 1e-2 * scale


def test_from_artifact_at_299(tmp_path):
  shapes = torchvision_inception_shapes(fc=False)
  shapes.update({'fc.weight': (1008, 2048), 'fc.bias': (1008,)})  # pytorch-fid head.
  sd = random_state_dict(shapes, seed=2)
  np.savez(tmp_path / 'pt_inception.npz', **sd)
  artifact = tmp_path / 'inception'
  converters.convert_inception(tmp_path / 'pt_inception.npz', artifact)

  extractor = im.InceptionExtractor.from_artifact(artifact, batch_size=2)
  assert extractor.model.fid_variant and extractor.model.num_classes == 1008
  assert 'pytorch_fid' in extractor.fingerprint and '299px' in extractor.fingerprint
  out = extractor(_images(3, im.INCEPTION_SIZE, seed=3))
  assert out.pool3.shape == (3, 2048) and out.probs.shape == (3, 1008)
  # The logits use the checkpoint's fc (PyTorch layout: weight [classes, 2048]).
  want = out.pool3.astype(np.float64) @ sd['fc.weight'].T + sd['fc.bias']
  np.testing.assert_allclose(out.logits, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())

  meta_path = artifact / 'meta.json'
  meta_path.write_text(json.dumps(dict(json.loads(meta_path.read_text()), phase='damsm')))
  with pytest.raises(ValueError, match='not an Inception-v3 artifact'):
    im.InceptionExtractor.from_artifact(artifact)
  for f in (artifact / 'variables').rglob('*'):
    if f.is_file() and f.stat().st_size > 1000:
      f.write_bytes(b'corrupt')
  with pytest.raises(ValueError, match='cannot read the Inception-v3 artifact'):
    im.InceptionExtractor.from_artifact(artifact)
  with pytest.raises(FileNotFoundError, match='meta.json'):
    im.InceptionExtractor.from_artifact(tmp_path / 'absent')
