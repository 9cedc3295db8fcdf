"""Shared Inception-v3 feature extractor for FID and the Inception Score.

`InceptionExtractor` takes [-1, 1] RGB images of any size, resizes them
bilinearly to 299x299 and runs `models.inception.InceptionV3` in eval mode,
jitted with the weights passed as an argument. Inputs are cut into batches of
`batch_size`; the last one is padded, so every call runs one compiled
program per input image shape, and padding cannot change results (BatchNorm
uses running statistics, images never interact). It returns the pool3 features
(2048-d, global average after Mixed_7c, for FID), the logits and the softmax
probabilities (for IS).

Weights come from an artifact written by `python -m mirrorgan_jax.pretrained
inception --weights W --out DIR` (`from_artifact(DIR)`), or are random when
explicitly asked for (`with_random_weights`, tests and smoke runs only: such
numbers mean nothing).

Which weights give numbers comparable with which papers:
* FID: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (1008 classes; the
  artifact's meta says variant 'pytorch_fid', which switches on `fid_variant`
  pooling). That is the network of TF's `inception-2015-12-05` graph that
  pytorch-fid ports, used by DM-GAN and later text-to-image papers (spec 8.3).
  pytorch-fid resizes [0, 1] images bilinearly (align_corners=False, no
  antialiasing) and then maps them to [-1, 1]; both are affine per pixel, so
  resizing [-1, 1] images the same way, as here, gives the same input. Papers
  score generated images saved as 8-bit PNG files: `quantize=True` truncates
  to 8-bit levels as AttnGAN/MirrorGAN save them, (x + 1) * 127.5 -> uint8.
  The reference statistics must be computed with the same extractor (`fid.py`
  caches them with its `fingerprint`). DM-GAN notes that TF-FID numbers differ
  somewhat from pytorch-fid ones.
* IS on COCO (MirrorGAN 26.47): the OpenAI improved-GAN script takes the
  1008-way softmax of the same TF graph, so the same pytorch-fid weights
  (`probs`, all 1008 columns) are the closest match; its graph resizes with
  TF1's legacy bilinear kernel and scales by (x - 128) / 128, which makes small
  differences (not measured here).
* IS with torchvision's `inception_v3_google-*.pth` (1000 classes, variant
  'torchvision') is the "PyTorch IS"; it is known to differ from the TF numbers
  by several percent, so use it for relative comparisons only.
* IS on CUB (MirrorGAN 4.56) needs StackGAN's Inception-v3 fine-tuned on CUB
  (a TF-slim checkpoint, 50 classes + background: score it with
  `inception_score(..., drop_background=True)`); no converter for TF-slim names
  exists here, so CUB IS from ImageNet weights is not comparable with papers.
"""

from typing import Any, Iterable, NamedTuple

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import padded_batches
from mirrorgan_jax.models import inception

INCEPTION_SIZE = 299  # Input size of all published Inception-v3 weights.
FEATURE_DIM = 2048  # pool3 width.
PYTORCH_FID_CLASSES = 1008  # Logits of TF's inception-2015-12-05 graph.


class InceptionOutputs(NamedTuple):
  """Attributes: pool3 [N, 2048], logits [N, C], probs [N, C] (float32 numpy)."""
  pool3: np.ndarray
  logits: np.ndarray
  probs: np.ndarray


def resize_bilinear(images: jax.Array, size: int) -> jax.Array:
  """Bilinear resize like PyTorch's `interpolate(align_corners=False)`.

  Half-pixel centres, edge pixels repeated, no antialiasing when shrinking
  (pytorch-fid's resize).

  Args:
    images: [B, H, W, C].
    size: output height and width.
  Returns:
    [B, size, size, C]; the input itself when it already has that size.
  """
  if images.shape[1:3] == (size, size):
    return images
  shape = (images.shape[0], size, size, images.shape[3])
  return jax.image.resize(images, shape, 'bilinear', antialias=False)


def quantize_8bit(images: jax.Array) -> jax.Array:
  """[-1, 1] images -> the [-1, 1] values of their 8-bit versions.

  As AttnGAN/MirrorGAN save samples: uint8((x + 1) * 127.5), truncating; read
  back as v / 127.5 - 1.
  """
  levels = jnp.floor(jnp.clip((images + 1.0) * 127.5, 0.0, 255.0))
  return levels / 127.5 - 1.0


def _random_leaf(rng: np.random.Generator, name: str,
                 shape: tuple[int, ...]) -> np.ndarray:
  """He-normal kernels, identity BatchNorm (scale/var 1, bias/mean 0)."""
  if name == 'kernel':
    std = np.sqrt(2.0 / np.prod(shape[:-1]))
    return (rng.standard_normal(shape, np.float32) * std).astype(np.float32)
  if name in ('scale', 'var'):
    return np.ones(shape, np.float32)
  return np.zeros(shape, np.float32)


def _variable_shapes(num_classes: int) -> Any:
  """ShapeDtypeStructs of `InceptionV3(num_classes)` variables (any input size)."""
  model = inception.InceptionV3(num_classes=num_classes)
  return jax.eval_shape(model.init, jax.random.key(0),
                        jnp.zeros((1, INCEPTION_SIZE, INCEPTION_SIZE, 3)))


