"""Datasets and input pipelines. Importing this package registers the TFDS builders
`captioned_shapes`, `cub` and `coco2014_captions`."""

from mirrorgan_jax.data import captioned_shapes  # noqa: F401  (registers the builder)
from mirrorgan_jax.data import coco  # noqa: F401
from mirrorgan_jax.data import cub  # noqa: F401
