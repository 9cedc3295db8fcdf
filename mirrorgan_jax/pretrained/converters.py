"""Turns the authors' PyTorch checkpoints into MirrorGAN-JAX artifacts.

* `convert_damsm`: AttnGAN's DAMSM encoders (`text_encoder200.pth`,
  `image_encoder200.pth`) -> the artifact the DAMSM phase writes, variables
  {'text_encoder': ..., 'image_encoder': ...}.
* `convert_stream`: MirrorGAN's captioner (`cnn_encoder*.ckpt`,
  `rnn_decoder*.ckpt`) -> the artifact the STREAM phase writes, variables
  {'captioner': ...}.
* `convert_inception`: torchvision's `inception_v3_google-*.pth` or pytorch-fid's
  `pt_inception-2015-12-05-*.pth` -> Inception-v3 variables for FID / IS.

Checkpoints are PyTorch files (read with `torch.load(..., weights_only=True)`,
which runs no pickled code; torch is needed for this only and imported lazily)
or `.npz` files of numpy arrays keyed by `state_dict` names. The vocabulary is
our JSON vocabulary or a text file with one word per line, line 1 = `<end>`
(AttnGAN keeps it in a pickle, which we never load: export `ixtoword` in id
order). Every network is checked against the config's models before anything
is written: sizes read from the checkpoint that differ from the config are
reported with the override that fixes them.
"""

import os
import pickle
from typing import Any, Mapping

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np

from mirrorgan_jax import artifacts
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import cub
from mirrorgan_jax.models import factory
from mirrorgan_jax.pretrained import gan_from_torch
from mirrorgan_jax.pretrained import torch_layout
from mirrorgan_jax.pretrained import vision_from_torch

StateDict = dict[str, np.ndarray]
PathLike = os.PathLike | str


def _existing(path: PathLike, what: str) -> epath.Path:
  path = epath.Path(path)
  if not path.exists():
    raise FileNotFoundError(f'{what} not found: {path}')
  return path


def _torch_state_dict(path: epath.Path) -> StateDict:
  """Reads a PyTorch state dict with `weights_only=True` (no code execution)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top  # Optional dependency.
  except ImportError as e:
    raise ImportError(
        f'reading {path} needs PyTorch, which is used for weight conversion only: '
        '`pip install torch`. Alternatively save the state dict as .npz '
        '(numpy.savez(f, **{k: v.numpy() for k, v in sd.items()})) and pass that.'
    ) from e
  try:
    with path.open('rb') as f:
      obj = torch.load(f, map_location='cpu', weights_only=True)
  except pickle.UnpicklingError as e:
    raise ValueError(f'{path} is not a plain PyTorch state dict (weights_only '
                     f'loading refused it): {e}') from e
  if isinstance(obj, Mapping) and isinstance(obj.get('state_dict'), Mapping):
    obj = obj['state_dict']
  if not isinstance(obj, Mapping):
    raise ValueError(f'{path} holds a {type(obj).__name__}, not a state dict')
  others = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
  if others:
    raise ValueError(f'{path} is not a state dict (names -> tensors): entries '
                     f'{others[:5]} are not tensors')
  return {k: (v.float() if v.is_floating_point() else v).numpy()
          for k, v in obj.items()}


def load_state_dict(path: PathLike, what: str = 'checkpoint') -> StateDict:
  """Reads a state dict from a PyTorch file or an `.npz` of numpy arrays.

  Args:
    path: `.npz` (numpy arrays keyed by state_dict names) or anything else
      `torch.save` wrote (`.pth`, `.ckpt`, ...).
    what: what the file is, for error messages.
  Returns:
    name -> numpy array, without the 'module.' prefix of nn.DataParallel.
  """
  path = _existing(path, what)
  if path.suffix == '.npz':
    with path.open('rb') as f, np.load(f, allow_pickle=False) as data:
      sd = {k: data[k] for k in data.files}
  else:
    sd = _torch_state_dict(path)
  if not sd:
    raise ValueError(f'{what} {path} holds no arrays')
  if all(k.startswith('module.') for k in sd):
    sd = {k[len('module.'):]: v for k, v in sd.items()}
  return sd


def load_vocabulary(path: PathLike) -> vocab_lib.Vocabulary:
  """Reads our JSON vocabulary, or a text file with one word per line (line 1 `<end>`)."""
  path = _existing(path, 'vocabulary')
  text = path.read_text()
  if path.suffix == '.json' or text.lstrip().startswith('{'):
    return vocab_lib.Vocabulary.load(path)
  words = [w.strip() for w in text.rstrip('\n').split('\n')]
  blank = [i + 1 for i, w in enumerate(words) if not w]
  if blank:
    raise ValueError(f'vocabulary {path}: line {blank[0]} is empty (one word per line)')
  if words[0] != vocab_lib.PAD:
    raise ValueError(f'vocabulary {path}: line 1 must be {vocab_lib.PAD!r} (id 0, '
                     f'padding and end of caption), got {words[0]!r}')
  return vocab_lib.Vocabulary(words)


def _check_vocab_size(vocab: vocab_lib.Vocabulary, rows: int, entry: str) -> None:
  if len(vocab) != rows:
    raise ValueError(
        f'the vocabulary has {len(vocab):,} words but the checkpoint\'s {entry} has '
        f'{rows:,} rows: give the vocabulary the checkpoint was trained with, in '
        f'its id order (AttnGAN\'s CUB encoders have {cub.VOCAB_SIZE:,} words).')


def _check_sizes(sizes: Mapping[str, tuple[int, Any]]) -> None:
  """Raises ValueError listing config fields that differ from the checkpoint.

  Args:
    sizes: config field (e.g. 'model.text_encoder.hidden_size') ->
      (value read from the checkpoint, value in the config).
  """
  wrong = {k: v for k, v in sizes.items() if v[0] != v[1]}
  if wrong:
    lines = [f'{k}: checkpoint {ckpt}, config {conf} (--config.{k}={ckpt})'
             for k, (ckpt, conf) in wrong.items()]
    raise ValueError('the checkpoint does not fit the config:\n  ' + '\n  '.join(lines))


def _template(config, module) -> Any:
  """The module's variables as ShapeDtypeStructs (nothing allocated)."""
  return jax.eval_shape(lambda: factory.init_variables(config, module, jax.random.key(0)))