class InceptionExtractor:
  """Batched, jitted Inception-v3 pool3 features and class probabilities.

  Attributes:
    model: the InceptionV3 module.
    batch_size: images per compiled forward pass.
    image_size: side the inputs are resized to (299 for real weights).
    quantize: round inputs to 8-bit levels first (`quantize_8bit`).
    fingerprint: describes weights and preprocessing; FID reference statistics
      computed with another fingerprint are refused (`fid.py`).
  """

  def __init__(self, variables: Any, *, num_classes: int, fid_variant: bool,
               batch_size: int = 50, image_size: int = INCEPTION_SIZE,
               quantize: bool = False, fingerprint: str = ''):
    """Wraps loaded variables; prefer `from_artifact` / `with_random_weights`.

    Args:
      variables: {'params', 'batch_stats'} of `InceptionV3(num_classes)`.
      num_classes: classifier width.
      fid_variant: pytorch-fid pooling (for pytorch-fid's weights).
      batch_size: images per forward pass (the last batch is padded).
      image_size: resize target; >= 75 (the network's minimum).
      quantize: round inputs to 8-bit levels first.
      fingerprint: description of weights and preprocessing.
    """
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    if image_size < 75:
      raise ValueError(
          f'image_size must be >= 75 (Inception-v3 minimum), got {image_size}')
    self.model = inception.InceptionV3(num_classes=num_classes, fid_variant=fid_variant)
    self.batch_size = batch_size
    self.image_size = image_size
    self.quantize = quantize
    self.fingerprint = (f'{fingerprint}; {image_size}px'
                        f'{", 8-bit quantised" if quantize else ""}')
    self._variables = jax.device_put(variables)
    self._forward = jax.jit(self._apply)

  @classmethod
  def from_artifact(cls, directory: epath.PathLike, *, batch_size: int = 50,
                    quantize: bool = False) -> 'InceptionExtractor':
    """Loads weights converted by `python -m mirrorgan_jax.pretrained inception`.

    Args:
      directory: the artifact (variables/ and meta.json).
      batch_size: images per forward pass.
      quantize: round inputs to 8-bit levels first (papers score PNG files).
    Returns:
      An extractor at 299x299; `fid_variant` is on for pytorch-fid weights.
    """
    directory = epath.Path(directory)
    try:
      variables, _, meta = artifacts.read(directory, artifacts.INCEPTION)
    except FileNotFoundError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # corrupt Orbax files
      raise ValueError(f'cannot read the Inception-v3 artifact {directory}: '
                       f'{type(e).__name__}: {e}') from e
    if meta.get('phase') != 'inception' or 'num_classes' not in meta:
      raise ValueError(f'{directory} is not an Inception-v3 artifact (meta.json phase '
                       f'{meta.get("phase")!r}); convert weights with `python -m '
                       'mirrorgan_jax.pretrained inception`.')
    num_classes = int(meta['num_classes'])
    fid_variant = meta.get('variant') == 'pytorch_fid'
    artifacts.check_tree(variables, _variable_shapes(num_classes),
                         f'the Inception-v3 artifact {directory}')
    fingerprint = (f'Inception-v3 {meta.get("variant")} ({num_classes} classes) from '
                   f'{meta.get("converted_from", directory)}')
    logging.info('Inception extractor: %s (fid_variant=%s).', fingerprint, fid_variant)
    return cls(variables, num_classes=num_classes, fid_variant=fid_variant,
               batch_size=batch_size, quantize=quantize, fingerprint=fingerprint)

  @classmethod
  def with_random_weights(cls, *, num_classes: int = PYTORCH_FID_CLASSES,
                          fid_variant: bool = True, seed: int = 0, batch_size: int = 50,
                          image_size: int = INCEPTION_SIZE) -> 'InceptionExtractor':
    """An extractor with random weights (tests and smoke runs; numbers mean nothing).

    Kernels are He-normal and BatchNorm is the identity, so activations stay
    O(1); built with numpy from the module's shapes (no costly `init`).
    """
    abstract = _variable_shapes(num_classes)
    rng = np.random.default_rng(seed)
    variables = jax.tree_util.tree_map_with_path(
        lambda path, leaf: _random_leaf(rng, path[-1].key, leaf.shape), abstract)
    return cls(variables, num_classes=num_classes, fid_variant=fid_variant,
               batch_size=batch_size, image_size=image_size,
               fingerprint=f'random Inception-v3 (seed {seed}, {num_classes} classes, '
                           f'fid_variant={fid_variant})')

  def _apply(self, variables: Any, images: jax.Array) -> tuple[jax.Array, ...]:
    x = images.astype(jnp.float32)
    if self.quantize:
      x = quantize_8bit(x)
    out = self.model.apply(variables, resize_bilinear(x, self.image_size), train=False)
    return out['pooled'], out['logits'], jax.nn.softmax(out['logits'], axis=-1)

  def __call__(self, images: np.ndarray | jax.Array) -> InceptionOutputs:
    """Features, logits and probabilities of a set of images.

    Args:
      images: [N, H, W, 3] float in [-1, 1] (numpy, or jax arrays already on
        device), any H = W or not; each `batch_size` slice runs separately.
    Returns:
      InceptionOutputs with N rows.
    """
    if not hasattr(images, 'dtype'):
      images = np.asarray(images)
    padded_batches.check_images(images)
    return InceptionOutputs(*padded_batches.map_batches(
        lambda chunk: self._forward(self._variables, chunk), images, self.batch_size))

  def features(self, images: np.ndarray | jax.Array) -> np.ndarray:
    """pool3 features [N, 2048] of images [N, H, W, 3] (the FID `feature_fn`)."""
    return self(images).pool3

  def extract(self, batches: Iterable[np.ndarray | jax.Array]) -> InceptionOutputs:
    """Outputs over an iterable of image batches, concatenated in order."""
    parts = [self(batch) for batch in batches]
    if not parts:
      raise ValueError('no images given')
    return InceptionOutputs(*(np.concatenate(p) for p in zip(*parts)))
