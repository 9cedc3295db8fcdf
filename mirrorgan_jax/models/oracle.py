"""The oracle: a small classifier of captioned_shapes attributes.

Trained on real captioned_shapes images (`phases/oracle.py`), it reads back
what a generated image shows: shape, colour, size and position of the main
object (`objects[0]` of the TFDS example), the number of objects and the
background colour. Class orders are those of `data/shapes_scene.py` (also the
TFDS ClassLabel orders).

Architecture: per width a conv3x3 (stride 1) -> BatchNorm -> ReLU -> 2x2 max
pool block; then the global mean and max of the last map (translation
invariant: shape, colour, size) concatenated with a flattened 8-channel 1x1
projection of it (where the object is: position), Dense -> BatchNorm -> ReLU to
the penultimate feature vector (returned for an "oracle FID"), and one linear
head per attribute. `OracleClassifier` runs it for inference on images of
any side (resized inside), in jitted fixed-size padded batches. Stride-1 convolutions with max pooling keep the detail of
10-pixel objects: with stride-2 convolutions (`SmallCNN`) and a flattened map
the shape head learnt far slower (64 px test split: 55% after two epochs,
against 97% after one epoch here).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax.infra import padded_batches
from mirrorgan_jax.data import shapes_scene
from mirrorgan_jax.models import max_pool

# Attribute -> number of classes; `count` class k means k + 1 objects.
NUM_CLASSES = {
    'shape': len(shapes_scene.SHAPES),
    'color': len(shapes_scene.COLORS),
    'size': len(shapes_scene.SIZES),
    'position': len(shapes_scene.POSITIONS),
    'count': 2,
    'background': len(shapes_scene.BACKGROUNDS),
}
ATTRIBUTES = tuple(NUM_CLASSES)
# Attributes of the main object; the others describe the whole scene.
OBJECT_ATTRIBUTES = ('shape', 'color', 'size', 'position')
POSITION_CHANNELS = 8  # Channels of the flattened map that locates the object.


class Oracle(nn.Module):
  """Conv net with one logit head per captioned_shapes attribute.

  Attributes:
    features: widths of the conv + max-pool blocks, e.g. (8, 32, 64, 128); the
      input side must be divisible by 2**len(features).
    hidden: width of the penultimate feature vector.
    dtype: compute dtype; parameters stay float32, outputs are float32.
    bn_axis_name: axis name for cross-device BatchNorm statistics, or None.
  """
  features: Sequence[int] = (8, 32, 64, 128)
  hidden: int = 256
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  def _bn(self, x: jax.Array, train: bool, name: str) -> jax.Array:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        dtype=self.dtype, axis_name=self.bn_axis_name, name=name)(x)

  @nn.compact
  def __call__(self, images: jax.Array,
               train: bool = False) -> tuple[dict[str, jax.Array], jax.Array]:
    """Classifies images.

    Args:
      images: [B, S, S, 3] in [-1, 1], S = the side the oracle was built for
        (the flattened position map ties the weights to it).
      train: BatchNorm uses batch statistics (and updates its running ones).
    Returns:
      ({attribute: float32 logits [B, NUM_CLASSES[attribute]]}, penultimate
      features float32 [B, hidden]).
    """
    factor = 2**len(self.features)
    if (images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] % factor
        or images.shape[2] % factor):
      raise ValueError(f'Oracle expects images [B, S, S, 3] with S divisible by '
                       f'{factor}, got {images.shape}')
    x = images.astype(self.dtype)
    for i, width in enumerate(self.features):
      x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                  dtype=self.dtype, kernel_init=nn.initializers.he_normal(),
                  name=f'conv{i}')(x)
      x = max_pool.max_pool(nn.relu(self._bn(x, train, f'bn{i}')), (2, 2))
    where = nn.Conv(POSITION_CHANNELS, (1, 1), use_bias=False, dtype=self.dtype,
                    name='position_conv')(x)
    where = nn.relu(self._bn(where, train, 'position_bn'))
    x = jnp.concatenate([jnp.mean(x, axis=(1, 2)), jnp.max(x, axis=(1, 2)),
                         where.reshape(where.shape[0], -1)], axis=-1)
    x = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype, name='fc')(x)
    x = nn.relu(self._bn(x, train, 'fc_bn'))
    logits = {a: nn.Dense(n, dtype=self.dtype, name=f'head_{a}')(x).astype(jnp.float32)
              for a, n in NUM_CLASSES.items()}
    return logits, x.astype(jnp.float32)


class OracleClassifier:
  """Jitted oracle inference (BatchNorm running statistics) on images of any side.

  Attributes:
    model: the Oracle module.
    variables: {'params', 'batch_stats'}; may be replaced (no recompilation).
    image_size: side the inputs are resized to (bilinear, antialiased).
    batch_size: images per compiled call; the last batch is padded, so a
      short batch does not recompile and cannot change results.
  """

  def __init__(self, model: Oracle, variables: Any, *, image_size: int,
               batch_size: int = 50):
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    self.model, self.variables = model, variables
    self.image_size, self.batch_size = image_size, batch_size
    self._forward = jax.jit(self._apply)

  def _apply(self, variables: Any, images: jax.Array):
    x = images.astype(jnp.float32)
    if x.shape[1:3] != (self.image_size, self.image_size):
      x = jax.image.resize(x, (x.shape[0], self.image_size, self.image_size, 3),
                           'bilinear', antialias=True)
    logits, features = self.model.apply(variables, x, train=False)
    labels = {a: jnp.argmax(v, axis=-1).astype(jnp.int32) for a, v in logits.items()}
    return labels, features

  def outputs(self, images: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Predicted labels {attribute: int32 [N]} and features float32 [N, D].

    Args:
      images: [N, H, W, 3] float in [-1, 1], numpy or jax.
    """
    if not hasattr(images, 'dtype'):
      images = np.asarray(images)
    padded_batches.check_images(images)
    return padded_batches.map_batches(
        lambda chunk: self._forward(self.variables, chunk), images, self.batch_size)

  def predict(self, images: Any) -> dict[str, np.ndarray]:
    """{attribute: int32 [N]} of images [N, H, W, 3] in [-1, 1]."""
    return self.outputs(images)[0]

  def features(self, images: Any) -> np.ndarray:
    """Penultimate features float32 [N, D] of images [N, H, W, 3] in [-1, 1]."""
    return self.outputs(images)[1]
