"""Tests of models/resnet.py and the ResNet converters in pretrained/vision_from_torch.py.

The PyTorch side is written here from torchvision's layout rules (names and
[out, in, kh, kw] shapes of a bottleneck ResNet), and checked against the
published torchvision parameter count of ResNet-152, so it does not depend on
our module. The numpy NCHW ops below are an independent forward pass; the
Inception tests import them too.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.models import resnet
from mirrorgan_jax.pretrained import vision_from_torch as vision

RESNET152_PARAMS = 60_192_808  # torchvision resnet152, fc (2048*1000 + 1000) included.


# ------------------------------------------------------------ numpy NCHW oracle
def np_conv2d(x, w, stride=1, padding=(0, 0)):
  """PyTorch Conv2d (no bias): x [N, C, H, W], w [O, C, kh, kw], symmetric padding."""
  x = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
  _, _, h, wd = x.shape
  o, _, kh, kw = w.shape
  ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
  out = np.zeros((x.shape[0], o, ho, wo))
  for a in range(kh):
    for b in range(kw):
      patch = x[:, :, a:a + stride * (ho - 1) + 1:stride,
                b:b + stride * (wo - 1) + 1:stride]
      out += np.tensordot(w[:, :, a, b], patch, axes=([1], [1])).transpose(1, 0, 2, 3)
  return out


def _windows(x, k, stride, pad, fill):
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
  ho, wo = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
  return [x[:, :, a:a + stride * (ho - 1) + 1:stride, b:b + stride * (wo - 1) + 1:stride]
          for a in range(k) for b in range(k)]


def np_max_pool(x, k, stride, pad=0):
  """PyTorch max_pool2d (padding never wins)."""
  return np.max(_windows(x, k, stride, pad, -np.inf), axis=0)


def np_avg_pool(x, k, stride, pad=0, count_include_pad=True):
  """PyTorch avg_pool2d."""
  total = np.sum(_windows(x, k, stride, pad, 0.0), axis=0)
  if count_include_pad:
    return total / (k * k)
  return total / np.sum(_windows(np.ones_like(x), k, stride, pad, 0.0), axis=0)


def np_batch_norm(x, sd, prefix, eps, batch_stats=False):
  """BatchNorm2d with running statistics, or with the batch's (biased) ones."""
  if batch_stats:
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
  else:
    mean, var = sd[f'{prefix}.running_mean'], sd[f'{prefix}.running_var']
  shape = (1, -1, 1, 1)
  return ((x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
          * sd[f'{prefix}.weight'].reshape(shape) + sd[f'{prefix}.bias'].reshape(shape))


def relu(x):
  return np.maximum(x, 0.0)


def random_state_dict(shapes, seed=0):
  """Random PyTorch-style arrays: He-scaled weights, positive running variances."""
  rng = np.random.default_rng(seed)
  sd = {}
  for name, shape in shapes.items():
    if name.endswith('running_var'):
      sd[name] = rng.uniform(0.5, 1.5, shape)
    elif name.endswith('.weight') and len(shape) >= 2:  # Conv / Linear.
      sd[name] = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
    elif name.endswith('.weight'):  # BatchNorm scale.
      sd[name] = rng.uniform(0.5, 1.5, shape)
    else:
      sd[name] = rng.normal(0.0, 0.5, shape)
  return {k: v.astype(np.float32) for k, v in sd.items()}


def count_torch_params(shapes):
  return sum(int(np.prod(s)) for k, s in shapes.items()
             if not k.endswith(('running_mean', 'running_var')))


def count_flax(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# ------------------------------------------------------------ torchvision layout
def _bn(name, c):
  return {f'{name}.{p}': (c,) for p in ('weight', 'bias', 'running_mean', 'running_var')}


def torchvision_resnet_shapes(stages, width=64, num_classes=None):
  """torchvision bottleneck ResNet state-dict shapes, from the layout rules."""
  shapes = {'conv1.weight': (width, 3, 7, 7), **_bn('bn1', width)}
  in_ch = width
  for i, n in enumerate(stages):
    w = width * 2**i
    for j in range(n):
      p = f'layer{i + 1}.{j}'
      shapes.update({f'{p}.conv1.weight': (w, in_ch, 1, 1), **_bn(f'{p}.bn1', w),
                     f'{p}.conv2.weight': (w, w, 3, 3), **_bn(f'{p}.bn2', w),
                     f'{p}.conv3.weight': (4 * w, w, 1, 1), **_bn(f'{p}.bn3', 4 * w)})
      if j == 0:  # Every stage's first block changes the shape (width or stride).
        shapes.update({f'{p}.downsample.0.weight': (4 * w, in_ch, 1, 1),
                       **_bn(f'{p}.downsample.1', 4 * w)})
      in_ch = 4 * w
  if num_classes:
    shapes.update({'fc.weight': (num_classes, in_ch), 'fc.bias': (num_classes,)})
  return shapes


def flax_location(torch_name):
  """Where our ResNet keeps a torchvision entry: (collection, path, leaf)."""
  module, leaf = torch_name.rsplit('.', 1)
  module = re.sub(r'^layer(\d+)\.(\d+)', r'layer\1_\2', module)
  module = module.replace('downsample.0', 'downsample_conv').replace(
      'downsample.1', 'downsample_bn')
  is_bn = re.search(r'(^|\.)(bn\d|downsample_bn)$', module) is not None
  flax_leaf = {'weight': 'scale' if is_bn else 'kernel', 'bias': 'bias',
               'running_mean': 'mean', 'running_var': 'var'}[leaf]
  collection = 'batch_stats' if leaf.startswith('running') else 'params'
  return collection, tuple(module.split('.')), flax_leaf


def np_resnet(x, sd, stages, batch_stats=False):
  """torchvision ResNet forward (eval BN unless batch_stats), pooled [N, C]."""
  bn = lambda y, p: np_batch_norm(y, sd, p, 1e-5, batch_stats)
  x = relu(bn(np_conv2d(x, sd['conv1.weight'], 2, (3, 3)), 'bn1'))
  x = np_max_pool(x, 3, 2, 1)
  for i, n in enumerate(stages):
    for j in range(n):
      p, s = f'layer{i + 1}.{j}', 2 if i > 0 and j == 0 else 1
      y = relu(bn(np_conv2d(x, sd[f'{p}.conv1.weight']), f'{p}.bn1'))
      y = relu(bn(np_conv2d(y, sd[f'{p}.conv2.weight'], s, (1, 1)), f'{p}.bn2'))
      y = bn(np_conv2d(y, sd[f'{p}.conv3.weight']), f'{p}.bn3')
      if f'{p}.downsample.0.weight' in sd:
        x = bn(np_conv2d(x, sd[f'{p}.downsample.0.weight'], s), f'{p}.downsample.1')
      x = relu(y + x)
  return x.mean(axis=(2, 3))


# ------------------------------------------------------------------ tests
def test_layout_rules_give_published_resnet152_count():
  # Guards the test's own torchvision description against the published number.
  shapes = torchvision_resnet_shapes(resnet.RESNET152_STAGES, num_classes=1000)
  assert count_torch_params(shapes) == RESNET152_PARAMS


def test_resnet152_param_count():
  variables = jax.eval_shape(resnet.ResNet().init, jax.random.key(0),
                             jnp.zeros((1, 224, 224, 3)))
  assert count_flax(variables['params']) == RESNET152_PARAMS - (2048 * 1000 + 1000)
  assert count_flax(variables['params']) == 58_143_808


def test_converter_places_every_entry():
  # ResNet-152's topology (all names) at width 8 keeps the arrays small.
  shapes = torchvision_resnet_shapes(resnet.RESNET152_STAGES, width=8, num_classes=10)
  sd = random_state_dict(shapes)
  variables = vision.resnet_from_torch(sd)
  placed = 0
  for name, value in sd.items():
    if name.startswith('fc.'):
      continue
    collection, path, leaf = flax_location(name)
    got = variables[collection]
    for part in path:
      got = got[part]
    got = got[leaf]
    want = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
    np.testing.assert_array_equal(got, want, err_msg=name)
    placed += 1
  assert placed == len(jax.tree.leaves(variables))  # Nothing else was filled in.
  o, i, kh, kw = 5, 2, 1, 6  # One element spelled out: [o, i, kh, kw] -> [kh, kw, i, o].
  kernel = variables['params']['conv1']['kernel']
  assert kernel[kh, kw, i, o] == sd['conv1.weight'][o, i, kh, kw]


@pytest.mark.parametrize('train', [False, True])
def test_tiny_resnet_matches_numpy(train):
  stages, width = (1, 2), 4
  sd = random_state_dict(torchvision_resnet_shapes(stages, width), seed=1)
  variables = vision.resnet_from_torch(sd)
  model = resnet.ResNet(stage_sizes=stages, width=width)
  x = np.random.default_rng(2).normal(size=(2, 3, 33, 35))
  apply = lambda v, im: model.apply(v, im, train=train, mutable=['batch_stats'])
  got, _ = jax.jit(apply)(variables, jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32))
  want = np_resnet(x, {k: v.astype(np.float64) for k, v in sd.items()}, stages, train)
  assert got.shape == (2, 4 * width * 2)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_bfloat16_compute_runs():
  sd = random_state_dict(torchvision_resnet_shapes((1, 1), width=4))
  variables = vision.resnet_from_torch(sd)
  model = resnet.ResNet(stage_sizes=(1, 1), width=4, dtype=jnp.bfloat16)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  out = jax.jit(model.apply)(variables, x)
  want = jax.jit(resnet.ResNet(stage_sizes=(1, 1), width=4).apply)(variables, x)
  assert out.dtype == jnp.float32 and out.shape == (2, 32)
  # bfloat16 keeps ~3 significant digits; a wrong dtype path would be far off.
  np.testing.assert_allclose(out, want, rtol=0.05, atol=0.05 * np.abs(want).max())


def test_converter_errors_name_the_entry():
  sd = random_state_dict(torchvision_resnet_shapes((1, 1), width=4))
  missing = {k: v for k, v in sd.items() if k != 'layer2.0.bn2.running_var'}
  with pytest.raises(KeyError, match=r'layer2\.0\.bn2\.running_var'):
    vision.resnet_from_torch(missing)
  wrong = dict(sd, **{'layer1.0.conv2.weight': np.zeros((4, 4, 1, 1), np.float32)})
  match = r'layer1\.0\.conv2\.weight.*\[4, 4, 1, 1\].*\[4, 4, 3, 3\]'
  with pytest.raises(ValueError, match=match):
    vision.resnet_from_torch(wrong)
  with pytest.raises(ValueError, match='not ResNet-152'):
    vision.resnet152_from_torch(sd)
  with pytest.raises(KeyError, match='no ResNet blocks'):
    vision.resnet_from_torch({'conv1.weight': sd['conv1.weight']})


def _residual_cases():
  """y, x with every sign mix, exact ties y = -x, zeros and non-negative x."""
  rng = np.random.default_rng(3)
  y = rng.normal(size=(4, 5, 6, 8)).astype(np.float32)
  x = rng.normal(size=(4, 5, 6, 8)).astype(np.float32)
  y[0] = -x[0]  # y + x == 0 exactly: relu's kink.
  y[1, 0], x[1, 0] = 0.0, 0.0
  x[2] = np.abs(x[2])  # Block inputs are relu outputs: x >= 0.
  return y, x


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_residual_relu_is_relu_of_sum_bit_for_bit(dtype):
  y, x = (jnp.asarray(a, dtype) for a in _residual_cases())
  got = jax.jit(resnet.residual_relu)(y, x)
  want = jax.jit(lambda y, x: jax.nn.relu(y + x))(y, x)
  assert got.dtype == dtype
  np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))


def test_residual_relu_gradient_is_relus():
  y, x = (jnp.asarray(a) for a in _residual_cases())
  g = jnp.asarray(np.random.default_rng(4).normal(size=y.shape), jnp.float32)
  _, vjp = jax.vjp(resnet.residual_relu, y, x)
  _, want_vjp = jax.vjp(lambda y, x: jax.nn.relu(y + x), y, x)
  for got, want in zip(vjp(g), want_vjp(g)):
    np.testing.assert_array_equal(got, want)
  # At the kink (y + x == 0) relu's gradient is 0, in both.
  assert not np.any(np.asarray(vjp(g)[0])[0])
