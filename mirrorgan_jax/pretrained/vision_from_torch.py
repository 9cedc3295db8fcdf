"""PyTorch -> Flax converters for the vision networks and the STREAM captioner.

Each converter takes `state_dict`s as dicts of numpy arrays (PyTorch names) and
returns Flax variables {'params': ..., 'batch_stats': ...} of float32 numpy
arrays for the matching module:

  inception_v3_from_torch   torchvision `inception_v3` (or pytorch-fid's weights)
                            -> models.inception.InceptionV3
  image_encoder_from_torch  AttnGAN DAMSM `image_encoder*.pth`
                            -> models.image_encoder.ImageEncoder('inception_v3')
  resnet_from_torch         torchvision bottleneck ResNets -> models.resnet.ResNet
  resnet152_from_torch      the same, checked to be ResNet-152
  captioner_from_torch      MirrorGAN CAPTION_CNN + CAPTION_RNN (yunjey tutorial
                            names) -> models.captioner.Captioner('resnet152')

How it works: the Flax module is built with sizes read from the state dict and
traced with `jax.eval_shape` (no real init); every one of its layers is looked up
in the state dict under the PyTorch name given by a per-network name map and
converted by `torch_layout`. A missing entry raises KeyError naming it, a shape
that does not fit raises ValueError naming it, and entries nobody asked for
(e.g. torchvision's `AuxLogits.*`) are logged.
"""

import re
from typing import Callable, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax.models import captioner
from mirrorgan_jax.models import image_encoder
from mirrorgan_jax.models import inception
from mirrorgan_jax.models import resnet
from mirrorgan_jax.pretrained import torch_layout

StateDict = torch_layout.StateDict
Path = tuple[str, ...]
Variables = dict[str, dict]

# Flax leaf name -> PyTorch parameter name (suffix after the module prefix).
_TORCH_LEAF = {
    'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'embedding': 'weight',
    'mean': 'running_mean', 'var': 'running_var',
    'w_ih': 'weight_ih_l0', 'w_hh': 'weight_hh_l0',
    'b_ih': 'bias_ih_l0', 'b_hh': 'bias_hh_l0',
}


def _torch_shape(leaf: str, flax_shape: tuple[int, ...]) -> tuple[int, ...]:
  """The PyTorch shape that converts to `flax_shape` (inverse of torch_layout)."""
  if leaf == 'kernel' and len(flax_shape) == 4:  # [kh, kw, in, out] <- [out, in, kh, kw]
    return tuple(flax_shape[i] for i in (3, 2, 0, 1))
  if leaf in ('kernel', 'w_ih', 'w_hh'):
    return tuple(reversed(flax_shape))
  return tuple(flax_shape)


def _layers(tree: Mapping, path: Path = ()):
  """Yields (path, dict of leaves) for every Flax layer (a dict holding arrays)."""
  if any(not isinstance(v, Mapping) for v in tree.values()):
    yield path, tree
    return
  for name, sub in tree.items():
    yield from _layers(sub, path + (name,))


def _get(tree: Mapping, path: Path) -> Mapping:
  for name in path:
    tree = tree[name]
  return tree


def _set(tree: dict, path: Path, value: dict) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def _convert_layer(sd: StateDict, prefix: str, expected: Mapping,
                   expected_stats: Mapping | None) -> tuple[dict, dict | None]:
  """Converts the PyTorch layer `prefix` into the Flax layer `expected`."""
  stats = None
  if 'w_ih' in expected:
    params = torch_layout.lstm(sd, prefix)
  elif 'embedding' in expected:
    params = torch_layout.embedding(sd, prefix)
  elif 'scale' in expected:
    params, stats = torch_layout.batch_norm(sd, prefix)
  elif expected['kernel'].ndim == 4:
    params = torch_layout.conv(sd, prefix, bias='bias' in expected)
  else:
    params = torch_layout.dense(sd, prefix, bias='bias' in expected)
  for got, want in ((params, expected), (stats, expected_stats)):
    for leaf, value in (got or {}).items():
      if value.shape != want[leaf].shape:
        key = f'{prefix}.{_TORCH_LEAF[leaf]}'
        raise ValueError(
            f'PyTorch entry {key!r} has shape {list(np.shape(sd[key]))}, but the '
            f'Flax model needs {list(_torch_shape(leaf, want[leaf].shape))} '
            f'(PyTorch layout) there. Wrong checkpoint or model size?')
  return params, stats


