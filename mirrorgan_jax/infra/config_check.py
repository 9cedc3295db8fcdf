"""Checks a config before any data or model is built, from one table of rules.

`check(config, device_count, process_count)` raises `ConfigError` naming every
field whose value is out of range: one line per field, with the value and what
is allowed. `main` calls it first, so a negative learning rate or a batch that
does not split over the devices fails in a second, not after minutes of set-up
or, worse, trains to the end. Each new config field gets one row in `RULES`.
"""

import math
import os
from typing import Any, Callable

import ml_collections

from mirrorgan_jax.models import generator
from mirrorgan_jax.models import small_cnn


class ConfigError(ValueError):
  """The config asks for something that cannot run (message: one line per field)."""


# A rule: (requirement in words, predicate on the value).
Rule = tuple[str, Callable[[Any], bool]]


def _is_int(v: Any) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


POSITIVE_INT: Rule = ('an integer >= 1', lambda v: _is_int(v) and v >= 1)
NON_NEGATIVE_INT: Rule = ('an integer >= 0', lambda v: _is_int(v) and v >= 0)
POSITIVE: Rule = ('a finite number > 0', lambda v: _is_number(v) and v > 0)
NON_NEGATIVE: Rule = ('a finite number >= 0', lambda v: _is_number(v) and v >= 0)
FRACTION: Rule = ('a number in [0, 1)', lambda v: _is_number(v) and 0 <= v < 1)
UNIT: Rule = ('a number in [0, 1]', lambda v: _is_number(v) and 0 <= v <= 1)
WIDTHS: Rule = ('a non-empty list of integers >= 1',
                lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                and all(_is_int(w) and w >= 1 for w in v))
POWER_OF_TWO: Rule = ('a power of two >= 4',
                      lambda v: _is_int(v) and v >= 4 and v & (v - 1) == 0)
STEPS: Rule = ('a list of integers >= 0',
               lambda v: isinstance(v, (list, tuple)) and all(_is_int(s) and s >= 0 for s in v))


def one_of(*choices: Any) -> Rule:
  """A rule accepting exactly `choices`."""
  return (f'one of {", ".join(repr(c) for c in choices)}', lambda v: v in choices)


_SMALL_CNN = {'small_cnn_features': WIDTHS,
              'small_cnn_pooling': one_of(*small_cnn.POOLINGS),
              'small_cnn_downsample': one_of(*small_cnn.DOWNSAMPLES)}

