"""Layout conversions from PyTorch `state_dict` arrays to Flax parameters.

PyTorch stores images NCHW, `Conv2d.weight` as [out, in, kh, kw] and
`Linear.weight` as [out, in]; Flax uses NHWC, conv kernels [kh, kw, in, out]
and dense kernels [in, out]. Every converter in this package goes through these
functions, so the name mapping of each network is the only thing it defines.
A state dict here is a plain `dict[str, np.ndarray]` (no torch needed).
"""

from typing import Mapping

import numpy as np

StateDict = Mapping[str, np.ndarray]


def take(state_dict: StateDict, name: str) -> np.ndarray:
  """Returns `state_dict[name]` as float32, with an error naming what is missing."""
  if name not in state_dict:
    near = sorted(k for k in state_dict if k.split('.')[0] == name.split('.')[0])
    raise KeyError(
        f'PyTorch state dict has no entry {name!r}. Entries with the same '
        f'prefix: {near[:10] or "none"}. Is this the right checkpoint?')
  return np.asarray(state_dict[name], dtype=np.float32)


def conv(state_dict: StateDict, prefix: str, bias: bool = False) -> dict:
  """`Conv2d` at `prefix` -> {'kernel': [kh, kw, in, out], 'bias'?}."""
  out = {'kernel': take(state_dict, f'{prefix}.weight').transpose(2, 3, 1, 0)}
  if bias:
    out['bias'] = take(state_dict, f'{prefix}.bias')
  return out


def dense(state_dict: StateDict, prefix: str, bias: bool = True) -> dict:
  """`Linear` at `prefix` -> {'kernel': [in, out], 'bias'?}."""
  out = {'kernel': take(state_dict, f'{prefix}.weight').T}
  if bias:
    out['bias'] = take(state_dict, f'{prefix}.bias')
  return out


def embedding(state_dict: StateDict, prefix: str) -> dict:
  """`Embedding` at `prefix` -> {'embedding': [vocab, dim]}."""
  return {'embedding': take(state_dict, f'{prefix}.weight')}


def batch_norm(state_dict: StateDict, prefix: str) -> tuple[dict, dict]:
  """`BatchNorm{1,2}d` at `prefix` -> (params {'scale','bias'}, stats {'mean','var'})."""
  params = {'scale': take(state_dict, f'{prefix}.weight'),
            'bias': take(state_dict, f'{prefix}.bias')}
  stats = {'mean': take(state_dict, f'{prefix}.running_mean'),
           'var': take(state_dict, f'{prefix}.running_var')}
  return params, stats


def lstm(state_dict: StateDict, prefix: str, suffix: str = '') -> dict:
  """One direction of `nn.LSTM` -> params of `models.lstm.LSTM`.

  Args:
    state_dict: PyTorch arrays.
    prefix: module name, e.g. 'rnn'.
    suffix: '' for the forward direction, '_reverse' for the backward one.
  Returns:
    {'w_ih': [in, 4H], 'w_hh': [H, 4H], 'b_ih': [4H], 'b_hh': [4H]}, gate order
    (input, forget, cell, output) kept as PyTorch stores it.
  """
  return {
      'w_ih': take(state_dict, f'{prefix}.weight_ih_l0{suffix}').T,
      'w_hh': take(state_dict, f'{prefix}.weight_hh_l0{suffix}').T,
      'b_ih': take(state_dict, f'{prefix}.bias_ih_l0{suffix}'),
      'b_hh': take(state_dict, f'{prefix}.bias_hh_l0{suffix}'),
  }
