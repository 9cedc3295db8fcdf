"""Datasets and input pipelines (importing this package registers the TFDS builders)."""