def convert(sd: StateDict, abstract: Mapping, torch_prefix: Callable[[Path], str],
            name: str = 'model') -> Variables:
  """Fills the variables `abstract` (shapes only) from a PyTorch state dict.

  Args:
    sd: PyTorch arrays by `state_dict` name.
    abstract: {'params': ..., 'batch_stats'?: ...} of arrays or
      ShapeDtypeStructs, e.g. from `jax.eval_shape(model.init, ...)`.
    torch_prefix: maps a Flax layer path, e.g. ('layer1_0', 'conv1'), to the
      PyTorch module name, e.g. 'layer1.0.conv1'.
    name: what is converted, for the log.
  Returns:
    {'params': ..., 'batch_stats': ...} with float32 numpy arrays.
  """
  out: Variables = {'params': {}}
  stats_tree = abstract.get('batch_stats', {})
  used = set()
  for path, expected in _layers(abstract['params']):
    prefix = torch_prefix(path)
    expected_stats = _get(stats_tree, path) if 'scale' in expected else None
    params, stats = _convert_layer(sd, prefix, expected, expected_stats)
    _set(out['params'], path, params)
    if stats is not None:
      _set(out.setdefault('batch_stats', {}), path, stats)
    used.update(f'{prefix}.{_TORCH_LEAF[k]}' for k in {**params, **(stats or {})})
  unused = sorted(k for k in sd if k not in used and
                  not k.endswith('num_batches_tracked'))
  if unused:
    logging.info('%s: %d PyTorch entries not used, e.g. %s', name, len(unused),
                 unused[:5])
  return out


def _abstract(model, *inputs) -> Mapping:
  return jax.eval_shape(model.init, jax.random.key(0), *inputs)


def _dotted(path: Path) -> str:
  return '.'.join(path)


def inception_v3_from_torch(sd: StateDict, with_logits: bool = True) -> Variables:
  """torchvision / pytorch-fid Inception-v3 weights -> `InceptionV3` variables.

  Args:
    sd: state dict with torchvision names ('Conv2d_1a_3x3.conv.weight',
      'Mixed_5b.branch1x1.bn.running_mean', ..., 'fc.weight'); 'AuxLogits.*'
      is ignored.
    with_logits: also convert `fc`; the class count is read from 'fc.weight'
      (1000 ImageNet, 1008 pytorch-fid).
  Returns:
    Variables for `InceptionV3(num_classes=...)`, with or without
    `fid_variant` (it changes pooling only, not parameters).
  """
  num_classes = (torch_layout.take(sd, 'fc.weight').shape[0] if with_logits
                 else None)
  model = inception.InceptionV3(num_classes=num_classes)
  abstract = _abstract(model, jnp.zeros((1, 299, 299, 3)))
  return convert(sd, abstract, _dotted, 'inception_v3')


def image_encoder_from_torch(sd: StateDict) -> Variables:
  """AttnGAN DAMSM `image_encoder*.pth` -> `ImageEncoder('inception_v3')` variables.

  The Inception part uses torchvision's names (under our 'backbone' subtree);
  'emb_features.weight' (1x1 conv 768 -> D) and 'emb_cnn_code.weight/bias'
  (Linear 2048 -> D) are the head. D is read from 'emb_cnn_code.weight'.
  """
  dim = torch_layout.take(sd, 'emb_cnn_code.weight').shape[0]
  model = image_encoder.ImageEncoder(feature_dim=dim, backbone='inception_v3')
  abstract = _abstract(model, jnp.zeros((1, 299, 299, 3)))

  def prefix(path: Path) -> str:
    return _dotted(path[1:] if path[0] == image_encoder.BACKBONE else path)
  return convert(sd, abstract, prefix, 'image_encoder')


def _resnet_prefix(path: Path, top: Callable[[str], str]) -> str:
  """PyTorch module name of a ResNet layer.

  Args:
    path: Flax layer path, e.g. ('layer2_0', 'downsample_bn').
    top: maps torchvision's top-level names ('conv1', 'bn1', 'layer1', ...) to
      the checkpoint's (identity for torchvision, 'resnet.N' in CAPTION_CNN).
  Returns:
    e.g. top('layer2') + '.0.downsample.1'.
  """
  match = re.fullmatch(r'layer(\d+)_(\d+)', path[0])
  names = [top(f'layer{match[1]}'), match[2]] if match else [top(path[0])]
  for part in path[1:]:
    if part.startswith('downsample_'):
      names += ['downsample', '0' if part == 'downsample_conv' else '1']
    else:
      names.append(part)
  return '.'.join(names)


