"""Converters from the authors' PyTorch GAN-side state dicts to Flax variables.

Inputs are `dict[str, np.ndarray]` keyed by PyTorch `state_dict` names (no torch
needed): AttnGAN's RNN_ENCODER (`encoder.`, `rnn.`), MirrorGAN/AttnGAN G_NET
(`ca_net.`, `h_net1.`, `h_net2.`, `img_net1.`, ...) and D_NET64/128/256
(`img_code_s16.`, `UNCOND_DNET.`, `COND_DNET.`, ...). Outputs are
`{'params': ..., 'batch_stats': ...}` for the modules in `mirrorgan_jax.models`
(`batch_stats` only where the module has BatchNorm).

Missing entries raise KeyError naming the entry. The whole-checkpoint
converters (text encoder, generator, discriminator) also raise ValueError on
entries they did not use. Pass `template` (e.g. `jax.eval_shape(model.init,
...)`) to check every converted shape against the model before loading it.
"""

from typing import Any, Iterator, Mapping

import numpy as np

from mirrorgan_jax import artifacts
from mirrorgan_jax.pretrained import torch_layout

StateDict = torch_layout.StateDict
Variables = dict[str, Any]


class _Recorder(Mapping):
  """A read-only view of a state dict that remembers which entries were read."""

  def __init__(self, state_dict: StateDict):
    self._sd = state_dict
    self.used = set()

  def __getitem__(self, key: str) -> np.ndarray:
    value = self._sd[key]
    self.used.add(key)
    return value

  def __iter__(self) -> Iterator[str]:
    return iter(self._sd)

  def __len__(self) -> int:
    return len(self._sd)

  def check_all_used(self, what: str) -> None:
    """Raises ValueError if parameters other than BN counters were not read."""
    unused = sorted(k for k in self._sd if k not in self.used
                    and not k.endswith('num_batches_tracked'))
    if unused:
      raise ValueError(
          f'{len(unused)} entries of the PyTorch state dict are not part of a '
          f'{what}: {unused[:10]}. Is this the right checkpoint / configuration?')


def _strip_data_parallel(state_dict: StateDict) -> StateDict:
  """Drops the 'module.' prefix that nn.DataParallel adds to every name."""
  if state_dict and all(k.startswith('module.') for k in state_dict):
    return {k[len('module.'):]: v for k, v in state_dict.items()}
  return state_dict


def _finish(params: dict, stats: dict, template: Variables | None) -> Variables:
  out = {'params': params}
  if stats:
    out['batch_stats'] = stats
  if template is not None:
    artifacts.check_tree(out, template, 'the converted checkpoint')
  return out


def _conv1x1_as_dense(state_dict: StateDict, prefix: str) -> dict:
  """A bias-free 1x1 `Conv2d` [out, in, 1, 1] -> dense kernel [in, out]."""
  w = torch_layout.take(state_dict, f'{prefix}.weight')
  if w.ndim != 4 or w.shape[2:] != (1, 1):
    raise ValueError(f'{prefix}.weight should be a 1x1 conv, got {w.shape}')
  return {'kernel': w[:, :, 0, 0].T}


def _conv_bn(state_dict: StateDict, conv: str, bn: str) -> tuple[dict, dict]:
  """conv (no bias) + BatchNorm -> ({'conv', 'bn'} params, {'bn'} stats)."""
  bn_params, bn_stats = torch_layout.batch_norm(state_dict, bn)
  return ({'conv': torch_layout.conv(state_dict, conv), 'bn': bn_params},
          {'bn': bn_stats})


def _count(state_dict: StateDict, pattern: str, start: int) -> int:
  """How many consecutive i >= start have `pattern.format(i)` in the dict."""
  i = start
  while pattern.format(i) in state_dict:
    i += 1
  return i - start


def text_encoder_from_torch(state_dict: StateDict,
                            template: Variables | None = None) -> Variables:
  """AttnGAN RNN_ENCODER (`encoder.weight`, `rnn.*_l0[_reverse]`) -> TextEncoder."""
  sd = _Recorder(_strip_data_parallel(state_dict))
  params = {'embedding': torch_layout.embedding(sd, 'encoder'),
            'forward_lstm': torch_layout.lstm(sd, 'rnn'),
            'backward_lstm': torch_layout.lstm(sd, 'rnn', '_reverse')}
  sd.check_all_used('DAMSM text encoder (RNN_ENCODER, one LSTM layer)')
  return _finish(params, {}, template)


def _ca_params(sd: StateDict, prefix: str) -> dict:
  return {'fc': torch_layout.dense(sd, f'{prefix}fc')}


def ca_from_torch(state_dict: StateDict, prefix: str = '',
                  template: Variables | None = None) -> Variables:
  """CA_NET (`{prefix}fc.*`) -> ConditioningAugmentation."""
  return _finish(_ca_params(state_dict, prefix), {}, template)


def _word_attention_params(sd: StateDict, prefix: str) -> dict:
  return {'conv_context': _conv1x1_as_dense(sd, f'{prefix}conv_context')}


def word_attention_from_torch(state_dict: StateDict, prefix: str = '',
                              template: Variables | None = None) -> Variables:
  """Word attention (`{prefix}conv_context`, AttnGAN/MirrorGAN) -> WordAttention."""
  return _finish(_word_attention_params(state_dict, prefix), {}, template)


