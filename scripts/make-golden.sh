#!/bin/sh
# make golden: fixed-seed samples of the shipped weights into tests/golden/,
# which tests/test_golden.c regenerates and compares: with the portable GEMM
# bit for bit on every machine, with OpenBLAS within 1e-5.
# Usage: sh scripts/make-golden.sh [path/to/dalign]
#
# Made with the portable GEMM (DA_GEMM=portable), whose bits do not depend
# on the machine, the thread count or the batch.
# For a dry run against other weights: WEIGHTS=DIR OUT=DIR sh scripts/make-golden.sh
# (the test reads tests/golden/ and weights/ unless DA_GOLDEN_DIR and
# DA_GOLDEN_WEIGHTS say otherwise).
set -eu

DALIGN=${1:-build/default/dalign}
WEIGHTS=${WEIGHTS:-weights}
OUT=${OUT:-tests/golden}
STEPS=20
CFG=3
SAMPLER=ddim

if [ ! -x "$DALIGN" ]; then
    echo "make-golden: $DALIGN not found (run make first)" >&2
    exit 1
fi
for f in text_encoder vae unet; do
    if [ ! -f "$WEIGHTS/$f.safetensors" ]; then
        echo "make-golden: $WEIGHTS/$f.safetensors missing (run make weights first)" >&2
        exit 1
    fi
done
mkdir -p "$OUT"
MANIFEST="$OUT/manifest.tsv"
TMP="$MANIFEST.tmp.$$"
trap 'rm -f "$TMP"' EXIT
printf '# name\tseed\tsteps\tcfg\tsampler\tprompt  (written by scripts/make-golden.sh)\n' > "$TMP"

# name seed prompt: two train-split prompts, a held-out colour-shape pair
# (blue triangle) and a held-out layout (square right of circle)
while IFS='|' read -r name seed prompt; do
    [ -n "$name" ] || continue
    echo "== make golden: $name (seed $seed): $prompt"
    DA_GEMM=portable "$DALIGN" sample --weights "$WEIGHTS" --prompt "$prompt" --seed "$seed" --steps "$STEPS" --cfg "$CFG" \
        --sampler "$SAMPLER" --n 1 -o "$OUT/$name.png" --latents "$OUT/$name.safetensors"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$seed" "$STEPS" "$CFG" "$SAMPLER" "$prompt" >> "$TMP"
done <<'LIST'
golden-0|11|a large red circle above a small blue square on a white background
golden-1|12|a green triangle on a black background
golden-2|13|a blue triangle below a purple square on gray
golden-3|14|an orange square to the right of a pink circle
LIST
mv "$TMP" "$MANIFEST"
trap - EXIT
# which weights the goldens belong to: the test refuses a mix
if [ -f "$WEIGHTS/SHA256SUMS" ]; then
    cp "$WEIGHTS/SHA256SUMS" "$OUT/weights.SHA256SUMS"
else
    rm -f "$OUT/weights.SHA256SUMS"
fi
echo "make golden: wrote $OUT/ ($(ls "$OUT" | wc -l) files) from $WEIGHTS/ with $(DA_GEMM=portable "$DALIGN" --version)"
