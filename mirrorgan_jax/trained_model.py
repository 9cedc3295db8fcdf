"""A trained MirrorGAN, loaded from its workdir for sampling and evaluation.

`load(workdir)` reads the run's config (`<workdir>/config.json` unless one is
given), the frozen DAMSM encoders and STREAM captioner with their vocabulary
(`artifacts.load_pretrained`, each file once), and the newest restorable GAN
checkpoint, of which it keeps the EMA generator. The checkpoint is read by its
own metadata, so no training code (optimizers, train step) is imported. A
checkpoint holds one copy of the state under `parallel.mode` 'jit' and 'pmap'
alike, whatever the devices present now.
"""

import dataclasses
import json
from typing import Any

from etils import epath
import jax
import ml_collections

from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import checkpointing
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.models import factory

CONFIG_FILE = 'config.json'


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """Everything needed to generate, redescribe and score images of a run."""
  config: ml_collections.ConfigDict
  vocab: vocab_lib.Vocabulary
  models: factory.Models
  g_variables: dict[str, Any]  # {'params': EMA params, 'batch_stats'} of G.
  frozen: artifacts.Pretrained  # Text and image encoders and captioner variables.
  step: int  # GAN step of the checkpoint.


def load_config(workdir: epath.PathLike) -> ml_collections.ConfigDict:
  """The config a run was started with (`<workdir>/config.json`)."""
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise FileNotFoundError(
        f'{path} not found: {workdir} is not a MirrorGAN workdir (pass the config '
        'explicitly if it was moved)')
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is not valid JSON ({e})') from e


def restore_ema_generator(workdir: epath.PathLike) -> tuple[dict[str, Any], int]:
  """The EMA generator variables of the newest restorable GAN checkpoint of `workdir`.

  Returns:
    ({'params': EMA params, 'batch_stats'} on the first local device, step).
  Raises:
    FileNotFoundError: the workdir has no GAN checkpoint (names the path).
    RuntimeError: no checkpoint could be restored (corrupt; names the path).
  """
  directory = epath.Path(workdir) / 'gan' / 'checkpoints'
  if not directory.exists():
    raise FileNotFoundError(f'no GAN checkpoints at {directory}; train first '
                            '(python -m mirrorgan_jax.main --mode gan)')
  restored = checkpointing.restore_as_saved(directory)
  if restored is None:
    raise FileNotFoundError(f'no GAN checkpoint in {directory}; train first '
                            '(python -m mirrorgan_jax.main --mode gan)')
  state, step = restored
  return {'params': state['ema_g_params'], 'batch_stats': state['g_batch_stats']}, step


def load(workdir: epath.PathLike, config: ml_collections.ConfigDict | None = None
         ) -> TrainedModel:
  """Loads the trained run of `workdir` (EMA generator of its newest checkpoint).

  Args:
    workdir: the run directory of `python -m mirrorgan_jax.main`.
    config: the run's config; default `<workdir>/config.json`.
  Raises:
    FileNotFoundError / ValueError / RuntimeError with the offending path when
    the config, an artifact or the checkpoint is missing, mismatched or corrupt.
  """
  workdir = epath.Path(workdir)
  config = config or load_config(workdir)
  frozen = artifacts.load_pretrained(workdir, config)
  models = factory.create_models(config, len(frozen.vocab))
  g_variables, step = restore_ema_generator(workdir)
  template = jax.eval_shape(
      lambda: factory.init_variables(config, models.generator, jax.random.PRNGKey(0)))
  artifacts.check_tree(g_variables, template,
                       f'the generator of {workdir}/gan/checkpoints/{step}')
  return TrainedModel(config=config, vocab=frozen.vocab, models=models,
                      g_variables=g_variables, frozen=frozen, step=step)
