"""Random frozen networks and a random batch for GAN-step tests (no data, no training)."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import shapes
from mirrorgan_jax.phases import gan_step
from mirrorgan_jax.models import factory

VOCAB = 30


def smoke_config(**overrides):
  """`configs/shapes.py:smoke` with dotted-key overrides."""
  c = shapes.get_config('smoke')
  for key, value in overrides.items():
    section = c
    *path, last = key.split('.')
    for p in path:
      section = section[p]
    section[last] = value
  return c


def random_batch(config, seed=0):
  """A host batch with every key the GAN step reads."""
  rng = np.random.default_rng(seed)
  b, t = config.train.batch_size, config.data.words_num
  lengths = rng.integers(3, t + 1, b).astype(np.int32)
  ids = rng.integers(1, VOCAB, (b, t)).astype(np.int32)
  ids = np.where(np.arange(t)[None] < lengths[:, None], ids, 0)
  batch = {'caption_ids': ids, 'caption_len': lengths,
           'mismatch_ids': np.roll(ids, 1, 0), 'mismatch_len': np.roll(lengths, 1),
           'class_id': np.arange(b, dtype=np.int32)}
  for size in factory.stage_sizes(config):
    batch[f'image_{size}'] = rng.uniform(-1, 1, (b, size, size, 3)).astype(np.float32)
  return batch


def random_frozen(config, models: factory.Models, seed=1) -> gan_step.Frozen:
  """Randomly initialised text encoder and captioner variables."""
  batch = random_batch(config)
  ids, lengths = jnp.asarray(batch['caption_ids']), jnp.asarray(batch['caption_len'])
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  final = factory.stage_sizes(config)[-1]
  return gan_step.Frozen(
      text_encoder=models.text_encoder.init(k1, ids, lengths),
      captioner=models.captioner.init(k2, jnp.zeros((2, final, final, 3)), ids[:2],
                                      lengths[:2]))
