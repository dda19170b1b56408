#!/bin/sh
# make weights: train every shipped network from scratch, in order, with
# fixed seeds: clip (text encoder + CLIP image tower), vae, unet, unet-b,
# and the preference model behind the `pref` reward (reward_net).
# Usage: sh scripts/make-weights.sh [path/to/dalign]
#
# Step counts and a few knobs are environment variables, so a quick smoke run
# is one line (SMOKE=1 sets every stage to 20 steps and writes to build/):
#   SMOKE=1 make weights
#   CLIP_STEPS=1500 VAE_STEPS=3000 UNET_STEPS=12000 UNETB_STEPS=3000 REWARD_STEPS=8000 make weights
# Everything is trained into $WORK/out first; only when all five stages
# succeed are the files copied into $OUT and SHA256SUMS written, so a failed
# or interrupted run never leaves a mix of old and new weights.
# Same seeds and step counts give the same bits on any thread count.
set -eu

DALIGN=${1:-build/default/dalign}
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
    : "${CLIP_STEPS:=20}" "${VAE_STEPS:=20}" "${UNET_STEPS:=20}" "${UNETB_STEPS:=20}" "${REWARD_STEPS:=20}"
    : "${UNET_CACHE:=256}" "${VAE_SCALE_IMAGES:=100}" "${VAE_EVAL_IMAGES:=50}"
    : "${OUT:=build/weights-smoke}" "${WORK:=build/weights-smoke-run}"
fi
CLIP_STEPS=${CLIP_STEPS:-1500}
VAE_STEPS=${VAE_STEPS:-3000}
UNET_STEPS=${UNET_STEPS:-12000}
UNETB_STEPS=${UNETB_STEPS:-3000}
REWARD_STEPS=${REWARD_STEPS:-8000}
CLIP_BATCH=${CLIP_BATCH:-64}
VAE_BATCH=${VAE_BATCH:-16}
UNET_BATCH=${UNET_BATCH:-32}
UNET_CACHE=${UNET_CACHE:-8192}
VAE_SCALE_IMAGES=${VAE_SCALE_IMAGES:-2000}
VAE_EVAL_IMAGES=${VAE_EVAL_IMAGES:-500}
OUT=${OUT:-weights}
WORK=${WORK:-build/weights-run}
THREADS=${THREADS:-0}   # 0: all cores
# Idle OpenMP threads sleep instead of spinning: when anything else runs on
# the machine, spinning threads fight it for the cores and a 2-thread UNet
# step measured 10x slower (docs/training.md, "Pretraining").
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export OMP_WAIT_POLICY

if [ ! -x "$DALIGN" ]; then
    echo "make-weights: $DALIGN not found (run make first)" >&2
    exit 1
fi
rm -rf "$WORK/out"
mkdir -p "$WORK/out" "$OUT"
W="$WORK/out"
TIMES="$WORK/times.txt"
: > "$TIMES"

now() { date +%s; }

# stage NAME ARGS...: one `dalign train`, its log in $WORK/NAME.log, its
# metrics in $WORK/NAME.jsonl, its checkpoint in $WORK/NAME.ckpt
stage() {
    name=$1
    shift
    echo "== make weights: $name ($*)"
    t0=$(now)
    # --force: a stage starts from scratch, replacing its checkpoint from an
    # earlier (possibly interrupted or differently sized) run of this script
    "$DALIGN" --threads "$THREADS" train "$@" --out "$W" --ckpt "$WORK/$name.ckpt" --force \
        --metrics "$WORK/$name.jsonl" 2>&1 | tee "$WORK/$name.log"
    # the pipeline hides dalign's status: read it back from the log
    if ! grep -q '^wrote ' "$WORK/$name.log"; then
        echo "make-weights: stage $name failed (log: $WORK/$name.log)" >&2
        exit 1
    fi
    t1=$(now)
    echo "$name $((t1 - t0))" >> "$TIMES"
    echo "== $name: $((t1 - t0)) s"
}

T0=$(now)
stage clip clip --seed 1 --steps "$CLIP_STEPS" --batch "$CLIP_BATCH"
stage vae vae --seed 2 --steps "$VAE_STEPS" --batch "$VAE_BATCH" \
    --scale-images "$VAE_SCALE_IMAGES" --eval-images "$VAE_EVAL_IMAGES"
stage unet unet --seed 3 --steps "$UNET_STEPS" --batch "$UNET_BATCH" --cache "$UNET_CACHE" \
    --weights "$W" --name unet --width 64,128
stage unet-b unet --seed 4 --steps "$UNETB_STEPS" --batch "$UNET_BATCH" --cache "$UNET_CACHE" \
    --weights "$W" --name unet-b --width 48,96
# the preference model trains on rater-labelled synthetic scenes, not on
# samples, so it needs none of the above; it has no checkpoint option (its
# default run is ~15 min), hence no stage().
echo "== make weights: reward (train reward --seed 0 --steps $REWARD_STEPS)"
t0=$(now)
"$DALIGN" --threads "$THREADS" train reward --seed 0 --steps "$REWARD_STEPS" --out "$W" --quiet \
    2>&1 | tee "$WORK/reward.log"
if ! grep -q '^wrote ' "$WORK/reward.log"; then
    echo "make-weights: stage reward failed (log: $WORK/reward.log)" >&2
    exit 1
fi
echo "reward $(($(now) - t0))" >> "$TIMES"
T1=$(now)

FILES="text_encoder.safetensors text_encoder.json clip.safetensors clip.json vae.safetensors vae.json
unet.safetensors unet.json unet-b.safetensors unet-b.json scheduler.json
reward_net.safetensors reward_net.json"
for f in $FILES; do cp "$W/$f" "$OUT/$f"; done
(cd "$OUT" && sha256sum $FILES > SHA256SUMS)

echo
echo "make weights: done in $((T1 - T0)) s on $(nproc) cores ($(uname -m)); per stage (s):"
sed 's/^/  /' "$TIMES"
echo "  total $((T1 - T0))"
echo "weights in $OUT/ ($(du -ch $(for f in $FILES; do echo "$OUT/$f"; done) | tail -1 | cut -f1)), SHA256SUMS written;"
echo "logs, metrics and checkpoints in $WORK/"
