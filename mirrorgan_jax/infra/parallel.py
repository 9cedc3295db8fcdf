"""Data parallelism over every device: a `data` Mesh for jit, or pmap.

`parallel.mode = 'jit'` (default): one `Mesh` with a `data` axis; batches are
global arrays sharded on it, parameters are replicated, and the compiled step
is the single-device program partitioned by XLA (BatchNorm statistics over the
global batch). `parallel.mode = 'pmap'`: the same step under `jax.pmap` over
local devices, with gradients, losses and BatchNorm statistics averaged across
the `batch` axis. Multi-host runs build global arrays from each process's batch.
"""

import dataclasses
import functools
from typing import Any, Callable, Sequence

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


MODES = ('jit', 'pmap')


@dataclasses.dataclass(frozen=True)
class CompiledStep:
  """A compiled train step: `step(state, host_batch) -> (state, metrics)`.

  Metrics come back on device, one value each (jit: scalars; pmap: this process's
  first device's copy, shape [1]).

  Attributes:
    compiled: the jitted (or pmapped) pure step.
    constants: the frozen pytrees as placed on the devices, passed to every call.
    place_state: a fresh host state -> the step's layout (replicated; in pmap
      mode with a leading device axis); without it the second call recompiles.
    mode: 'jit' or 'pmap'.
    batch_keys: the batch entries sent to the devices (None: all).
    mesh: the device mesh ('jit' mode).
  """
  compiled: Callable[..., Any]
  constants: tuple[Any, ...]
  place_state: Callable[[Any], Any]
  mode: str
  batch_keys: tuple[str, ...] | None
  mesh: Mesh | None

  def _args(self, state, batch):
    if self.batch_keys is not None:
      batch = {k: batch[k] for k in self.batch_keys}
    batch = (global_batch(batch, self.mesh) if self.mode == 'jit'
             else split_for_pmap(batch))
    return (state, *self.constants, batch)

  def __call__(self, state, batch):
    state, metrics = self.compiled(*self._args(state, batch))
    if self.mode == 'pmap':  # pmean-ed metrics, equal on every device: keep one copy
      # (this process's first device's, shape [1]), still on device: not waited for.
      metrics = jax.tree.map(lambda x: x.addressable_data(0), metrics)
    return state, metrics

  def to_checkpoint(self, state):
    """`state` as checkpoints hold it (one copy, replicated over the job's devices)."""
    return state if self.mode == 'jit' else pmap_to_checkpoint(state)

  def from_checkpoint(self, state):
    """A state restored from a checkpoint, in this step's layout."""
    return state if self.mode == 'jit' else pmap_from_checkpoint(state)

  def lower(self, state, batch) -> jax.stages.Lowered:
    """The lowered program (in pmap mode one device's share), for cost analysis."""
    return self.compiled.lower(*self._args(state, batch))


def compile_step(fn: Callable[..., tuple[Any, Any]], mesh: Mesh | None = None,
                 constants: Sequence[Any] = (),
                 batch_keys: Sequence[str] | None = None,
                 mode: str = 'jit') -> CompiledStep:
  """Compiles `fn(state, *constants, batch) -> (state, metrics)` data-parallel.

  The one way every phase (and the benchmark) builds its step. 'jit': over
  `mesh` (default: all devices), the state and `constants` (e.g. frozen
  networks: arguments of the compiled program, never baked in as literals)
  replicated, the batch sharded on `data`. 'pmap': over the local devices, `fn`
  must average over `PMAP_AXIS` itself. The state is donated in both modes.

  Args:
    fn: the pure step.
    mesh: the device mesh ('jit' mode).
    constants: pytrees passed to every call after the state; placed once.
    batch_keys: the batch entries the step takes (default: all).
    mode: 'jit' or 'pmap'.
  Returns:
    The `CompiledStep`, called with this process's numpy batch.
  """
  if mode == 'jit':
    mesh = mesh or create_mesh()
    rep = replicated(mesh)
    compiled = jax.jit(fn, in_shardings=(rep,) * (1 + len(constants)) + (batch_sharded(mesh),),
                       out_shardings=(rep, rep), donate_argnums=0)
    on_device = tuple(replicate(c, mesh) for c in constants)
    place_state = functools.partial(replicate, mesh=mesh)
  elif mode == 'pmap':
    compiled = jax.pmap(fn, axis_name=PMAP_AXIS, donate_argnums=0)
    on_device = tuple(replicate_for_pmap(c) for c in constants)
    place_state = replicate_for_pmap
  else:
    raise ValueError(f'parallel.mode must be one of {MODES}, got {mode!r}')
  return CompiledStep(compiled, on_device, place_state, mode,
                      None if batch_keys is None else tuple(batch_keys), mesh)


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


def _first_copy(x):
  """This process's first device's copy of a pmap-replicated array, as numpy.

  No computation: under several processes any `x[0]` hung (found with 2 processes
  x 2 CPU devices: the first process never got past it).
  """
  return np.asarray(x.addressable_data(0)).reshape(x.shape[1:])


def unreplicate(tree):
  """This process's first device's copy of a pmap-replicated pytree (equal copies)."""
  return jax.tree.map(_first_copy, tree)


def pmap_to_checkpoint(tree):
  """A pmap-replicated pytree as checkpoints hold it: one copy on every device of the job.

  Orbax saves global arrays; pmap's outputs are per-process ('host-local') arrays,
  which it cannot save across processes. The checkpoint is the same as a jit run's.
  """
  sharding = replicated(create_mesh())

  def one(x):
    host = _first_copy(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
  return jax.tree.map(one, tree)


def pmap_from_checkpoint(tree):
  """Inverse of `pmap_to_checkpoint`: the restored copy onto every local device."""
  return replicate_for_pmap(jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree))
