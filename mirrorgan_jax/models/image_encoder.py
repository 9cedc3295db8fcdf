"""DAMSM image encoder (AttnGAN's CNN_ENCODER; reference spec section 1.4).

A backbone CNN gives a local feature map and a pooled global feature; a 1x1 conv
(no bias) projects the local map to `feature_dim` region features and a Linear
layer projects the pooled feature to the global image code, both in the text
encoder's feature space. Backbones: 'inception_v3' (reference: Mixed_6e 17x17
regions, 2048-d pool, ImageNet weights, frozen) or 'small_cnn' (CPU configs,
trained from scratch).

The backbone is the subtree `params['backbone']` (and `batch_stats['backbone']`);
`trainable_mask` marks everything outside it, for `optax.masked` /
`optax.multi_transform` when the backbone is frozen.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models import inception
from mirrorgan_jax.models import small_cnn

BACKBONE = 'backbone'  # Name of the backbone subtree in params / batch_stats.


def resize_images(images: jax.Array, size: int) -> jax.Array:
  """Bilinear resize of [B, H, W, C] images to [B, size, size, C].

  Half-pixel centres and no antialiasing, which is what PyTorch's
  `F.interpolate(mode='bilinear', align_corners=False)` computes (the reference
  ran on PyTorch 0.3, whose `nn.Upsample` aligned corners; spec section 1.4).
  Images already at `size` are returned unchanged.
  """
  if images.ndim != 4:
    raise ValueError(f'expected [B, H, W, C] images, got shape {images.shape}')
  if images.shape[1:3] == (size, size):
    return images
  return jax.image.resize(images, (images.shape[0], size, size, images.shape[3]),
                          method='bilinear', antialias=False)


def trainable_mask(params: Any) -> Any:
  """Pytree of bools like `params`: False inside any `BACKBONE` subtree, else True."""
  def mark(path, _):
    return not any(getattr(k, 'key', None) == BACKBONE for k in path)
  return jax.tree_util.tree_map_with_path(mark, params)


def uniform_init(bound: float):
  """Initializer drawing U(-bound, bound), as PyTorch's `uniform_(-b, b)`."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def torch_linear_bias_init(fan_in: int):
  """PyTorch's default Linear bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  return uniform_init(1.0 / fan_in**0.5)


class ImageEncoder(nn.Module):
  """Region features and a global code of an image, in the text feature space.

  Attributes:
    feature_dim: text feature size D (reference nef = 256).
    backbone: 'inception_v3' or 'small_cnn'.
    input_size: images are resized to input_size^2 first (reference 299).
    small_cnn_features: widths of the small CNN (backbone 'small_cnn' only).
    small_cnn_pooling: the small CNN's global feature (see small_cnn.POOLINGS).
    small_cnn_downsample: how the small CNN halves its maps, 'stride' or 'maxpool'.
    freeze_backbone: put `stop_gradient` on the backbone's outputs, so no
      gradient is computed for the backbone (nor for the input images). Use it
      when the backbone is frozen and nothing needs gradients w.r.t. images.
    dtype: compute dtype; parameters stay float32, outputs are float32.
    bn_axis_name: axis name for cross-device BatchNorm, or None.
  """
  feature_dim: int = 256
  backbone: str = 'inception_v3'
  input_size: int = 299
  small_cnn_features: Sequence[int] = (32, 64, 128, 256)
  small_cnn_pooling: str = 'mean'
  small_cnn_downsample: str = 'stride'
  freeze_backbone: bool = False
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Encodes images.

    Args:
      images: [B, H, W, 3] in [-1, 1], any size. No further normalisation:
        the Google Inception weights expect [-1, 1].
      train: BatchNorm of the backbone (the head has none) uses batch
        statistics. The reference pretrained DAMSM with the frozen Inception
        in train mode (spec 1.4 caveat); False keeps the ImageNet statistics.
    Returns:
      region_features [B, h, w, D] (17x17 for Inception at 299) and the global
      code [B, D], float32.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'ImageEncoder expects [B, H, W, 3] images, got {images.shape}')
    x = resize_images(images, self.input_size)
    if self.backbone == 'inception_v3':
      out = inception.InceptionV3(num_classes=None, dtype=self.dtype,
                                  bn_axis_name=self.bn_axis_name, name=BACKBONE)(x, train)
      local, pooled = out['mixed_6e'], out['pooled']
    elif self.backbone == 'small_cnn':
      local, pooled = small_cnn.SmallCNN(
          self.small_cnn_features, self.small_cnn_pooling, self.small_cnn_downsample,
          dtype=self.dtype, bn_axis_name=self.bn_axis_name, name=BACKBONE)(x, train)
    else:
      raise ValueError(f"unknown image encoder backbone {self.backbone!r}; "
                       "expected 'inception_v3' or 'small_cnn'")
    if self.freeze_backbone:
      local, pooled = jax.lax.stop_gradient((local, pooled))
    regions = nn.Conv(self.feature_dim, (1, 1), use_bias=False, dtype=self.dtype,
                      kernel_init=uniform_init(0.1), name='emb_features')(local)
    code = nn.Dense(self.feature_dim, dtype=self.dtype,
                    kernel_init=uniform_init(0.1),
                    bias_init=torch_linear_bias_init(pooled.shape[-1]),
                    name='emb_cnn_code')(pooled)
    return regions.astype(jnp.float32), code.astype(jnp.float32)
