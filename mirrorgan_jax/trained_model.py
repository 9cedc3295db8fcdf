"""A trained MirrorGAN, loaded from its workdir for sampling and evaluation.

`load(workdir)` reads the run's config (`<workdir>/config.json` unless one is
given), its vocabulary, the frozen DAMSM encoders and STREAM captioner, and the
newest restorable GAN checkpoint, of which it keeps the EMA generator. A
checkpoint written under `parallel.mode = 'pmap'` (a leading device axis on
every leaf) is read as well, whatever the devices present now.
"""

import dataclasses
import json
from typing import Any

from etils import epath
import jax
import ml_collections

from mirrorgan_jax import checkpointing
from mirrorgan_jax import damsm_training
from mirrorgan_jax import gan_step
from mirrorgan_jax import gan_training
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
  frozen: gan_step.Frozen  # Text encoder and captioner variables.
  image_encoder: dict[str, Any]  # DAMSM image encoder variables (R-precision).
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


def _abstract_state(config, models) -> gan_step.GanState:
  return jax.eval_shape(
      lambda: gan_step.create_state(config, models, jax.random.PRNGKey(0)))


def _saved_device_axis(ckpt: checkpointing.Checkpointer, step: int) -> int | None:
  """Leading device count of a pmap-layout checkpoint, None for the jit layout."""
  shape = tuple(ckpt.state_metadata(step)['step'].shape)
  return shape[0] if shape else None


def restore_gan_state(config: ml_collections.ConfigDict, models: factory.Models,
                      workdir: epath.PathLike) -> tuple[gan_step.GanState, int]:
  """The newest restorable GAN state of `workdir`, on the first local device.

  Raises:
    FileNotFoundError: the workdir has no GAN checkpoint (names the path).
    RuntimeError: no checkpoint could be restored (corrupt; names the path).
  """
  directory = epath.Path(workdir) / 'gan' / 'checkpoints'
  if not directory.exists():
    raise FileNotFoundError(f'no GAN checkpoints at {directory}; train first '
                            '(python -m mirrorgan_jax.main --mode gan)')
  ckpt = checkpointing.Checkpointer(directory, asynchronous=False)
  try:
    latest = ckpt.latest_step()
    if latest is None:
      raise FileNotFoundError(f'no GAN checkpoint in {directory}; train first '
                              '(python -m mirrorgan_jax.main --mode gan)')
    try:
      devices = _saved_device_axis(ckpt, latest)
    except Exception:  # pylint: disable=broad-except  # unreadable: restore reports it
      devices = None
    lead = (devices,) if devices else ()
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(lead + x.shape, x.dtype, sharding=device),
        _abstract_state(config, models))
    state, _, step = ckpt.restore(abstract)
  finally:
    ckpt.close()
  if devices:
    state = jax.tree.map(lambda x: x[0], state)
  return state, step


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
  encoders, vocab, _ = damsm_training.load_encoders(
      damsm_training.artifact_dir(workdir), config)
  frozen = gan_training.load_frozen(config, workdir, vocab)
  models = factory.create_models(config, len(vocab))
  state, step = restore_gan_state(config, models, workdir)
  g_variables = {'params': state.ema_g_params, 'batch_stats': state.g_batch_stats}
  return TrainedModel(
      config=config, vocab=vocab, models=models, g_variables=g_variables,
      frozen=frozen, image_encoder=encoders[damsm_training.IMAGE], step=step)
