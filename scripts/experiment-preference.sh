#!/bin/sh
# The preference-trainer experiment (issue 10, docs/alignment-preference.md).
# Every stage writes its result under $OUT (default out/experiments/preference)
# and is skipped when that result exists, so a stopped run continues where it
# stopped. Stage 1: preference pairs from the shipped base UNet on train-split
# prompts, rater-labelled, in chunks of $CHUNK pairs (one seed each: a killed
# run loses at most one chunk); the last chunk is the held-back validation set.
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-out/experiments/preference}
DALIGN=${DALIGN:-./dalign}
THREADS=${THREADS:-2}
TRAIN_CHUNKS=${TRAIN_CHUNKS:-8}
CHUNK=${CHUNK:-500}
mkdir -p "$OUT/pairs"

stage() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

pairs_chunk() { # $1 = name, $2 = seed
    f="$OUT/pairs/$1.safetensors"
    [ -f "$f" ] && { stage "pairs $1: cached"; return 0; }
    stage "pairs $1 (seed $2, $CHUNK pairs)"
    t0=$(date +%s)
    "$DALIGN" --threads "$THREADS" pairs --n "$CHUNK" --seed "$2" --split train \
        -o "$f" -q > "$OUT/pairs/$1.txt"
    stage "pairs $1: $(( $(date +%s) - t0 )) s"
}

i=1
while [ "$i" -le "$TRAIN_CHUNKS" ]; do
    pairs_chunk "train-$i" "$i"
    i=$((i + 1))
done
pairs_chunk val 1000
