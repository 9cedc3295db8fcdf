#!/usr/bin/env bash
# Checks that a run spread over several JAX processes equals the one-process run,
# on this machine: every phase of configs/shapes.py:smoke, then eval, as 1 process x 4
# CPU devices and as 2 processes x 2 devices (jax.distributed on 127.0.0.1, gloo
# collectives: the code path of a TPU pod slice or a multi-GPU cluster), under
# parallel.mode jit and then pmap; then compares losses, final parameters and eval results
# (python -m mirrorgan_jax.compare_runs). Exits non-zero if a run fails or the runs
# differ. Any flag of `python -m mirrorgan_jax.multiprocess_check` can be passed, e.g.
#   launch/local_multiprocess.sh --modes pmap --root /tmp/mp
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[[ -x "$PY" ]] || PY=python3
exec "$PY" -m mirrorgan_jax.multiprocess_check "$@"
