"""Process environment set before TensorFlow, NumPy and JAX start (main, sample, benchmark).

- TensorFlow's C++ INFO/WARNING lines are off (`TF_CPP_MIN_LOG_LEVEL=2`): it only
  reads data here.
- XLA:CPU compiles convolutions and dots with its own Eigen/LLVM kernels instead of
  YNNPACK fusions (`--xla_cpu_experimental_ynn_fusion_type=`). Measured on 2 Zen 3
  cores, captioned_shapes config, float32 (BENCHMARKS.md, section (d)): the
  GAN step 0.38-0.66 s -> 0.31-0.39 s, the DAMSM step 0.191 -> 0.137 s. YNNPACK ran
  the weight gradients of the GAN's small-channel 3x3 convolutions at 5-20 GFLOP/s
  (the Eigen kernels: 40-80). The flag only concerns the CPU backend.
- OpenBLAS, whose LAPACK jaxlib calls for QR (the orthogonal initialisers) and
  Cholesky, runs on one thread (`OPENBLAS_NUM_THREADS=1`): called from inside XLA's
  thread pool, its own threads fought XLA's for the cores. On 2 loaded cores a
  [576, 64] QR took 25-540 ms with OpenBLAS's threads and under 1 ms without, a
  [16384, 200] one 0.8-2.4 s against 0.23 s (BENCHMARKS.md, section (j)).
- JAX's persistent compilation cache is on, in `$XDG_CACHE_HOME/mirrorgan_jax/xla`
  (default `~/.cache/...`, at most 2 GiB, least recently used entries dropped): a
  second run of a config, or another arm of an ablation, loads its compiled steps
  instead of compiling them again. `JAX_COMPILATION_CACHE_DIR=` (empty) turns it off.

A value the user already set (in the environment or `XLA_FLAGS`) is kept, and
`MIRRORGAN_XLA_DEFAULTS=0` leaves `XLA_FLAGS` alone (to time XLA's own defaults).
"""

import os
from typing import MutableMapping

YNN_OFF = '--xla_cpu_experimental_ynn_fusion_type='  # No fusion type goes to YNNPACK.
CACHE_MAX_BYTES = 2 * 2**30


def compilation_cache_dir(environ: MutableMapping[str, str] = os.environ) -> str:
  """The default compilation cache directory (under the user's cache directory)."""
  root = environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(root, 'mirrorgan_jax', 'xla')


def set_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
  """Sets the defaults above in `environ` (call before TensorFlow/NumPy/JAX load).

  Args:
    environ: the environment to edit (the process's by default).
  """
  environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  environ.setdefault('OPENBLAS_NUM_THREADS', '1')
  environ.setdefault('JAX_COMPILATION_CACHE_DIR', compilation_cache_dir(environ))
  environ.setdefault('JAX_COMPILATION_CACHE_MAX_SIZE', str(CACHE_MAX_BYTES))
  if environ.get('MIRRORGAN_XLA_DEFAULTS', '1') == '0':
    return
  flags = environ.get('XLA_FLAGS', '').split()
  if not any(f.startswith(YNN_OFF) or f == YNN_OFF[:-1] for f in flags):
    flags.append(YNN_OFF)  # Unless the user chose a value of their own.
  environ['XLA_FLAGS'] = ' '.join(flags)