RULES: dict[str, Rule] = {
    'data.name': one_of('captioned_shapes', 'cub', 'coco2014_captions'),
    'data.captions_per_image': POSITIVE_INT,
    'data.words_num': POSITIVE_INT,
    'data.shuffle_buffer': POSITIVE_INT,
    'data.prefetch': NON_NEGATIVE_INT,
    'model.compute_dtype': one_of('float32', 'bfloat16'),
    'model.text_encoder.embedding_dim': POSITIVE_INT,
    'model.text_encoder.hidden_size': POSITIVE_INT,
    'model.text_encoder.dropout_rate': FRACTION,
    'model.image_encoder.backbone': one_of('inception_v3', 'small_cnn'),
    'model.image_encoder.input_size': POSITIVE_INT,
    **{f'model.image_encoder.{k}': r for k, r in _SMALL_CNN.items()},
    'model.generator.ngf': POSITIVE_INT,
    'model.generator.z_dim': POSITIVE_INT,
    'model.generator.condition_dim': POSITIVE_INT,
    'model.generator.num_stages': POSITIVE_INT,
    'model.generator.base_size': POWER_OF_TWO,
    'model.generator.num_res_blocks': NON_NEGATIVE_INT,
    'model.generator.initial_channels': NON_NEGATIVE_INT,
    'model.generator.glam': one_of(*generator.GLAM_VARIANTS),
    'model.discriminator.ndf': POSITIVE_INT,
    'model.captioner.backbone': one_of('resnet152', 'small_cnn'),
    'model.captioner.input_size': POSITIVE_INT,
    **{f'model.captioner.{k}': r for k, r in _SMALL_CNN.items()},
    'model.captioner.feature_dim': POSITIVE_INT,
    'model.captioner.embed_dim': POSITIVE_INT,
    'model.captioner.hidden_size': POSITIVE_INT,
    'model.captioner.max_decode_len': POSITIVE_INT,
    'model.captioner.beam_size': POSITIVE_INT,
    'loss.stream_weight': NON_NEGATIVE,
    'loss.kl_weight': NON_NEGATIVE,
    'loss.d_translate': NON_NEGATIVE,
    'loss.stream_translate': NON_NEGATIVE,
    'loss.color_consistency': NON_NEGATIVE,
    'loss.stream_lower_weight': NON_NEGATIVE,
    'loss.stream_lower_stages': NON_NEGATIVE_INT,
    'loss.gamma1': POSITIVE,
    'loss.gamma2': POSITIVE,
    'loss.gamma3': POSITIVE,
    'optim.g_learning_rate': POSITIVE,
    'optim.d_learning_rate': POSITIVE,
    'optim.b1': FRACTION,
    'optim.b2': FRACTION,
    'optim.ema_decay': UNIT,
    'damsm.batch_size': POSITIVE_INT,
    'damsm.num_epochs': POSITIVE_INT,
    'damsm.learning_rate': POSITIVE,
    'damsm.grad_clip': POSITIVE,
    'damsm.eval_every_epochs': POSITIVE_INT,
    'stream.batch_size': POSITIVE_INT,
    'stream.num_epochs': POSITIVE_INT,
    'stream.learning_rate': POSITIVE,
    'stream.lr_schedule': one_of('constant', 'cosine'),
    'stream.eval_every_epochs': POSITIVE_INT,
    'train.batch_size': POSITIVE_INT,
    'train.num_epochs': POSITIVE_INT,
    'train.log_every_steps': POSITIVE_INT,
    'train.eval_every_steps': POSITIVE_INT,
    'train.checkpoint_every_steps': POSITIVE_INT,
    'train.keep_checkpoints': POSITIVE_INT,
    'train.probe_samples': NON_NEGATIVE_INT,
    'train.profile_steps': STEPS,
    'parallel.mode': one_of('jit', 'pmap'),
    'eval.num_samples': POSITIVE_INT,
    'eval.batch_size': POSITIVE_INT,
    'eval.is_splits': POSITIVE_INT,
    'eval.r_precision_folds': POSITIVE_INT,
    'eval.r_precision_mismatched': POSITIVE_INT,
    'eval.redescription_beam_size': POSITIVE_INT,
    'oracle.image_size': POSITIVE_INT,
    'oracle.features': WIDTHS,
    'oracle.batch_size': POSITIVE_INT,
    'oracle.num_epochs': POSITIVE_INT,
    'oracle.learning_rate': POSITIVE,
}
# Global batches that are split over every device of every process.
SHARDED_BATCHES = ('damsm.batch_size', 'stream.batch_size', 'train.batch_size',
                   'oracle.batch_size')
MANUAL_DATASETS = ('cub', 'coco2014_captions')  # Built from files the user downloads.


def _get(config: ml_collections.ConfigDict, path: str) -> tuple[bool, Any]:
  node = config
  for key in path.split('.'):
    if key not in node:
      return False, None
    node = node[key]
  return True, node


