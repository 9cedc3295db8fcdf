#!/usr/bin/env bash
# The paper's central claim on ground truth: MirrorGAN on captioned_shapes with
# lambda (STREAM weight) = 0 and 20, several seeds, the same GAN budget, all
# against the SAME frozen DAMSM, STREAM and oracle of one base run.
#
#   launch/shapes_ablation.sh BASE_WORKDIR OUT_DIR [SEEDS] [EXTRA main.py flags...]
#   e.g. launch/shapes_ablation.sh runs/shapes runs/ablation "0 1 2" --config.train.num_epochs=1
#
# BASE_WORKDIR is a finished `make run` (it holds damsm/artifact, stream/artifact,
# oracle/artifact and vocab.json). Each arm trains the GAN phase from scratch in
# OUT_DIR/lambda<L>_seed<S> and evaluates it (`--mode eval`); the table is written
# to OUT_DIR/ablation.md by `python -m mirrorgan_jax.evaluation.ablation_table`.
# CONFIG (default configs/shapes.py) must be the base run's config, e.g.
# configs/shapes.py:scratch_backbones for make runs 4-6. Set ARMS to choose the
# arms (default "lambda0 lambda20"; "lambda5" is the authors' weight relative to
# the adversarial terms; "lambda20_wordonly" trains without sentence-level
# attention). The oracle artifact is needed only for the eval stage (STAGE="gan"
# trains without it).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  sed -n '2,18p' "$0"; exit 2
fi
BASE=$1; OUT=$2; SEEDS=${3:-"0 1 2"}; shift $(( $# >= 3 ? 3 : 2 ))
ARMS=${ARMS:-"lambda0 lambda20"}
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CONFIG=${CONFIG:-configs/shapes.py}
arm_flags() {
  case $1 in
    lambda0) echo --config.loss.stream_weight=0 ;;
    lambda5) echo --config.loss.stream_weight=5 ;;
    lambda20) echo --config.loss.stream_weight=20 ;;
    lambda20_wordonly) echo --config.loss.stream_weight=20 --config.model.generator.glam=word_only ;;
    *) echo "unknown arm $1" >&2; exit 2 ;;
  esac
}
STAGE=${STAGE:-"gan eval"}
NEEDED="damsm/artifact stream/artifact"
[[ $STAGE == *eval* ]] && NEEDED+=" oracle/artifact"
for artifact in $NEEDED; do
  if [[ ! -d "$BASE/$artifact" ]]; then
    echo "missing $BASE/$artifact: run 'make run' (or --mode all) on $BASE first" >&2
    exit 1
  fi
done
# Train every arm, then evaluate every arm (STAGE=gan or STAGE=eval runs one half).
for mode in $STAGE; do
  for arm in $ARMS; do
    for seed in $SEEDS; do
      dir="$OUT/${arm}_seed${seed}"
      for artifact in $NEEDED; do
        if [[ ! -d "$dir/$artifact" ]]; then
          mkdir -p "$(dirname "$dir/$artifact")"
          cp -r "$BASE/$artifact" "$dir/$artifact"
        fi
      done
      cp "$BASE/vocab.json" "$dir/vocab.json"
      echo "== $arm seed $seed: $mode ($(date +%T))"
      # shellcheck disable=SC2046  # arm_flags prints several flags.
      "$PY" -m mirrorgan_jax.main --config="$CONFIG" --workdir="$dir" --mode=$mode \
        --config.seed="$seed" $(arm_flags "$arm") "$@"
    done
  done
done
if [[ $STAGE == *eval* ]]; then
  # Arms that another invocation into the same OUT has not evaluated yet wait for it.
  evaluated=()
  for dir in "$OUT"/*_seed*; do
    if [[ -f "$dir/eval/results.json" ]]; then
      evaluated+=("$dir")
    else
      echo "not evaluated yet, left out of $OUT/ablation.md: $dir"
    fi
  done
  "$PY" -m mirrorgan_jax.evaluation.ablation_table --out="$OUT/ablation.md" "${evaluated[@]}"
fi
