#!/usr/bin/env bash
# Train on the GPUs of this machine (data parallel over all of them), or on one
# node of a multi-node job.
#
#   launch/gpu.sh CONFIG WORKDIR [extra main.py flags...]
#   e.g. launch/gpu.sh configs/cub.py runs/cub --config.data.manual_dir=/data/cub
#
# Multi-node: run this on every node with the same arguments plus
#   --distributed --coordinator_address=HOST0:1234 --num_processes=N --process_id=I
# (under SLURM or Open MPI, --distributed alone is enough).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  sed -n '2,11p' "$0"; exit 2
fi
CONFIG=$1; WORKDIR=$2; shift 2
cd "$(dirname "$0")/.."
if [[ ! -f .venv/.installed-cuda ]]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -r requirements.txt 'jax[cuda12]==0.10.2'
  touch .venv/.installed-cuda
fi
# tf.data runs on the CPU; XLA may use most of the GPU memory.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
exec .venv/bin/python -m mirrorgan_jax.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
