"""Inception-v3 with torchvision's layout, as a Flax module (NHWC).

Submodule names equal torchvision's attribute names (`Conv2d_1a_3x3/conv`,
`Mixed_5b/branch1x1/bn`, `fc`, ...), so converted `state_dict`s map one to one
(`pretrained/vision_from_torch.py`). Used by the DAMSM image encoder (Mixed_6e regions and
the pooled 2048-d feature) and by the FID / Inception Score evaluators.

Input is an RGB image in [-1, 1]. The Google ImageNet weights
(`inception_v3_google-*.pth`) expect exactly that when torchvision's
`transform_input` is off; `transform_input=True` only maps ImageNet-normalised
input back to [-1, 1], so it is not reproduced here. The auxiliary classifier and
the dropout before `fc` are left out: they only matter when training the
classifier itself.

`fid_variant=True` gives pytorch-fid's network (FIDInceptionA/C/E blocks): the
3x3 average pools of Mixed_5*/6b-e/7b leave the padding out of the average
(`count_include_pad=False`) and Mixed_7c max-pools instead. Parameters are the
same, so the same converter loads both weight sets.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# He init keeps random-weight activations O(1) through ~100 layers (tests, FID
# sanity checks); real use loads converted weights.
_KERNEL_INIT = nn.initializers.he_normal()


class BasicConv2d(nn.Module):
  """torchvision's BasicConv2d: conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU.

  Attributes:
    features: output channels.
    kernel: (kh, kw).
    strides: stride in both directions.
    padding: PyTorch padding (ph, pw), applied on both sides.
    dtype: compute dtype.
    bn_axis_name: axis name for cross-device BatchNorm, or None.
  """
  features: int
  kernel: tuple[int, int] = (1, 1)
  strides: int = 1
  padding: tuple[int, int] = (0, 0)
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.Conv(self.features, self.kernel, strides=(self.strides,) * 2,
                padding=tuple((p, p) for p in self.padding), use_bias=False,
                dtype=self.dtype, kernel_init=_KERNEL_INIT, name='conv')(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     epsilon=1e-3, dtype=self.dtype,
                     axis_name=self.bn_axis_name, name='bn')(x)
    return nn.relu(x)


def pool3x3_same(x: jax.Array, kind: str) -> jax.Array:
  """3x3, stride-1, padding-1 pool of a block's pool branch.

  Args:
    x: [B, H, W, C].
    kind: 'avg' (torchvision: zero padding counts in the mean), 'avg_no_pad'
      (pytorch-fid: it does not), or 'max' (pytorch-fid's last block).
  Returns:
    [B, H, W, C].
  """
  pad = ((1, 1), (1, 1))
  if kind == 'max':
    return nn.max_pool(x, (3, 3), strides=(1, 1), padding=pad)
  if kind in ('avg', 'avg_no_pad'):
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=pad,
                       count_include_pad=kind == 'avg')
  raise ValueError(f'unknown pool kind {kind!r}')


def _max_pool3x3_s2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), strides=(2, 2))


class _Block(nn.Module):
  """Shared fields of the Mixed blocks and a factory for their convs."""
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  def conv(self, name: str, features: int, kernel=1, strides: int = 1,
           padding=0) -> BasicConv2d:
    """A BasicConv2d; an int kernel or padding means the same in both axes."""
    if isinstance(kernel, int):
      kernel = (kernel, kernel)
    if isinstance(padding, int):
      padding = (padding, padding)
    return BasicConv2d(features, kernel, strides, padding, dtype=self.dtype,
                       bn_axis_name=self.bn_axis_name, name=name)


class InceptionA(_Block):
  """Mixed_5b/5c/5d (35x35): 1x1, 5x5, double 3x3 and pool branches."""
  pool_features: int = 32
  pool: str = 'avg'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    b1 = self.conv('branch1x1', 64)(x, train)
    b5 = self.conv('branch5x5_1', 48)(x, train)
    b5 = self.conv('branch5x5_2', 64, 5, padding=2)(b5, train)
    b3 = self.conv('branch3x3dbl_1', 64)(x, train)
    b3 = self.conv('branch3x3dbl_2', 96, 3, padding=1)(b3, train)
    b3 = self.conv('branch3x3dbl_3', 96, 3, padding=1)(b3, train)
    bp = self.conv('branch_pool', self.pool_features)(
        pool3x3_same(x, self.pool), train)
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):
  """Mixed_6a: 35x35 -> 17x17 reduction."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    b3 = self.conv('branch3x3', 384, 3, strides=2)(x, train)
    bd = self.conv('branch3x3dbl_1', 64)(x, train)
    bd = self.conv('branch3x3dbl_2', 96, 3, padding=1)(bd, train)
    bd = self.conv('branch3x3dbl_3', 96, 3, strides=2)(bd, train)
    return jnp.concatenate([b3, bd, _max_pool3x3_s2(x)], axis=-1)


class InceptionC(_Block):
  """Mixed_6b..6e (17x17): factorised 7x7 branches of width `channels_7x7`."""
  channels_7x7: int = 128
  pool: str = 'avg'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c7 = self.channels_7x7
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
    b1 = self.conv('branch1x1', 192)(x, train)
    b7 = self.conv('branch7x7_1', c7)(x, train)
    b7 = self.conv('branch7x7_2', c7, **row)(b7, train)
    b7 = self.conv('branch7x7_3', 192, **col)(b7, train)
    bd = self.conv('branch7x7dbl_1', c7)(x, train)
    bd = self.conv('branch7x7dbl_2', c7, **col)(bd, train)
    bd = self.conv('branch7x7dbl_3', c7, **row)(bd, train)
    bd = self.conv('branch7x7dbl_4', c7, **col)(bd, train)
    bd = self.conv('branch7x7dbl_5', 192, **row)(bd, train)
    bp = self.conv('branch_pool', 192)(pool3x3_same(x, self.pool), train)
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):
  """Mixed_7a: 17x17 -> 8x8 reduction."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    b3 = self.conv('branch3x3_1', 192)(x, train)
    b3 = self.conv('branch3x3_2', 320, 3, strides=2)(b3, train)
    b7 = self.conv('branch7x7x3_1', 192)(x, train)
    b7 = self.conv('branch7x7x3_2', 192, (1, 7), padding=(0, 3))(b7, train)
    b7 = self.conv('branch7x7x3_3', 192, (7, 1), padding=(3, 0))(b7, train)
    b7 = self.conv('branch7x7x3_4', 192, 3, strides=2)(b7, train)
    return jnp.concatenate([b3, b7, _max_pool3x3_s2(x)], axis=-1)


class InceptionE(_Block):
  """Mixed_7b/7c (8x8): expanded 1x3 / 3x1 filter-bank branches."""
  pool: str = 'avg'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
    b1 = self.conv('branch1x1', 320)(x, train)
    b3 = self.conv('branch3x3_1', 384)(x, train)
    b3 = jnp.concatenate([self.conv('branch3x3_2a', 384, **row)(b3, train),
                          self.conv('branch3x3_2b', 384, **col)(b3, train)], -1)
    bd = self.conv('branch3x3dbl_1', 448)(x, train)
    bd = self.conv('branch3x3dbl_2', 384, 3, padding=1)(bd, train)
    bd = jnp.concatenate([self.conv('branch3x3dbl_3a', 384, **row)(bd, train),
                          self.conv('branch3x3dbl_3b', 384, **col)(bd, train)], -1)
    bp = self.conv('branch_pool', 192)(pool3x3_same(x, self.pool), train)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """torchvision Inception-v3 trunk (and optionally its classifier).

  Attributes:
    num_classes: size of the `fc` classifier (1000 for ImageNet, 1008 for the
      FID weights), or None for no classifier (the DAMSM image encoder).
    fid_variant: use pytorch-fid's pooling in the Mixed blocks (module doc).
    dtype: compute dtype; parameters stay float32, outputs are float32.
    bn_axis_name: axis name for cross-device BatchNorm, or None.
  """
  num_classes: int | None = 1000
  fid_variant: bool = False
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    """Runs the network.

    Args:
      images: [B, H, W, 3] in [-1, 1]; 299x299 for the standard feature sizes
        (any H, W >= 75 runs).
      train: BatchNorm uses batch statistics (and updates its running ones).
    Returns:
      {'mixed_6e': [B, 17, 17, 768] (at 299x299), 'pooled': [B, 2048] (global
      average after Mixed_7c), and 'logits': [B, num_classes] when
      `num_classes` is set}, all float32.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'InceptionV3 expects [B, H, W, 3] images, got {images.shape}')
    if min(images.shape[1:3]) < 75:
      raise ValueError(f'InceptionV3 needs images of at least 75x75, got {images.shape}')
    avg = 'avg_no_pad' if self.fid_variant else 'avg'
    kw = dict(dtype=self.dtype, bn_axis_name=self.bn_axis_name)
    conv = functools.partial(BasicConv2d, **kw)
    x = images.astype(self.dtype)
    x = conv(32, (3, 3), strides=2, name='Conv2d_1a_3x3')(x, train)
    x = conv(32, (3, 3), name='Conv2d_2a_3x3')(x, train)
    x = conv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x, train)
    x = _max_pool3x3_s2(x)
    x = conv(80, (1, 1), name='Conv2d_3b_1x1')(x, train)
    x = conv(192, (3, 3), name='Conv2d_4a_3x3')(x, train)
    x = _max_pool3x3_s2(x)
    for name, pool_features in (('Mixed_5b', 32), ('Mixed_5c', 64), ('Mixed_5d', 64)):
      x = InceptionA(pool_features=pool_features, pool=avg, name=name, **kw)(x, train)
    x = InceptionB(name='Mixed_6a', **kw)(x, train)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160),
                     ('Mixed_6e', 192)):
      x = InceptionC(channels_7x7=c7, pool=avg, name=name, **kw)(x, train)
    out = {'mixed_6e': x.astype(jnp.float32)}
    x = InceptionD(name='Mixed_7a', **kw)(x, train)
    x = InceptionE(pool=avg, name='Mixed_7b', **kw)(x, train)
    x = InceptionE(pool='max' if self.fid_variant else 'avg', name='Mixed_7c',
                   **kw)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    out['pooled'] = x.astype(jnp.float32)
    if self.num_classes is not None:
      logits = nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x)
      out['logits'] = logits.astype(jnp.float32)
    return out
