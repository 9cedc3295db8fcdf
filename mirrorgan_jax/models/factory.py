"""Builds every MirrorGAN network from `config.model` (one place, no duplication)."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mirrorgan_jax.models import captioner as captioner_lib
from mirrorgan_jax.models import discriminators
from mirrorgan_jax.models import generator
from mirrorgan_jax.models import image_encoder as image_encoder_lib
from mirrorgan_jax.models import oracle as oracle_lib
from mirrorgan_jax.models import text_encoder as text_encoder_lib


@dataclasses.dataclass(frozen=True)
class Models:
  """The module definitions (no parameters) of one experiment."""
  text_encoder: nn.Module  # STEM text side.
  image_encoder: nn.Module  # STEM (DAMSM) image side.
  generator: nn.Module  # GLAM cascade with conditioning augmentation.
  discriminators: dict[str, nn.Module]  # 'd<size>' -> D, smallest first.
  captioner: nn.Module  # STREAM.


def compute_dtype(config: ml_collections.ConfigDict) -> jnp.dtype:
  """`config.model.compute_dtype` as a dtype ('float32' or 'bfloat16')."""
  name = config.model.compute_dtype
  if name not in ('float32', 'bfloat16'):
    raise ValueError(f"model.compute_dtype must be 'float32' or 'bfloat16', got {name!r}")
  return jnp.dtype(name)


def stage_sizes(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """Image sides of the generator stages (and their discriminators), e.g. (64, 128, 256)."""
  g = config.model.generator
  return tuple(g.base_size * 2**i for i in range(g.num_stages))


def create_models(config: ml_collections.ConfigDict, vocab_size: int,
                  bn_axis_name: str | None = None) -> Models:
  """Module definitions for `config`.

  Args:
    config: experiment config (`model` section). Options added after a run was
      started (small-CNN pooling and downsampling, image_every_step, initial_channels,
      normalize_sentence, word_rms, sentence_rms) take
      their paper defaults when its saved config.json lacks them.
    vocab_size: words in the vocabulary (embedding and output layers).
    bn_axis_name: pmap axis for cross-device BatchNorm (None under jit).
  """
  m = config.model
  dtype = compute_dtype(config)
  g = m.generator
  return Models(
      text_encoder=text_encoder_lib.TextEncoder(
          vocab_size=vocab_size, embedding_dim=m.text_encoder.embedding_dim,
          hidden_size=m.text_encoder.hidden_size,
          dropout_rate=m.text_encoder.dropout_rate, dtype=dtype),
      image_encoder=image_encoder_lib.ImageEncoder(
          feature_dim=2 * m.text_encoder.hidden_size, backbone=m.image_encoder.backbone,
          input_size=m.image_encoder.input_size,
          small_cnn_features=tuple(m.image_encoder.small_cnn_features),
          small_cnn_pooling=m.image_encoder.get('small_cnn_pooling', 'mean'),
          small_cnn_downsample=m.image_encoder.get('small_cnn_downsample', 'stride'),
          freeze_backbone=not m.image_encoder.train_backbone, dtype=dtype,
          bn_axis_name=bn_axis_name),
      generator=generator.Generator(
          ngf=g.ngf, z_dim=g.z_dim, condition_dim=g.condition_dim,
          num_stages=g.num_stages, base_size=g.base_size,
          num_res_blocks=g.num_res_blocks, glam=g.glam, dtype=dtype,
          bn_axis_name=bn_axis_name, initial_channels=g.get('initial_channels', 0),
          normalize_sentence=g.get('normalize_sentence', False),
          word_rms=g.get('word_rms', 0.0)),
      discriminators={
          f'd{s}': discriminators.Discriminator(
              image_size=s, ndf=m.discriminator.ndf, dtype=dtype,
              bn_axis_name=bn_axis_name,
              sentence_rms=m.discriminator.get('sentence_rms', 0.0))
          for s in stage_sizes(config)},
      # The captioner's backbone stays differentiable even when it is not trained:
      # L_stream's gradient reaches G through it. STREAM pretraining freezes it
      # with `image_encoder.trainable_mask` instead.
      captioner=captioner_lib.Captioner(
          vocab_size=vocab_size, backbone=m.captioner.backbone,
          input_size=m.captioner.input_size,
          small_cnn_features=tuple(m.captioner.small_cnn_features),
          small_cnn_pooling=m.captioner.get('small_cnn_pooling', 'mean'),
          small_cnn_downsample=m.captioner.get('small_cnn_downsample', 'stride'),
          image_every_step=m.captioner.get('image_every_step', False),
          feature_dim=m.captioner.feature_dim, embed_dim=m.captioner.embed_dim,
          hidden_size=m.captioner.hidden_size, dtype=dtype, bn_axis_name=bn_axis_name),
  )


def create_oracle(config: ml_collections.ConfigDict, hidden: int | None = None
                  ) -> oracle_lib.Oracle:
  """The attribute classifier of `config.oracle` (float32: it is small).

  Args:
    config: experiment config (`oracle` section).
    hidden: width of its hidden layer, as an artifact records it (default the
      module's).
  """
  kwargs = {} if hidden is None else {'hidden': int(hidden)}
  return oracle_lib.Oracle(features=tuple(config.oracle.features), **kwargs)


def oracle_inputs(config: ml_collections.ConfigDict) -> jax.Array:
  """Zero images of the oracle's input size, for `init` / `eval_shape`."""
  size = config.oracle.image_size
  return jnp.zeros((2, size, size, 3))


def init_variables(config: ml_collections.ConfigDict, module: nn.Module,
                   rng: jax.Array) -> dict:
  """Fresh variables of one network of `create_models`, from zero inputs.

  The one place dummy inputs of the config's shapes are built; use it under
  `jax.eval_shape` for shapes only (restore templates), or through
  `fast_init.run`.

  Args:
    config: the experiment config (input sizes, caption length, feature size).
    module: a text encoder, image encoder, captioner, generator or discriminator.
    rng: key for the parameters (and the generator's CA noise).
  """
  batch, words = 2, config.data.words_num
  feat = 2 * config.model.text_encoder.hidden_size
  ids, lengths = jnp.zeros((batch, words), jnp.int32), jnp.full((batch,), words, jnp.int32)
  images = lambda size: jnp.zeros((batch, size, size, 3))
  if isinstance(module, text_encoder_lib.TextEncoder):
    return module.init(rng, ids, lengths)
  if isinstance(module, image_encoder_lib.ImageEncoder):
    return module.init(rng, images(module.input_size))
  if isinstance(module, captioner_lib.Captioner):
    return module.init(rng, images(module.input_size), ids, lengths, train=False)
  if isinstance(module, generator.Generator):
    params_key, noise_key = jax.random.split(rng)
    return module.init(
        {'params': params_key, 'noise': noise_key}, jnp.zeros((batch, module.z_dim)),
        jnp.zeros((batch, feat)), jnp.zeros((batch, words, feat)), lengths=lengths,
        train=False)
  if isinstance(module, discriminators.Discriminator):
    return module.init(rng, images(module.image_size), jnp.zeros((batch, feat)))
  raise TypeError(f'no dummy inputs for {type(module).__name__}')