def _count(tree: Any) -> int:
  return sum(int(np.size(x)) for x in jax.tree.leaves(tree))


def _require_backbone(section: ml_collections.ConfigDict, name: str,
                      backbone: str, what: str) -> None:
  if section.backbone != backbone:
    raise ValueError(
        f'{what} checkpoints use a {backbone} backbone, but config.model.{name}.'
        f'backbone is {section.backbone!r} (--config.model.{name}.backbone={backbone})')


def convert_damsm(text_encoder: PathLike, image_encoder: PathLike, vocab: PathLike,
                  config: ml_collections.ConfigDict, out: PathLike) -> dict:
  """AttnGAN DAMSM encoders -> the DAMSM-phase artifact in `out`.

  Args:
    text_encoder: RNN_ENCODER state dict (`text_encoder200.pth` or .npz).
    image_encoder: CNN_ENCODER state dict (`image_encoder200.pth` or .npz).
    vocab: the vocabulary the encoders were trained with (JSON or word list).
    config: experiment config; `model.text_encoder` / `model.image_encoder`
      must match the checkpoints (Inception-v3 backbone).
    out: artifact directory.
  Returns:
    The artifact's metadata.
  """
  m = config.model
  _require_backbone(m.image_encoder, 'image_encoder', 'inception_v3',
                    'AttnGAN DAMSM image')
  words = load_vocabulary(vocab)
  text_sd = load_state_dict(text_encoder, 'text encoder checkpoint')
  rows, embedding_dim = torch_layout.take(text_sd, 'encoder.weight').shape
  _check_vocab_size(words, rows, "embedding 'encoder.weight'")
  _check_sizes({
      'model.text_encoder.embedding_dim': (embedding_dim, m.text_encoder.embedding_dim),
      'model.text_encoder.hidden_size': (
          torch_layout.take(text_sd, 'rnn.weight_hh_l0').shape[1],
          m.text_encoder.hidden_size)})
  models = factory.create_models(config, len(words))
  text_vars = gan_from_torch.text_encoder_from_torch(text_sd)
  artifacts.check_tree(text_vars, _template(config, models.text_encoder),
                       'the converted text encoder')

  image_sd = load_state_dict(image_encoder, 'image encoder checkpoint')
  _check_sizes({'model.text_encoder.hidden_size': (
      torch_layout.take(image_sd, 'emb_cnn_code.weight').shape[0] // 2,
      m.text_encoder.hidden_size)})
  image_vars = vision_from_torch.image_encoder_from_torch(image_sd)
  artifacts.check_tree(image_vars, _template(config, models.image_encoder),
                       'the converted image encoder')
  meta = {'phase': 'damsm', 'source': 'converted', 'vocab_size': len(words),
          **artifacts.meta_sections(config, artifacts.DAMSM),
          'converted_from': {'text_encoder': str(text_encoder),
                             'image_encoder': str(image_encoder)}}
  variables = {artifacts.TEXT: text_vars, artifacts.IMAGE: image_vars}
  artifacts.save(out, variables, words, meta)
  logging.info('DAMSM artifact written to %s (text encoder %d, image encoder %d '
               'parameters, %d words).', out, _count(text_vars['params']),
               _count(image_vars['params']), len(words))
  return meta


