#!/bin/sh
# make demo: the main job of dalign — text to image with the shipped latent
# diffusion model (weights/, trained by `make weights`). Six prompts, four
# seeds each, one grid PNG; the last two prompts are compositions the model
# never saw in training (a held-out colour-shape pair and a held-out layout,
# docs/shapes-world.md). Each image is then scored with the shapes-world
# detector (`dalign reward --reward faithful`) so the grid comes with numbers.
# Usage: sh scripts/demo.sh path/to/dalign [weights dir]
set -eu

bin=$1
weights=${2:-${DALIGN_WEIGHTS:-weights}}
out=out/demo
seeds=4
# idle OpenMP threads sleep rather than spin (docs/training.md): the demo
# stays fast when something else holds a core
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export OMP_WAIT_POLICY

if [ ! -f "$weights/unet.safetensors" ]; then
    echo "make demo: no trained weights in '$weights' (expected $weights/unet.safetensors)." >&2
    echo "make demo: they ship with the repository; 'make weights' retrains them (about 90 min)." >&2
    exit 1
fi

# one prompt per line; "held-out" marks what training never showed
prompts='a large red circle on a white background
a small green square to the left of a purple triangle
an orange triangle below a big blue square on a black background
a yellow square above a cyan circle with a grey background
a large blue triangle on a white background|held-out colour-shape pair: blue triangle
a red circle above a green triangle|held-out layout: circle above triangle'

mkdir -p "$out"
rm -f "$out"/img-*.png
echo "== dalign demo: text -> image with the shipped model in $weights/"
echo "   6 prompts x $seeds seeds, 20 DDIM steps, classifier-free guidance 3"
echo "   (the same seeds 0..$((seeds - 1)) for every prompt: one grid row per prompt)"

# the argument list: --prompt P for every line
set --
IFS='
'
for line in $prompts; do
    set -- "$@" --prompt "${line%%|*}"
done
unset IFS

t0=$(date +%s)
"$bin" sample "$@" --n "$seeds" --grid --scale 4 --weights "$weights" -o "$out/grid.png"
# the same images one file each (same prompts, same seeds: the same bits up to
# batch rounding), for the detector
"$bin" sample "$@" --n "$seeds" --weights "$weights" -o "$out/img.png"
t1=$(date +%s)

echo
echo "== faithfulness of each image (fraction of the prompt's clauses the detector finds):"
i=0
row=1
IFS='
'
for line in $prompts; do
    prompt=${line%%|*}
    note=""
    [ "$prompt" != "$line" ] && note="   <- ${line#*|}"
    files=""
    for k in $(seq 0 $((seeds - 1))); do files="$files $out/img-$((i + k)).png"; done
    unset IFS
    # shellcheck disable=SC2086 # files is a space-separated list of our own paths
    scores=$("$bin" reward --reward faithful --prompt "$prompt" $files | awk -F'\t' '{printf "%.2f ", $1}')
    IFS='
'
    printf '  row %d  %-66s %s%s\n' "$row" "\"$prompt\"" "$scores" "$note"
    i=$((i + seeds))
    row=$((row + 1))
done
unset IFS

echo
echo "== done in $((t1 - t0)) s: the grid is $out/grid.png (rows: the prompts above, columns: seeds 0..$((seeds - 1)));"
echo "   single images in $out/img-*.png. Try: $bin sample --prompt \"a small pink circle below a big green square\" -o x.png --scale 8"
