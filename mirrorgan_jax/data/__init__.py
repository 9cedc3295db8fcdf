"""Datasets and input pipelines.

Importing a builder module (`captioned_shapes`, `cub`, `coco`) registers its TFDS
builder; `input_pipeline` imports all three. The package itself imports nothing,
so its TensorFlow-free modules (`batch_keys`, `shapes_scene`) stay TensorFlow-free.
"""
