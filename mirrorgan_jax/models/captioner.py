"""STREAM: the image captioner that redescribes generated images (spec section 5).

Encoder (MirrorGAN's CAPTION_CNN): backbone -> pooled feature -> Linear
(`feature_dim`) -> BatchNorm1d (PyTorch momentum 0.01 = Flax 0.99). Decoder
(CAPTION_RNN): Embedding(vocab, embed_dim), a one-layer LSTM(hidden_size) and a
Linear(hidden -> vocab). Teacher forcing as the reference (spec 5.1): the LSTM
reads x_0 = image feature, x_t = embed(w_t) for t = 1..T-1 from a zero state,
and its output at step t scores token w_{t+1}; there is no <start> token and
token 0 (<end>, also the padding) is never a target. With
`image_every_step` (not in the reference) the image feature is also added to
every word input, x_t = embed(w_t) + image feature: a decoder that sees the
image only at t = 0 must carry it through the LSTM state to the words that
need it, which a small captioner trained for minutes does not learn (it then
names the background, said first, and guesses the object).

Input normalisation differs from the reference on purpose (spec section 10,
item 6): the captioner takes [-1, 1] images of any size, resizes them to
`input_size` bilinearly and then, for 'resnet152', applies the ImageNet mean/std
normalisation of [0, 1] RGB that torchvision's weights expect; the reference fed
[-1, 1] straight into the ResNet. 'small_cnn' gets the [-1, 1] image as is.
Because the same module is used for STREAM pretraining and for the GAN loss,
both see the same transform.

The backbone is the subtree `params['encoder']['backbone']`
(`image_encoder.trainable_mask` marks the rest). `greedy_decode` and
`beam_search` generate redescriptions; decoding stops a sequence at token 0.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models import image_encoder
from mirrorgan_jax.models import lstm
from mirrorgan_jax.models import resnet
from mirrorgan_jax.models import small_cnn

END_TOKEN = 0  # <end>; also the padding id.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Carry = lstm.Carry


class CaptionEncoder(nn.Module):
  """Image -> feature [B, feature_dim] (CAPTION_CNN); see the module doc.

  Attributes:
    feature_dim: image feature size (reference 256).
    backbone: 'resnet152' or 'small_cnn'.
    input_size: images are resized to input_size^2 (reference 224).
    small_cnn_features: widths of the small CNN.
    small_cnn_pooling: the small CNN's global feature (see small_cnn.POOLINGS).
    small_cnn_downsample: how the small CNN halves its maps, 'stride' or 'maxpool'.
    resnet_stages: bottleneck blocks per stage of the ResNet (152 by default;
      tests use tiny ones).
    resnet_width: ResNet stem width (64).
    freeze_backbone: `stop_gradient` on the backbone output (frozen backbone
      during STREAM pretraining). Keep False in the GAN loss, where gradients
      must flow through the frozen captioner into the image.
    dtype: compute dtype; parameters stay float32, the output is float32.
    bn_axis_name: axis name for cross-device BatchNorm, or None.
  """
  feature_dim: int = 256
  backbone: str = 'resnet152'
  input_size: int = 224
  small_cnn_features: Sequence[int] = (32, 64, 128, 256)
  small_cnn_pooling: str = 'mean'
  small_cnn_downsample: str = 'stride'
  resnet_stages: Sequence[int] = resnet.RESNET152_STAGES
  resnet_width: int = 64
  freeze_backbone: bool = False
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    """Args: images [B, H, W, 3] in [-1, 1]. Returns: features [B, feature_dim]."""
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'CaptionEncoder expects [B, H, W, 3] images, got {images.shape}')
    x = image_encoder.resize_images(images, self.input_size)
    if self.backbone == 'resnet152':
      x = ((x + 1.0) / 2.0 - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)
      pooled = resnet.ResNet(self.resnet_stages, self.resnet_width, dtype=self.dtype,
                             bn_axis_name=self.bn_axis_name,
                             name=image_encoder.BACKBONE)(x, train)
    elif self.backbone == 'small_cnn':
      _, pooled = small_cnn.SmallCNN(self.small_cnn_features, self.small_cnn_pooling,
                                     self.small_cnn_downsample, dtype=self.dtype,
                                     bn_axis_name=self.bn_axis_name,
                                     name=image_encoder.BACKBONE)(x, train)
    else:
      raise ValueError(f"unknown captioner backbone {self.backbone!r}; "
                       "expected 'resnet152' or 'small_cnn'")
    if self.freeze_backbone:
      pooled = jax.lax.stop_gradient(pooled)
    # Tutorial init: Linear N(0, 0.02) with zero bias.
    x = nn.Dense(self.feature_dim, dtype=self.dtype,
                 kernel_init=nn.initializers.normal(0.02), name='linear')(pooled)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-5,
                     dtype=self.dtype, axis_name=self.bn_axis_name, name='bn')(x)
    return x.astype(jnp.float32)


class CaptionDecoder(nn.Module):
  """LSTM language model conditioned on the image feature (CAPTION_RNN).

  Attributes:
    vocab_size: V, the STEM's vocabulary (token 0 = <end>).
    feature_dim: size of the image feature. The LSTM input is `embed_dim`, so
      when they differ (the reference has both 256) a Linear `feature_proj`
      maps the feature to `embed_dim`; it is not in the reference.
    embed_dim: word embedding size E (reference 256).
    hidden_size: LSTM units H (reference 512).
    image_every_step: add the image input to every word input (see the
      module docstring); the decoding carry then holds it: (c, h, image).
    dtype: compute dtype; parameters stay float32, logits are float32.
  """
  vocab_size: int
  feature_dim: int = 256
  embed_dim: int = 256
  hidden_size: int = 512
  image_every_step: bool = False
  dtype: Any = jnp.float32

  def setup(self):
    init = image_encoder.uniform_init(0.1)  # Tutorial init of embed / output layer.
    self.embed = nn.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype,
                          embedding_init=init)
    self.lstm = lstm.LSTM(self.hidden_size, dtype=self.dtype)
    self.linear = nn.Dense(self.vocab_size, dtype=self.dtype, kernel_init=init,
                           bias_init=nn.initializers.zeros)
    if self.feature_dim != self.embed_dim:
      self.feature_proj = nn.Dense(self.embed_dim, dtype=self.dtype)

  def _first_input(self, features: jax.Array) -> jax.Array:
    if features.shape[-1] != self.feature_dim:
      raise ValueError(f'image features have size {features.shape[-1]}, the '
                       f'decoder was built for feature_dim={self.feature_dim}')
    x = features.astype(self.dtype)
    return self.feature_proj(x) if self.feature_dim != self.embed_dim else x

  def _logits(self, hidden: jax.Array) -> jax.Array:
    return self.linear(hidden).astype(jnp.float32)

  def __call__(self, features: jax.Array, captions: jax.Array,
               lengths: jax.Array) -> jax.Array:
    """Teacher-forced logits.

    Args:
      features: image features [B, feature_dim].
      captions: token ids w_1..w_T [B, T]; entries at t >= lengths[b] are padding.
      lengths: caption lengths [B], 1 <= lengths <= T.
    Returns:
      logits [B, T, V] (float32): logits[:, t] scores captions[:, t]; zero at
      padded positions t >= lengths[b].
    """
    if captions.ndim != 2 or lengths.shape != captions.shape[:1]:
      raise ValueError(f'captions must be [B, T] and lengths [B]; got '
                       f'{captions.shape} and {lengths.shape}')
    image = self._first_input(features)[:, None]
    words = self.embed(captions[:, :-1])
    if self.image_every_step:
      words = words + image
    inputs = jnp.concatenate([image, words], axis=1)
    hidden, _ = self.lstm(inputs, lengths)
    valid = jnp.arange(captions.shape[1])[None, :, None] < lengths[:, None, None]
    return jnp.where(valid, self._logits(hidden), 0.0)

  def _step(self, inputs: jax.Array, carry: Carry | None) -> tuple[jax.Array, Carry]:
    ones = jnp.ones(inputs.shape[:1], jnp.int32)
    hidden, carry = self.lstm(inputs[:, None], ones, carry)
    return self._logits(hidden[:, 0]), carry

  def start(self, features: jax.Array) -> tuple[jax.Array, Any]:
    """First decoding step from the image: (logits of w_1 [B, V], carry)."""
    image = self._first_input(features)
    logits, carry = self._step(image, None)
    return logits, (*carry, image) if self.image_every_step else carry

  def step(self, tokens: jax.Array, carry: Any) -> tuple[jax.Array, Any]:
    """Reads tokens [B] with state `carry`: (logits of the next token, carry)."""
    if not self.image_every_step:
      return self._step(self.embed(tokens), carry)
    c, h, image = carry
    logits, carry = self._step(self.embed(tokens) + image, (c, h))
    return logits, (*carry, image)


class Captioner(nn.Module):
  """STREAM = CaptionEncoder + CaptionDecoder. Field names follow the config.

  Attributes: as `CaptionEncoder` and `CaptionDecoder`.
  """
  vocab_size: int
  feature_dim: int = 256
  embed_dim: int = 256
  hidden_size: int = 512
  backbone: str = 'resnet152'
  input_size: int = 224
  small_cnn_features: Sequence[int] = (32, 64, 128, 256)
  small_cnn_pooling: str = 'mean'
  small_cnn_downsample: str = 'stride'
  resnet_stages: Sequence[int] = resnet.RESNET152_STAGES
  resnet_width: int = 64
  freeze_backbone: bool = False
  image_every_step: bool = False
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  def setup(self):
    self.encoder = CaptionEncoder(
        self.feature_dim, self.backbone, self.input_size, self.small_cnn_features,
        self.small_cnn_pooling, self.small_cnn_downsample, self.resnet_stages,
        self.resnet_width, self.freeze_backbone, dtype=self.dtype,
        bn_axis_name=self.bn_axis_name)
    self.decoder = CaptionDecoder(self.vocab_size, self.feature_dim, self.embed_dim,
                                  self.hidden_size, self.image_every_step,
                                  dtype=self.dtype)

  def __call__(self, images: jax.Array, captions: jax.Array, lengths: jax.Array,
               train: bool = False) -> jax.Array:
    """Teacher-forced logits [B, T, V] of `captions` [B, T] given images.

    Args:
      images: [B, H, W, 3] in [-1, 1], any size.
      captions: [B, T] token ids (the caption that conditioned G, in the GAN).
      lengths: [B] caption lengths.
      train: BatchNorm mode of the encoder.
    Returns:
      logits [B, T, V] float32, zero where t >= lengths[b] (see CaptionDecoder).
    """
    return self.decoder(self.encoder(images, train), captions, lengths)

  def encode(self, images: jax.Array, train: bool = False) -> jax.Array:
    """Image features [B, feature_dim]."""
    return self.encoder(images, train)

  def first_step(self, images: jax.Array) -> tuple[jax.Array, Carry]:
    """Encodes images (eval mode) and scores the first word: ([B, V], carry)."""
    return self.decoder.start(self.encoder(images, False))

  def next_step(self, tokens: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    """Feeds tokens [B] and scores the next word: ([B, V], carry)."""
    return self.decoder.step(tokens, carry)


def _check_decode_args(images: jax.Array, max_len: int, beam_size: int = 1) -> None:
  if images.ndim != 4:
    raise ValueError(f'expected [B, H, W, 3] images, got {images.shape}')
  if max_len < 1 or beam_size < 1:
    raise ValueError(f'max_len ({max_len}) and beam_size ({beam_size}) must be >= 1')


@functools.partial(jax.jit, static_argnames=('model', 'max_len'))
def greedy_decode(model: Captioner, variables: Any, images: jax.Array,
                  max_len: int) -> tuple[jax.Array, jax.Array]:
  """Most likely next word at each step, until <end> (0) or `max_len` words.

  Compiled with `jax.jit`; `model` and `max_len` are static (so the module's
  sequence attributes must be tuples, which makes it hashable).

  Args:
    model: the captioner module.
    variables: its {'params', 'batch_stats'}.
    images: [B, H, W, 3] in [-1, 1].
    max_len: most tokens generated per image.
  Returns:
    ids [B, max_len] int32 (0 from the <end> token on) and lengths [B] int32,
    the number of words before <end>.
  """
  _check_decode_args(images, max_len)
  logits, carry = model.apply(variables, images, method=Captioner.first_step)

  def body(state, _):
    logits, carry, done = state
    tokens = jnp.where(done, END_TOKEN, jnp.argmax(logits, axis=-1)).astype(jnp.int32)
    done = done | (tokens == END_TOKEN)
    logits, carry = model.apply(variables, tokens, carry, method=Captioner.next_step)
    return (logits, carry, done), tokens

  done = jnp.zeros(images.shape[:1], bool)
  _, ids = jax.lax.scan(body, (logits, carry, done), None, length=max_len)
  ids = ids.T
  return ids, jnp.sum(ids != END_TOKEN, axis=1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=('model', 'beam_size', 'max_len'))
def beam_search(model: Captioner, variables: Any, images: jax.Array, beam_size: int,
                max_len: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Beam search for the caption with the highest total log-probability.

  A hypothesis ends when it emits <end> (0); its score is the sum of the
  log-probabilities of its tokens, <end> included, with no length penalty.
  Ended hypotheses stay in the beam with their score. After `max_len` steps the
  best hypothesis, ended or not, is returned. Compiled with `jax.jit`;
  `model`, `beam_size` and `max_len` are static.

  Args:
    model: the captioner module.
    variables: its {'params', 'batch_stats'}.
    images: [B, H, W, 3] in [-1, 1].
    beam_size: K, hypotheses kept per image.
    max_len: most tokens per hypothesis.
  Returns:
    ids [B, max_len] int32 (0 from <end> on), lengths [B] int32 (words before
    <end>) and scores [B] float32 (total log-probability).
  """
  _check_decode_args(images, max_len, beam_size)
  logits, carry = model.apply(variables, images, method=Captioner.first_step)
  batch, vocab = logits.shape
  k = beam_size

  def tile(x):  # [B, ...] -> [B * K, ...], hypotheses of an image adjacent.
    return jnp.repeat(x, k, axis=0)

  only_end = jnp.where(jnp.arange(vocab) == END_TOKEN, 0.0, -jnp.inf)
  rows = jnp.arange(batch)[:, None]

  def body(state, t):
    logits, carry, scores, seqs, done = state
    logp = jax.nn.log_softmax(logits.reshape(batch, k, vocab), axis=-1)
    # An ended hypothesis has exactly one continuation, <end> at no cost.
    logp = jnp.where(done[..., None], only_end, logp)
    scores, flat = jax.lax.top_k((scores[..., None] + logp).reshape(batch, k * vocab), k)
    parent, tokens = flat // vocab, (flat % vocab).astype(jnp.int32)
    seqs = seqs[rows, parent].at[:, :, t].set(tokens)
    done = done[rows, parent] | (tokens == END_TOKEN)
    src = (rows * k + parent).reshape(-1)
    carry = jax.tree.map(lambda x: x[src], carry)
    logits, carry = model.apply(variables, tokens.reshape(-1), carry,
                                method=Captioner.next_step)
    return (logits, carry, scores, seqs, done), None

  # Only the first copy of each image's hypothesis is live at the start, so
  # the first step does not fill the beam with K copies of the same word.
  scores = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, -jnp.inf), (batch, 1))
  state = (tile(logits), jax.tree.map(tile, carry), scores,
           jnp.zeros((batch, k, max_len), jnp.int32), jnp.zeros((batch, k), bool))
  (_, _, scores, seqs, _), _ = jax.lax.scan(body, state, jnp.arange(max_len))
  best = jnp.argmax(scores, axis=1)
  ids = seqs[jnp.arange(batch), best]
  return (ids, jnp.sum(ids != END_TOKEN, axis=1).astype(jnp.int32),
          scores[jnp.arange(batch), best])