def problems(config: ml_collections.ConfigDict, device_count: int = 1,
             process_count: int = 1, dataset_prepared: bool = True) -> list[str]:
  """Every problem of `config`, one sentence each (empty when it can run).

  Args:
    config: the run's config.
    device_count: devices of all processes (the batches split over them).
    process_count: JAX processes (each reads its share of a batch).
    dataset_prepared: whether the TFDS dataset is already built; if not, a
      CUB/COCO config needs `data.manual_dir`.
  """
  found = []
  for path, (requirement, ok) in RULES.items():
    present, value = _get(config, path)
    if present and not ok(value):
      found.append(f'{path} = {value!r}: must be {requirement}')
  for path in SHARDED_BATCHES:
    present, value = _get(config, path)
    if present and _is_int(value) and value >= 1 and value % device_count:
      found.append(f'{path} = {value}: must be divisible by the {device_count} devices '
                   f'({process_count} process(es)); e.g. '
                   f'{max(device_count, value // device_count * device_count)}')
  if config.model.generator.get('initial_channels', 0) and (
      config.model.generator.initial_channels < config.model.generator.ngf):
    found.append(f'model.generator.initial_channels = '
                 f'{config.model.generator.initial_channels}: must be 0 or >= ngf '
                 f'({config.model.generator.ngf})')
  lower = config.loss.get('stream_lower_stages', 0)
  if (config.loss.get('stream_lower_weight', 0) and _is_int(lower)
      and lower > config.model.generator.num_stages - 1):
    found.append(f'loss.stream_lower_stages = {lower}: G has only '
                 f'{config.model.generator.num_stages - 1} stage(s) below the last')
  found += _backbone_problems(config)
  if config.damsm.get('swap_negatives') and config.data.name != 'captioned_shapes':
    found.append(f'damsm.swap_negatives = True: needs data.name = \'captioned_shapes\' '
                 f'(its attribute word tables), got {config.data.name!r}')
  manual_dir = config.data.manual_dir
  if manual_dir and '://' not in manual_dir and not os.path.isdir(manual_dir):
    found.append(f'data.manual_dir = {manual_dir!r}: no such directory')
  elif (not dataset_prepared and config.data.name in MANUAL_DATASETS
        and not manual_dir):
    found.append(f"data.manual_dir = '': {config.data.name} is not built yet; point "
                 'data.manual_dir at the downloaded raw files (README, "Datasets")')
  return found


# Sections that may take the classifier's backbone, and the `model` encoder it fills.
BACKBONE_USERS = (('damsm', 'image_encoder'), ('stream', 'captioner'))


def _backbone_problems(config: ml_collections.ConfigDict) -> list[str]:
  """`<section>.pretrained_backbone = 'classifier'` needs an encoder shaped like it."""
  found = []
  for section, encoder_name in BACKBONE_USERS:
    choice = config[section].get('pretrained_backbone', '')
    if not choice:
      continue
    if choice != 'classifier':
      found.append(f"{section}.pretrained_backbone = {choice!r}: must be '' or 'classifier'")
      continue
    encoder, oracle = config.model[encoder_name], config.oracle
    encoder_path = f'model.{encoder_name}'
    wanted = {'data.name': (config.data.name, 'captioned_shapes'),
              f'{encoder_path}.backbone': (encoder.backbone, 'small_cnn'),
              f'{encoder_path}.small_cnn_downsample': (
                  encoder.get('small_cnn_downsample', 'stride'), 'maxpool'),
              f'{encoder_path}.small_cnn_features': (
                  tuple(encoder.small_cnn_features), tuple(oracle.features)),
              f'{encoder_path}.input_size': (encoder.input_size, oracle.image_size)}
    found += [f"{section}.pretrained_backbone = 'classifier' needs {path} = {want!r} (the "
              f'classifier is the oracle network of section `oracle`), got {got!r}'
              for path, (got, want) in wanted.items() if got != want]
  return found


def check(config: ml_collections.ConfigDict, device_count: int = 1,
          process_count: int = 1, dataset_prepared: bool = True) -> None:
  """Raises ConfigError listing `problems(...)`, if any."""
  found = problems(config, device_count, process_count, dataset_prepared)
  if found:
    raise ConfigError('invalid config: ' + '; '.join(found))
