"""Tests of models/inception.py and `inception_v3_from_torch`.

The torchvision Inception-v3 is described here independently, as tables of its
BasicConv2d layers (name, in, out, kernel, stride, padding) and a numpy NCHW
forward pass over them (ops from resnet_test). The tables are checked against
torchvision's published parameter count, 27,161,264, which includes the
auxiliary classifier we leave out: AuxLogits = conv0 (768*128 + 2*128 BN)
+ conv1 (128*768*5*5 + 2*768 BN) + fc (768*1000 + 1000) = 3,326,696, so our
module (with fc, without AuxLogits) must have 27,161,264 - 3,326,696 =
23,834,568 parameters and 21,785,568 without fc (minus 2048*1000 + 1000).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.models import inception
from mirrorgan_jax.pretrained import vision_from_torch as vision
from tests.resnet_test import count_flax
from tests.resnet_test import count_torch_params
from tests.resnet_test import np_avg_pool
from tests.resnet_test import np_batch_norm
from tests.resnet_test import np_conv2d
from tests.resnet_test import np_max_pool
from tests.resnet_test import random_state_dict
from tests.resnet_test import relu

TORCHVISION_PARAMS = 27_161_264  # inception_v3, aux classifier and fc included.
AUX_PARAMS = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)
FC_PARAMS = 2048 * 1000 + 1000


# ------------------------------------------------------ torchvision layer tables
def _c(name, cin, cout, k=1, s=1, p=0):
  k = (k, k) if isinstance(k, int) else k
  p = (p, p) if isinstance(p, int) else p
  return (name, cin, cout, k, s, p)


def _block_a(cin, pool_features):
  return [_c('branch1x1', cin, 64), _c('branch5x5_1', cin, 48),
          _c('branch5x5_2', 48, 64, 5, p=2), _c('branch3x3dbl_1', cin, 64),
          _c('branch3x3dbl_2', 64, 96, 3, p=1), _c('branch3x3dbl_3', 96, 96, 3, p=1),
          _c('branch_pool', cin, pool_features)]


def _block_b(cin):
  return [_c('branch3x3', cin, 384, 3, s=2), _c('branch3x3dbl_1', cin, 64),
          _c('branch3x3dbl_2', 64, 96, 3, p=1), _c('branch3x3dbl_3', 96, 96, 3, s=2)]


def _block_c(cin, c7):
  row, col = dict(k=(1, 7), p=(0, 3)), dict(k=(7, 1), p=(3, 0))
  return [_c('branch1x1', cin, 192), _c('branch7x7_1', cin, c7),
          _c('branch7x7_2', c7, c7, **row), _c('branch7x7_3', c7, 192, **col),
          _c('branch7x7dbl_1', cin, c7), _c('branch7x7dbl_2', c7, c7, **col),
          _c('branch7x7dbl_3', c7, c7, **row), _c('branch7x7dbl_4', c7, c7, **col),
          _c('branch7x7dbl_5', c7, 192, **row), _c('branch_pool', cin, 192)]


def _block_d(cin):
  return [_c('branch3x3_1', cin, 192), _c('branch3x3_2', 192, 320, 3, s=2),
          _c('branch7x7x3_1', cin, 192), _c('branch7x7x3_2', 192, 192, (1, 7), p=(0, 3)),
          _c('branch7x7x3_3', 192, 192, (7, 1), p=(3, 0)),
          _c('branch7x7x3_4', 192, 192, 3, s=2)]


def _block_e(cin):
  row, col = dict(k=(1, 3), p=(0, 1)), dict(k=(3, 1), p=(1, 0))
  return [_c('branch1x1', cin, 320), _c('branch3x3_1', cin, 384),
          _c('branch3x3_2a', 384, 384, **row), _c('branch3x3_2b', 384, 384, **col),
          _c('branch3x3dbl_1', cin, 448), _c('branch3x3dbl_2', 448, 384, 3, p=1),
          _c('branch3x3dbl_3a', 384, 384, **row), _c('branch3x3dbl_3b', 384, 384, **col),
          _c('branch_pool', cin, 192)]


STEM = [_c('Conv2d_1a_3x3', 3, 32, 3, s=2), _c('Conv2d_2a_3x3', 32, 32, 3),
        _c('Conv2d_2b_3x3', 32, 64, 3, p=1), _c('Conv2d_3b_1x1', 64, 80),
        _c('Conv2d_4a_3x3', 80, 192, 3)]
BLOCKS = [('Mixed_5b', 'A', _block_a(192, 32)), ('Mixed_5c', 'A', _block_a(256, 64)),
          ('Mixed_5d', 'A', _block_a(288, 64)), ('Mixed_6a', 'B', _block_b(288)),
          ('Mixed_6b', 'C', _block_c(768, 128)), ('Mixed_6c', 'C', _block_c(768, 160)),
          ('Mixed_6d', 'C', _block_c(768, 160)), ('Mixed_6e', 'C', _block_c(768, 192)),
          ('Mixed_7a', 'D', _block_d(768)), ('Mixed_7b', 'E', _block_e(1280)),
          ('Mixed_7c', 'E', _block_e(2048))]
AUX = [_c('AuxLogits.conv0', 768, 128), _c('AuxLogits.conv1', 128, 768, 5)]


def _basic_conv_shapes(prefix, cin, cout, k):
  shapes = {f'{prefix}.conv.weight': (cout, cin) + k}
  shapes.update({f'{prefix}.bn.{p}': (cout,) for p in
                 ('weight', 'bias', 'running_mean', 'running_var')})
  return shapes


def torchvision_inception_shapes(fc=True, aux=False):
  """torchvision inception_v3 state-dict shapes (num_batches_tracked left out)."""
  convs = [(name, cin, cout, k) for name, cin, cout, k, _, _ in STEM]
  convs += [(f'{block}.{name}', cin, cout, k) for block, _, table in BLOCKS
            for name, cin, cout, k, _, _ in table]
  if aux:
    convs += [(name, cin, cout, k) for name, cin, cout, k, _, _ in AUX]
  shapes = {}
  for name, cin, cout, k in convs:
    shapes.update(_basic_conv_shapes(name, cin, cout, k))
  if aux:
    shapes.update({'AuxLogits.fc.weight': (1000, 768), 'AuxLogits.fc.bias': (1000,)})
  if fc:
    shapes.update({'fc.weight': (1000, 2048), 'fc.bias': (1000,)})
  return shapes


def flax_location(torch_name):
  """Where our InceptionV3 keeps a torchvision entry: (collection, path, leaf)."""
  module, leaf = torch_name.rsplit('.', 1)
  is_bn = module.endswith('.bn')
  flax_leaf = {'weight': 'scale' if is_bn else 'kernel', 'bias': 'bias',
               'running_mean': 'mean', 'running_var': 'var'}[leaf]
  collection = 'batch_stats' if leaf.startswith('running') else 'params'
  return collection, tuple(module.split('.')), flax_leaf


def to_flax_layout(value):
  return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T


# ------------------------------------------------------------ numpy forward
def np_inception(x, sd, fid_variant=False):
  """torchvision (or pytorch-fid) Inception-v3 forward in eval mode, float64."""
  specs = {name: (s, p) for name, _, _, _, s, p in STEM}
  specs.update({f'{b}.{name}': (s, p) for b, _, table in BLOCKS
                for name, _, _, _, s, p in table})

  def conv(name, y):
    s, p = specs[name]
    y = np_conv2d(y, sd[f'{name}.conv.weight'], s, p)
    return relu(np_batch_norm(y, sd, f'{name}.bn', 1e-3))

  def pool(y, last=False):
    if fid_variant and last:
      return np_max_pool(y, 3, 1, 1)
    return np_avg_pool(y, 3, 1, 1, count_include_pad=not fid_variant)

  for name in ('Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3'):
    x = conv(name, x)
  x = np_max_pool(x, 3, 2)
  x = conv('Conv2d_4a_3x3', conv('Conv2d_3b_1x1', x))
  x = np_max_pool(x, 3, 2)
  out = {}
  for block, kind, _ in BLOCKS:
    c = lambda name, y, b=block: conv(f'{b}.{name}', y)
    if kind == 'A':
      x = np.concatenate([
          c('branch1x1', x), c('branch5x5_2', c('branch5x5_1', x)),
          c('branch3x3dbl_3', c('branch3x3dbl_2', c('branch3x3dbl_1', x))),
          c('branch_pool', pool(x))], axis=1)
    elif kind == 'B':
      x = np.concatenate([
          c('branch3x3', x),
          c('branch3x3dbl_3', c('branch3x3dbl_2', c('branch3x3dbl_1', x))),
          np_max_pool(x, 3, 2)], axis=1)
    elif kind == 'C':
      b7 = c('branch7x7_3', c('branch7x7_2', c('branch7x7_1', x)))
      bd = x
      for i in range(1, 6):
        bd = c(f'branch7x7dbl_{i}', bd)
      x = np.concatenate([c('branch1x1', x), b7, bd, c('branch_pool', pool(x))], axis=1)
    elif kind == 'D':
      b7 = x
      for i in range(1, 5):
        b7 = c(f'branch7x7x3_{i}', b7)
      x = np.concatenate([c('branch3x3_2', c('branch3x3_1', x)), b7,
                          np_max_pool(x, 3, 2)], axis=1)
    else:
      b3 = c('branch3x3_1', x)
      bd = c('branch3x3dbl_2', c('branch3x3dbl_1', x))
      x = np.concatenate([
          c('branch1x1', x), c('branch3x3_2a', b3), c('branch3x3_2b', b3),
          c('branch3x3dbl_3a', bd), c('branch3x3dbl_3b', bd),
          c('branch_pool', pool(x, last=block == 'Mixed_7c'))], axis=1)
    if block == 'Mixed_6e':
      out['mixed_6e'] = x.transpose(0, 2, 3, 1)
  out['pooled'] = x.mean(axis=(2, 3))
  out['logits'] = out['pooled'] @ sd['fc.weight'].T + sd['fc.bias']
  return out


# ------------------------------------------------------------------ tests
@pytest.fixture(scope='module')
def torch_sd():
  return random_state_dict(torchvision_inception_shapes(fc=True, aux=True), seed=3)


@pytest.fixture(scope='module')
def converted(torch_sd):
  return vision.inception_v3_from_torch(torch_sd)


def test_tables_give_published_torchvision_count():
  shapes = torchvision_inception_shapes(fc=True, aux=True)
  assert count_torch_params(shapes) == TORCHVISION_PARAMS
  assert AUX_PARAMS == 3_326_696


@pytest.mark.parametrize('num_classes,expected', [
    (1000, TORCHVISION_PARAMS - AUX_PARAMS),
    (None, TORCHVISION_PARAMS - AUX_PARAMS - FC_PARAMS)])
def test_param_count(num_classes, expected):
  model = inception.InceptionV3(num_classes=num_classes)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
  assert count_flax(variables['params']) == expected
  assert expected in (23_834_568, 21_785_568)


def test_converter_places_every_entry(torch_sd, converted):
  placed = 0
  for name, value in torch_sd.items():
    if name.startswith('AuxLogits.'):
      continue  # Not part of our module; the converter ignores it.
    collection, path, leaf = flax_location(name)
    got = converted[collection]
    for part in path:
      got = got[part]
    want = to_flax_layout(value) if name.endswith('.weight') and value.ndim > 1 else value
    np.testing.assert_array_equal(got[leaf], want, err_msg=name)
    placed += 1
  assert placed == len(jax.tree.leaves(converted))
  k = converted['params']['Mixed_6b']['branch7x7_2']['conv']['kernel']  # (1, 7) conv.
  w = torch_sd['Mixed_6b.branch7x7_2.conv.weight']
  assert k.shape == (1, 7, 128, 128) and k[0, 5, 3, 9] == w[9, 3, 0, 5]


@pytest.mark.parametrize('fid_variant', [False, True])
def test_forward_matches_numpy(torch_sd, converted, fid_variant):
  # 139x139 keeps every block's spatial map >= 3x3 (Mixed_7b/7c at 3x3), so
  # paddings, strides and the pool variants all matter.
  x = np.random.default_rng(4).uniform(-1, 1, (1, 3, 139, 139))
  model = inception.InceptionV3(fid_variant=fid_variant)
  got = jax.jit(model.apply)(converted, jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32))
  sd64 = {k: v.astype(np.float64) for k, v in torch_sd.items()}
  want = np_inception(x, sd64, fid_variant)
  for key in ('mixed_6e', 'pooled', 'logits'):
    assert got[key].dtype == jnp.float32
    np.testing.assert_allclose(got[key], want[key], rtol=2e-4,
                               atol=2e-4 * np.abs(want[key]).max(), err_msg=key)


def test_output_shapes_at_299(converted):
  model = inception.InceptionV3()
  x = jnp.asarray(np.random.default_rng(5).uniform(-1, 1, (1, 299, 299, 3)), jnp.float32)
  out = jax.jit(model.apply)(converted, x)
  assert {k: v.shape for k, v in out.items()} == {
      'mixed_6e': (1, 17, 17, 768), 'pooled': (1, 2048), 'logits': (1, 1000)}
  assert all(np.all(np.isfinite(v)) for v in out.values())
  fc = converted['params']['fc']
  np.testing.assert_allclose(out['logits'], out['pooled'] @ fc['kernel'] + fc['bias'],
                             rtol=1e-4, atol=1e-4)


def test_bfloat16_compute_runs(converted):
  model = inception.InceptionV3(dtype=jnp.bfloat16)
  x = jnp.zeros((1, 75, 75, 3))
  out = jax.jit(model.apply)(converted, x)
  assert out['pooled'].shape == (1, 2048) and out['pooled'].dtype == jnp.float32
  assert np.all(np.isfinite(out['logits']))


def test_converter_options_and_errors(torch_sd):
  no_fc = vision.inception_v3_from_torch(torch_sd, with_logits=False)
  assert 'fc' not in no_fc['params']
  assert count_flax(no_fc['params']) == TORCHVISION_PARAMS - AUX_PARAMS - FC_PARAMS
  fid = dict(torch_sd, **{'fc.weight': np.zeros((1008, 2048), np.float32),
                          'fc.bias': np.zeros((1008,), np.float32)})
  fid_vars = vision.inception_v3_from_torch(fid)
  assert fid_vars['params']['fc']['kernel'].shape == (2048, 1008)
  missing = {k: v for k, v in torch_sd.items() if k != 'Mixed_7b.branch3x3_2b.bn.bias'}
  with pytest.raises(KeyError, match=r'Mixed_7b\.branch3x3_2b\.bn\.bias'):
    vision.inception_v3_from_torch(missing)
  wrong = dict(torch_sd, **{'Mixed_5b.branch5x5_2.conv.weight':
                            np.zeros((64, 48, 3, 3), np.float32)})
  match = r'Mixed_5b\.branch5x5_2\.conv\.weight.*\[64, 48, 5, 5\]'
  with pytest.raises(ValueError, match=match):
    vision.inception_v3_from_torch(wrong)


def test_input_checks():
  model = inception.InceptionV3()
  with pytest.raises(ValueError, match='at least 75x75'):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match=r'\[B, H, W, 3\]'):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 3, 299, 299)))


def test_pool3x3_same_kinds():
  # Hand values on a 1-channel 2x2 map [[1, 2], [3, 4]] (every window sees all four).
  x = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
  np.testing.assert_allclose(inception.pool3x3_same(x, 'avg')[0, ..., 0],
                             np.full((2, 2), 10.0 / 9.0), rtol=1e-6)
  np.testing.assert_allclose(inception.pool3x3_same(x, 'avg_no_pad')[0, ..., 0],
                             np.full((2, 2), 2.5), rtol=1e-6)
  np.testing.assert_allclose(inception.pool3x3_same(-x, 'max')[0, ..., 0],
                             np.full((2, 2), -1.0))
  with pytest.raises(ValueError, match='unknown pool kind'):
    inception.pool3x3_same(x, 'min')
