"""Variable initialisation as one XLA program compiled for speed, not run time.

Flax's `init` traces the model's forward pass and draws every parameter. Run
eagerly, each of those operations is dispatched and compiled on its own; jitted
with XLA's default settings, the compiler optimises code that runs once. One
program compiled at XLA's lowest backend optimisation level starts faster (GAN
state at the CUB widths, 1 stage, on a loaded 2-core CPU: 175 s eager, 69 s; the
small shapes state gained little there, 79 vs 77 s; BENCHMARKS.md (e)). The
values are the same as eager initialisation: the random draws do not depend on
how they are compiled. The compiled program
lands in the persistent compilation cache (`runtime_env`), so a second run of
the same config starts without compiling it.
"""

from typing import Any, Callable

import jax

# XLA options for programs that run once.
FAST_COMPILE = {'xla_backend_optimization_level': 0,
                'xla_llvm_disable_expensive_passes': True}


def run(fn: Callable[..., Any], *args: Any) -> Any:
  """`fn(*args)` as one program compiled with `FAST_COMPILE` (pure `fn`, array args;
  arrays `fn` closes over become constants of the program)."""
  return jax.jit(fn, compiler_options=FAST_COMPILE)(*args)
