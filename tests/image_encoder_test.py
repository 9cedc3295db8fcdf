"""Tests of models/image_encoder.py (DAMSM CNN_ENCODER), models/small_cnn.py and
`image_encoder_from_torch`.

Expected numbers are worked out independently: the trainable head is
768*256 (1x1 conv, no bias) + 2048*256 + 256 (Linear) = 721,152 (spec section
12); the small-CNN path is recomputed with the numpy NCHW ops of resnet_test;
bilinear resize values are PyTorch's `align_corners=False` by hand.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.models import image_encoder
from mirrorgan_jax.pretrained import vision_from_torch as vision
from tests.inception_test import TORCHVISION_PARAMS, AUX_PARAMS, FC_PARAMS
from tests.inception_test import flax_location
from tests.inception_test import torchvision_inception_shapes
from tests.resnet_test import count_flax
from tests.resnet_test import np_batch_norm
from tests.resnet_test import np_conv2d
from tests.resnet_test import np_max_pool
from tests.resnet_test import random_state_dict
from tests.resnet_test import relu

HEAD_PARAMS = 768 * 256 + 2048 * 256 + 256
SMALL = dict(feature_dim=5, backbone='small_cnn', input_size=16,
             small_cnn_features=(4, 6))


def random_variables(model, *inputs, seed=0):
  """Variables of `model` with random values (no init compile): BN variances in
  [0.5, 1.5], everything else N(0, 0.5^2)."""
  abstract = jax.eval_shape(model.init, jax.random.key(0), *inputs)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    if path[-1].key == 'var':
      return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
    return jnp.asarray(rng.normal(0.0, 0.5, leaf.shape), jnp.float32)
  return jax.tree_util.tree_map_with_path(fill, abstract)


def _images(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


def _small_encoder_and_vars(seed=0, **kw):
  model = image_encoder.ImageEncoder(**{**SMALL, **kw})
  return model, random_variables(model, jnp.zeros((1, 16, 16, 3)), seed=seed)


def test_inception_head_param_count_and_mask():
  model = image_encoder.ImageEncoder()
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
  params = variables['params']
  assert HEAD_PARAMS == 721_152
  assert count_flax(params) - count_flax(params['backbone']) == HEAD_PARAMS
  assert count_flax(params['backbone']) == TORCHVISION_PARAMS - AUX_PARAMS - FC_PARAMS
  mask = image_encoder.trainable_mask(params)
  trainable = sum(int(np.prod(p.shape)) for p, m in
                  zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m)
  assert trainable == HEAD_PARAMS


def test_inception_output_shapes():
  model = image_encoder.ImageEncoder()
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
  regions, code = jax.eval_shape(model.apply, variables, jnp.zeros((2, 256, 256, 3)))
  assert (regions.shape, code.shape) == ((2, 17, 17, 256), (2, 256))
  assert regions.dtype == code.dtype == jnp.float32


def test_converter_places_every_entry():
  shapes = torchvision_inception_shapes(fc=False)
  shapes.update({'emb_features.weight': (256, 768, 1, 1),
                 'emb_cnn_code.weight': (256, 2048), 'emb_cnn_code.bias': (256,)})
  sd = random_state_dict(shapes, seed=7)
  variables = vision.image_encoder_from_torch(sd)
  head = variables['params']
  np.testing.assert_array_equal(head['emb_features']['kernel'],
                                sd['emb_features.weight'].transpose(2, 3, 1, 0))
  assert head['emb_features']['kernel'].shape == (1, 1, 768, 256)
  assert 'bias' not in head['emb_features']
  np.testing.assert_array_equal(head['emb_cnn_code']['kernel'],
                                sd['emb_cnn_code.weight'].T)
  np.testing.assert_array_equal(head['emb_cnn_code']['bias'], sd['emb_cnn_code.bias'])
  for name, value in sd.items():
    if name.startswith('emb_'):
      continue
    collection, path, leaf = flax_location(name)
    got = variables[collection]['backbone']
    for part in path:
      got = got[part]
    want = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
    np.testing.assert_array_equal(got[leaf], want, err_msg=name)
  assert len(jax.tree.leaves(variables)) == len(sd)

  with pytest.raises(KeyError, match=r'emb_features\.weight'):
    vision.image_encoder_from_torch(
        {k: v for k, v in sd.items() if k != 'emb_features.weight'})
  bad = dict(sd, **{'emb_features.weight': np.zeros((256, 512, 1, 1), np.float32)})
  with pytest.raises(ValueError, match=r'emb_features\.weight.*\[256, 512, 1, 1\]'):
    vision.image_encoder_from_torch(bad)


def _np_small_encoder(x, variables, train, pooling='mean', downsample='stride'):
  """SmallCNN + head in numpy NCHW, from the Flax variables."""
  p, s = variables['params'], variables.get('batch_stats', {})
  for i in range(len(SMALL['small_cnn_features'])):
    w = np.asarray(p['backbone'][f'conv{i}']['kernel'], np.float64).transpose(3, 2, 0, 1)
    bn_p, bn_s = p['backbone'][f'bn{i}'], s['backbone'][f'bn{i}']
    bn = {f'b.{k}': np.asarray(v, np.float64) for k, v in
          {'weight': bn_p['scale'], 'bias': bn_p['bias'],
           'running_mean': bn_s['mean'], 'running_var': bn_s['var']}.items()}
    stride = 2 if downsample == 'stride' else 1
    x = relu(np_batch_norm(np_conv2d(x, w, stride, (1, 1)), bn, 'b', 1e-5, train))
    if downsample == 'maxpool':
      x = np_max_pool(x, 2, 2)
  w = np.asarray(p['emb_features']['kernel'], np.float64).transpose(3, 2, 0, 1)
  regions = np_conv2d(x, w).transpose(0, 2, 3, 1)
  # 'flatten' reads the map in NHWC order: row, column, then channel.
  flat = x.transpose(0, 2, 3, 1).reshape(len(x), -1)
  pooled = {'mean': x.mean(axis=(2, 3)), 'flatten': flat,
            'max_flatten': np.concatenate([x.max(axis=(2, 3)), flat], axis=1)}[pooling]
  code = pooled @ np.asarray(p['emb_cnn_code']['kernel']) + np.asarray(
      p['emb_cnn_code']['bias'])
  return regions, code


@pytest.mark.parametrize('train,pooling,downsample', [
    (False, 'mean', 'stride'), (True, 'mean', 'stride'), (False, 'flatten', 'stride'),
    (True, 'flatten', 'maxpool'), (False, 'max_flatten', 'maxpool')])
def test_small_cnn_encoder_matches_numpy(train, pooling, downsample):
  model, variables = _small_encoder_and_vars(seed=1, small_cnn_pooling=pooling,
                                             small_cnn_downsample=downsample)
  # 'flatten': the code reads the whole 4x4x6 map (96 inputs), not its mean (6);
  # 'max_flatten' the 6 maxima too.
  assert variables['params']['emb_cnn_code']['kernel'].shape == (
      {'mean': 6, 'flatten': 96, 'max_flatten': 102}[pooling], 5)
  x = _images((3, 16, 16, 3), seed=2)
  apply = functools.partial(model.apply, train=train, mutable=['batch_stats'])
  (regions, code), _ = jax.jit(apply)(variables, x)
  want_regions, want_code = _np_small_encoder(
      np.asarray(x, np.float64).transpose(0, 3, 1, 2), variables, train, pooling,
      downsample)
  assert regions.shape == (3, 4, 4, 5) and code.shape == (3, 5)  # 16 -> 8 -> 4.
  np.testing.assert_allclose(regions, want_regions, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(code, want_code, rtol=1e-4, atol=1e-5)


def test_resize_is_pytorch_bilinear_without_antialias():
  # 2 -> 4 (align_corners=False): sources at -0.25, 0.25, 0.75, 1.25 (clamped),
  # so a row [a, b] becomes [a, .75a + .25b, .25a + .75b, b].
  x = jnp.array([[0.0, 4.0], [8.0, 12.0]]).reshape(1, 2, 2, 1)
  row = np.array([0.0, 1.0, 3.0, 4.0])
  want = np.stack([row, row + 2.0, row + 6.0, row + 8.0])
  np.testing.assert_allclose(image_encoder.resize_images(x, 4)[0, ..., 0], want,
                             atol=1e-6)
  # 4 -> 2: sources at 0.5 and 2.5, i.e. the mean of each 2x2 cell. Antialiasing
  # would mix in neighbouring cells.
  y = jnp.arange(16.0).reshape(1, 4, 4, 1)
  np.testing.assert_allclose(image_encoder.resize_images(y, 2)[0, ..., 0],
                             [[2.5, 4.5], [10.5, 12.5]], atol=1e-6)
  assert image_encoder.resize_images(y, 4) is y
  with pytest.raises(ValueError, match='expected'):
    image_encoder.resize_images(jnp.zeros((4, 4, 1)), 2)


def test_resizes_any_input_size():
  model, variables = _small_encoder_and_vars()
  x = _images((2, 24, 24, 3))
  got = jax.jit(model.apply)(variables, x)
  want = jax.jit(model.apply)(variables, image_encoder.resize_images(x, 16))
  assert got[0].shape == (2, 4, 4, 5)
  np.testing.assert_allclose(got[0], want[0], atol=1e-6)


@pytest.mark.parametrize('freeze', [False, True])
def test_freeze_backbone_stops_gradients(freeze):
  model, variables = _small_encoder_and_vars(freeze_backbone=freeze)
  x = _images((2, 16, 16, 3))

  def loss(params, images):
    regions, code = model.apply({**variables, 'params': params}, images)
    return jnp.sum(regions**2) + jnp.sum(code**2)
  grads, image_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables['params'], x)
  backbone_norm = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads['backbone']))
  assert (backbone_norm == 0.0) == freeze
  assert (float(jnp.abs(image_grads).sum()) == 0.0) == freeze
  assert float(jnp.abs(grads['emb_cnn_code']['kernel']).sum()) > 0


def test_bfloat16_compute_runs():
  model, variables = _small_encoder_and_vars()
  x = _images((2, 16, 16, 3))
  want = jax.jit(model.apply)(variables, x)
  bf16 = image_encoder.ImageEncoder(**SMALL, dtype=jnp.bfloat16)
  got = jax.jit(bf16.apply)(variables, x)
  for g, w in zip(got, want):
    assert g.dtype == jnp.float32
    np.testing.assert_allclose(g, w, rtol=0.05, atol=0.05 * float(jnp.abs(w).max()))


def test_bad_config_and_input():
  x = jnp.zeros((1, 16, 16, 3))
  with pytest.raises(ValueError, match='unknown image encoder backbone'):
    image_encoder.ImageEncoder(backbone='vgg').init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r'\[B, H, W, 3\]'):
    image_encoder.ImageEncoder(**SMALL).init(jax.random.key(0), jnp.zeros((1, 3, 16, 16)))
