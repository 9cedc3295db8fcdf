"""Loads an experiment config with command-line overrides for the secondary CLIs.

`python -m mirrorgan_jax.main` takes `--config` through absl flags; the
argparse-based tools (`sample_cli`, `pretrained`) take the same syntax
(`configs/cub.py:smoke`, `--config.train.batch_size=8`) through this function.
"""

from typing import Sequence

from absl import flags
import ml_collections
from ml_collections import config_flags


def load_config(spec: str, overrides: Sequence[str] = (),
                program: str = 'mirrorgan_jax') -> ml_collections.ConfigDict:
  """The config `spec` (path[:arg]) with `--config.x=y` overrides applied.

  Raises:
    ValueError: the file cannot be loaded, an override names no config field,
      or `overrides` holds something other than `--config.*` flags.
  """
  argv = [program, f'--config={spec}', *overrides]
  fv = flags.FlagValues()  # Private: no clash with the caller's flags.
  config_flags.DEFINE_config_file('config', None, 'Experiment config.', flag_values=fv,
                                  lock_config=True, sys_argv=argv)
  try:
    rest = fv(argv)
    _ = fv.config.model  # A config file that failed to load raises only when read.
  except (AttributeError, KeyError) as e:  # An override names no config field.
    field = str(e).strip('\'"')
    raise ValueError(f'bad config override in {" ".join(overrides)}: no field '
                     f'{field}') from None
  except (OSError, flags.Error) as e:
    raise ValueError(f'bad --config {spec}: {e}') from None
  if len(rest) > 1:
    raise ValueError(f'unexpected arguments: {rest[1:]}')
  return fv.config