def convert_stream(encoder: PathLike, decoder: PathLike, vocab: PathLike,
                   config: ml_collections.ConfigDict, out: PathLike) -> dict:
  """MirrorGAN's STREAM captioner -> the STREAM-phase artifact in `out`.

  Args:
    encoder: CAPTION_CNN state dict (`cnn_encoder*.ckpt` or .npz; ResNet-152).
    decoder: CAPTION_RNN state dict (`rnn_decoder*.ckpt` or .npz).
    vocab: the vocabulary the captioner was trained with (the DAMSM one).
    config: experiment config; `model.captioner` must match the checkpoints.
    out: artifact directory.
  Returns:
    The artifact's metadata.
  """
  c = config.model.captioner
  _require_backbone(c, 'captioner', 'resnet152', 'MirrorGAN STREAM')
  words = load_vocabulary(vocab)
  decoder_sd = load_state_dict(decoder, 'captioner decoder checkpoint')
  rows, embed_dim = torch_layout.take(decoder_sd, 'embed.weight').shape
  _check_vocab_size(words, rows, "embedding 'embed.weight'")
  encoder_sd = load_state_dict(encoder, 'captioner encoder checkpoint')
  _check_sizes({
      'model.captioner.feature_dim': (
          torch_layout.take(encoder_sd, 'linear.weight').shape[0], c.feature_dim),
      'model.captioner.embed_dim': (embed_dim, c.embed_dim),
      'model.captioner.hidden_size': (
          torch_layout.take(decoder_sd, 'lstm.weight_hh_l0').shape[1], c.hidden_size)})
  captioner_vars = vision_from_torch.captioner_from_torch(encoder_sd, decoder_sd)
  models = factory.create_models(config, len(words))
  artifacts.check_tree(captioner_vars, _template(config, models.captioner),
                       'the converted captioner')
  meta = {'phase': 'stream', 'source': 'converted', 'vocab_size': len(words),
          **artifacts.meta_sections(config, artifacts.STREAM),
          'converted_from': {'encoder': str(encoder), 'decoder': str(decoder)}}
  artifacts.save(out, {artifacts.CAPTIONER: captioner_vars}, words, meta)
  logging.info('STREAM artifact written to %s (%d parameters, %d words).', out,
               _count(captioner_vars['params']), len(words))
  return meta


_PYTORCH_FID_CLASSES = 1008  # The TF FID graph's logits (pytorch-fid's weights).


def convert_inception(weights: PathLike, out: PathLike) -> dict:
  """torchvision / pytorch-fid Inception-v3 weights -> variables + meta in `out`.

  Writes `out/variables` (Orbax, `InceptionV3(num_classes)` variables) and
  `out/meta.json` {'phase': 'inception', 'source': 'converted', 'num_classes',
  'variant': 'pytorch_fid' (1008 classes, the FID reference) or 'torchvision'}.
  Read it back with `artifacts.read(out, artifacts.INCEPTION)`.
  """
  variables = vision_from_torch.inception_v3_from_torch(
      load_state_dict(weights, 'Inception-v3 weights'))
  num_classes = int(variables['params']['fc']['kernel'].shape[1])
  variant = 'pytorch_fid' if num_classes == _PYTORCH_FID_CLASSES else 'torchvision'
  meta = {'phase': 'inception', 'source': 'converted', 'num_classes': num_classes,
          'variant': variant,
          'converted_from': str(weights)}
  artifacts.save(out, variables, None, meta)
  logging.info('Inception-v3 (%s, %d classes) written to %s.', meta['variant'],
               num_classes, out)
  return meta