def _resnet_shape(sd: StateDict, prefix: Callable[[Path], str]) -> tuple[tuple, int]:
  """(stage sizes, stem width) read from a ResNet state dict."""
  stages = []
  while f'{prefix((f"layer{len(stages) + 1}_0", "conv1"))}.weight' in sd:
    i, n = len(stages) + 1, 0
    while f'{prefix((f"layer{i}_{n}", "conv1"))}.weight' in sd:
      n += 1
    stages.append(n)
  if not stages:
    raise KeyError(f'no ResNet blocks found: expected entries like '
                   f'{prefix(("layer1_0", "conv1"))!r}.weight')
  width = torch_layout.take(sd, f'{prefix(("conv1",))}.weight').shape[0]
  return tuple(stages), width


def resnet_from_torch(sd: StateDict) -> Variables:
  """torchvision bottleneck ResNet weights -> `ResNet` variables (fc ignored).

  Stage sizes and width are read from the names ('layer1.0.conv1.weight', ...)
  and the stem ('conv1.weight'); build `ResNet(stage_sizes, width)` to match.
  """
  prefix = lambda path: _resnet_prefix(path, lambda name: name)
  stages, width = _resnet_shape(sd, prefix)
  model = resnet.ResNet(stage_sizes=stages, width=width)
  abstract = _abstract(model, jnp.zeros((1, 64, 64, 3)))
  return convert(sd, abstract, prefix, f'resnet{stages}')


def resnet152_from_torch(sd: StateDict) -> Variables:
  """torchvision `resnet152` weights -> `ResNet()` variables (fc ignored)."""
  shape = _resnet_shape(sd, lambda path: _resnet_prefix(path, lambda n: n))
  if shape != (resnet.RESNET152_STAGES, 64):
    raise ValueError(f'state dict is a ResNet with stages {shape[0]} and width '
                     f'{shape[1]}, not ResNet-152 ({resnet.RESNET152_STAGES}, 64)')
  return resnet_from_torch(sd)


def _caption_cnn_name(name: str) -> str:
  """torchvision child name -> its index in CAPTION_CNN's `nn.Sequential`.

  `nn.Sequential(*list(resnet.children())[:-1])` numbers the children conv1 (0),
  bn1 (1), relu (2), maxpool (3), layer1..layer4 (4..7), avgpool (8).
  """
  if name in ('conv1', 'bn1'):
    return f"resnet.{('conv1', 'bn1').index(name)}"
  return f'resnet.{int(name.removeprefix("layer")) + 3}'


def captioner_from_torch(encoder_sd: StateDict, decoder_sd: StateDict) -> Variables:
  """MirrorGAN / yunjey-tutorial captioner weights -> `Captioner` variables.

  Args:
    encoder_sd: CAPTION_CNN / EncoderCNN: 'resnet.0.weight' (conv1),
      'resnet.1.*' (bn1), 'resnet.4.0.conv1.weight' (layer1.0.conv1) ...
      'resnet.7.*' (layer4), 'linear.weight/bias', 'bn.*'.
    decoder_sd: CAPTION_RNN / DecoderRNN: 'embed.weight',
      'lstm.weight_ih_l0' ..., 'linear.weight/bias'.
  Returns:
    Variables for `Captioner(vocab_size=V, feature_dim=F, embed_dim=E,
    hidden_size=H, backbone='resnet152')`, sizes as read from the weights
    (ResNet stages and width too, for tiny test ResNets).
  """
  backbone_prefix = lambda path: _resnet_prefix(path, _caption_cnn_name)
  stages, width = _resnet_shape(encoder_sd, backbone_prefix)
  vocab, embed_dim = torch_layout.take(decoder_sd, 'embed.weight').shape
  model = captioner.Captioner(
      vocab_size=vocab,
      feature_dim=torch_layout.take(encoder_sd, 'linear.weight').shape[0],
      embed_dim=embed_dim,
      hidden_size=torch_layout.take(decoder_sd, 'lstm.weight_hh_l0').shape[1],
      backbone='resnet152', resnet_stages=stages, resnet_width=width)
  abstract = _abstract(model, jnp.zeros((1, 64, 64, 3)), jnp.ones((1, 2), jnp.int32),
                       jnp.ones((1,), jnp.int32))

  def encoder_prefix(path: Path) -> str:
    if path[0] == image_encoder.BACKBONE:
      return backbone_prefix(path[1:])
    return _dotted(path)
  parts = {'encoder': (encoder_sd, encoder_prefix), 'decoder': (decoder_sd, _dotted)}
  out: Variables = {'params': {}, 'batch_stats': {}}
  for part, (sd, prefix) in parts.items():
    sub = {col: tree[part] for col, tree in abstract.items() if part in tree}
    converted = convert(sd, sub, prefix, f'captioner {part}')
    for col, tree in converted.items():
      out[col][part] = tree
  return out
