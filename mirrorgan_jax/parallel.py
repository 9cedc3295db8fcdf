"""Data parallelism over every device: a `data` Mesh for jit, or pmap.

`parallel.mode = 'jit'` (default): one `Mesh` with a `data` axis; batches are
global arrays sharded on it, parameters are replicated, and the compiled step
is the single-device program partitioned by XLA (BatchNorm statistics over the
global batch). `parallel.mode = 'pmap'`: the same step under `jax.pmap` over
local devices, with gradients, losses and BatchNorm statistics averaged across
the `batch` axis. Multi-host runs build global arrays from each process's batch.
"""

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

DATA_AXIS = 'data'  # Mesh axis name (jit mode).
PMAP_AXIS = 'batch'  # Collective axis name (pmap mode).


def create_mesh() -> Mesh:
  """A 1-D mesh over all devices of all processes, axis `data`.

  Auto axis types: XLA propagates shardings (params replicated, activations
  split on the batch) without explicit-sharding annotations in the models.
  """
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def local_mesh(batch_size: int) -> Mesh:
  """A `data` mesh over the most of this process's devices that split `batch_size`.

  For work one process does alone (evaluation, sampling): e.g. 8 local devices
  and batches of 50 give a mesh of 5 devices.
  """
  devices = jax.local_devices()
  count = max(n for n in range(1, len(devices) + 1) if batch_size % n == 0)
  return Mesh(np.array(devices[:count]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of parameters: a full copy on every device."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Sharding of batches: split along the leading axis over `data`."""
  return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(batch, mesh: Mesh):
  """Per-process numpy batch -> global jax arrays sharded on `data`."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree, mesh: Mesh):
  """Puts a pytree on every device of the mesh (replicated)."""
  return jax.device_put(tree, replicated(mesh))


def split_for_pmap(batch):
  """[B, ...] numpy batch -> [local_devices, B / local_devices, ...]."""
  n = jax.local_device_count()

  def split(x):
    x = np.asarray(x)
    if x.shape[0] % n:
      raise ValueError(f'batch of {x.shape[0]} does not split over {n} devices')
    return x.reshape((n, x.shape[0] // n) + x.shape[1:])
  return jax.tree.map(split, batch)


def replicate_for_pmap(tree):
  """Copies a pytree onto every local device, with a leading device axis.

  The identity pmap leaves the copies on device, so the arrays are not sent
  again at every step (jax 0.10 removed `jax.device_put_replicated`).
  """
  n = jax.local_device_count()
  stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), tree)
  return jax.pmap(lambda x: x)(stacked)


def unreplicate(tree):
  """The first device's copy of a pmap-replicated pytree."""
  return jax.tree.map(lambda x: x[0], tree)
