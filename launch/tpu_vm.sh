#!/usr/bin/env bash
# Train on a Cloud TPU VM slice (every host runs the same command).
#
#   launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [extra main.py flags...]
#   e.g. launch/tpu_vm.sh my-v4-32 us-central2-b configs/coco.py gs://bucket/runs/coco \
#          --config.data.data_dir=gs://bucket/tensorflow_datasets
#
# Copies the committed tree (git archive HEAD) to all workers, installs the pinned
# stack plus jax[tpu], and starts `python -m mirrorgan_jax.main --distributed` on
# every worker. Put the TFDS data (and a prepared CUB/COCO build) on GCS and point
# --config.data.data_dir at it; the workdir should be on GCS too.
set -euo pipefail
if [[ $# -lt 4 ]]; then
  sed -n '2,12p' "$0"; exit 2
fi
TPU_NAME=$1; ZONE=$2; CONFIG=$3; WORKDIR=$4; shift 4
EXTRA=$(printf '%q ' "$@")
ARCHIVE=$(mktemp -t mirrorgan_jax.XXXXXX.tar.gz)
git archive --format=tar.gz -o "$ARCHIVE" HEAD
gcloud compute tpus tpu-vm scp "$ARCHIVE" "$TPU_NAME:~/mirrorgan_jax.tar.gz" \
  --zone="$ZONE" --worker=all
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  set -e
  mkdir -p ~/mirrorgan_jax && tar -xzf ~/mirrorgan_jax.tar.gz -C ~/mirrorgan_jax
  cd ~/mirrorgan_jax
  python3 -m venv .venv
  .venv/bin/pip install -q -r requirements.txt 'jax[tpu]==0.10.2'
  .venv/bin/python -m mirrorgan_jax.main --config=$CONFIG --workdir=$WORKDIR --distributed $EXTRA
"
