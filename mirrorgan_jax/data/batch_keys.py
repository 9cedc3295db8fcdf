"""Names of a batch's image fields, shared by tf.data and the JAX side.

TensorFlow-free, so the train step, the benchmark and sampling name a batch's
images without importing TensorFlow (about 530 MiB of host memory and seconds of
start-up that a process which never reads a dataset does not need).
"""


def image_key(size: int) -> str:
  """Batch key of the real image at side `size`."""
  return f'image_{size}'