def _init_stage(sd: StateDict, prefix: str) -> tuple[dict, dict]:
  num_up = _count(sd, prefix + 'upsample{}.1.weight', 1)
  bn_params, bn_stats = torch_layout.batch_norm(sd, f'{prefix}fc.1')
  params = {'fc': torch_layout.dense(sd, f'{prefix}fc.0', bias=False),
            'fc_bn': bn_params}
  stats = {'fc_bn': bn_stats}
  for i in range(1, num_up + 1):
    up = f'{prefix}upsample{i}'
    params[f'upsample{i}'], stats[f'upsample{i}'] = _conv_bn(
        sd, f'{up}.1', f'{up}.2')
  return params, stats


def init_stage_from_torch(state_dict: StateDict, prefix: str = '',
                          template: Variables | None = None) -> Variables:
  """INIT_STAGE_G (`{prefix}fc.0/1`, `{prefix}upsample{i}.1/2`) -> InitialStage."""
  return _finish(*_init_stage(state_dict, prefix), template)


def _refinement_stage(sd: StateDict, prefix: str, glam: str
                      ) -> tuple[dict, dict]:
  """NEXT_STAGE_G: MirrorGAN's ('reference') or AttnGAN's ('word_only')."""
  params = {'word_attention': _word_attention_params(sd, f'{prefix}att.')}
  stats = {}
  if glam == 'reference':
    params['sentence_attention'] = {
        'linear': torch_layout.dense(sd, f'{prefix}att.linear'),
        'conv_sentence_vis': _conv1x1_as_dense(
            sd, f'{prefix}att.conv_sentence_vis')}
    params['fusion'] = torch_layout.conv(sd, f'{prefix}conv')
  num_res = _count(sd, prefix + 'residual.{}.block.0.weight', 0)
  for j in range(num_res):
    block = f'{prefix}residual.{j}.block'
    p1, s1 = _conv_bn(sd, f'{block}.0', f'{block}.1')
    p2, s2 = _conv_bn(sd, f'{block}.3', f'{block}.4')
    params[f'residual{j}'] = {'conv1': p1['conv'], 'bn1': p1['bn'],
                              'conv2': p2['conv'], 'bn2': p2['bn']}
    stats[f'residual{j}'] = {'bn1': s1['bn'], 'bn2': s2['bn']}
  params['upsample'], stats['upsample'] = _conv_bn(
      sd, f'{prefix}upsample.1', f'{prefix}upsample.2')
  return params, stats


def generator_from_torch(state_dict: StateDict, glam: str = 'reference',
                         template: Variables | None = None) -> Variables:
  """G_NET -> Generator with `glam='reference'` (MirrorGAN) or 'word_only' (AttnGAN).

  The number of stages, upsampling blocks and residual blocks are read from the
  names; build the Generator with the matching config (and pass `template` to
  check). glam='paper' has no PyTorch counterpart.
  """
  if glam not in ('reference', 'word_only'):
    raise ValueError(
        f"only glam='reference' (MirrorGAN) or 'word_only' (AttnGAN) "
        f'checkpoints exist, got {glam!r}')
  sd = _Recorder(_strip_data_parallel(state_dict))
  params = {'ca': _ca_params(sd, 'ca_net.')}
  stats = {}
  params['stage0'], stats['stage0'] = _init_stage(sd, 'h_net1.')
  num_stages = 1 + _count(sd, 'h_net{}.upsample.1.weight', 2)
  for i in range(num_stages):
    if i:
      params[f'stage{i}'], stats[f'stage{i}'] = _refinement_stage(
          sd, f'h_net{i + 1}.', glam)
    params[f'image{i}'] = {'conv': torch_layout.conv(sd, f'img_net{i + 1}.img.0')}
  sd.check_all_used(f'G_NET with glam={glam!r}')
  return _finish(params, stats, template)


def _discriminator_names(image_size: int) -> list[tuple[str, str | None]]:
  """(conv, batch norm) entry prefixes of the reference D trunk, in order."""
  names = [('img_code_s16.0', None), ('img_code_s16.2', 'img_code_s16.3'),
           ('img_code_s16.5', 'img_code_s16.6'), ('img_code_s16.8', 'img_code_s16.9')]
  if image_size == 128:
    names += [('img_code_s32.0', 'img_code_s32.1'),
              ('img_code_s32_1.0', 'img_code_s32_1.1')]
  elif image_size == 256:
    names += [(f'img_code_{n}.0', f'img_code_{n}.1')
              for n in ('s32', 's64', 's64_1', 's64_2')]
  elif image_size != 64:
    raise ValueError(f'reference discriminators exist for 64, 128 and 256 px, '
                     f'got image_size={image_size}')
  return names


def discriminator_from_torch(state_dict: StateDict, image_size: int,
                             template: Variables | None = None) -> Variables:
  """D_NET64/128/256 (with UNCOND_DNET and COND_DNET) -> Discriminator(image_size)."""
  sd = _Recorder(_strip_data_parallel(state_dict))
  params, stats = {}, {}
  for i, (conv, bn) in enumerate(_discriminator_names(image_size)):
    if bn is None:
      params[f'trunk_{i}'] = {'conv': torch_layout.conv(sd, conv)}
    else:
      params[f'trunk_{i}'], stats[f'trunk_{i}'] = _conv_bn(sd, conv, bn)
  params['uncond_head'] = {
      'conv': torch_layout.conv(sd, 'UNCOND_DNET.outlogits.0', bias=True)}
  params['joint'], stats['joint'] = _conv_bn(
      sd, 'COND_DNET.jointConv.0', 'COND_DNET.jointConv.1')
  params['cond_head'] = {
      'conv': torch_layout.conv(sd, 'COND_DNET.outlogits.0', bias=True)}
  sd.check_all_used(f'D_NET{image_size}')
  return _finish(params, stats, template)
