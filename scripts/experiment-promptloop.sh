#!/bin/sh
# The PromptLoop experiment (issue 12; the report is docs/promptloop.md
# "Results"). `make experiment-promptloop` runs it; SMOKE=1 runs every stage
# at toy size.
#
# Every stage writes its result under $OUT (default out/experiments/promptloop)
# and is skipped when that result exists; a training run stopped half-way
# continues from its checkpoint.
#
#   1 ref      the reference refiner (weights/refiner-ref when shipped, else
#              `dalign train refiner` into $OUT)
#   2 rl       GRPO on the faithful reward: the closed-loop refiner (mode
#              loop) and, as the feed-forward baseline, one trained in mode
#              once (RePrompt-style: one prompt before sampling, no latent).
#              Both in the world that keeps the meaning (RL_ARGS: a rewrite
#              that does not mean the query is discarded for the image, one
#              noise per group, queries from both splits' compositions, never
#              an evaluation prompt's; docs/promptloop.md says why)
#              WINDOW=FIRST:END spreads the loop refiner's refinements over
#              those sampler steps (--refine-window; default: the whole
#              trajectory); the once refiner writes before step 0 either way
#   3 eval     base; the loop refiner in modes loop and apriori; the once
#              refiner in mode once; the reference refiner in mode loop (what
#              RL added) -- held-in and held-out prompts, $EVAL_PROMPTS x
#              $EVAL_SEEDS, greedy refiners, with the meaning guard of training
#   4 extras   inference time of each mode against the base; three example
#              trajectories (sample -v strips)
#   5 report   tables, win-rates against the base, curves -> $DOC/results.md
# UNTIL=ref|rl|eval|extras stops after that stage.
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-out/experiments/promptloop}
DALIGN=${DALIGN:-./dalign}
THREADS=${THREADS:-2}
WEIGHTS=${WEIGHTS:-weights}
if [ "${SMOKE:-0}" = 1 ]; then
    OUT=${OUT}-smoke
    ITERATIONS=2 QUERIES=2 GROUP=2 EVAL_PROMPTS=4 EVAL_SEEDS=2
    REF_ARGS="--steps 4 --bank-size 8 --val-queries 4 --val-quick 2 --bank-steps 4" OVERHEAD_N=4
fi
ITERATIONS=${ITERATIONS:-300}
QUERIES=${QUERIES:-4}
GROUP=${GROUP:-8}
# GRPO's learning rate: at 1e-5 (the trainer's default) 15 iterations moved
# the policy by a KL of 1.5e-4 to the reference with no clipping at all, too
# little to change a prompt in 150 iterations; 1e-4 is the choice, made on
# training metrics only (KL, clip fraction), never on evaluation prompts
RL_LR=${RL_LR:-1e-4}
EVAL_PROMPTS=${EVAL_PROMPTS:-200}
EVAL_SEEDS=${EVAL_SEEDS:-4}
REF_ARGS=${REF_ARGS:-}
# the training world (stage 2) and the guard the evaluations keep (stage 3)
RL_ARGS=${RL_ARGS:---shared-noise --refine-keep-meaning --query-split all}
GUARD=--refine-keep-meaning
WINDOW=${WINDOW:-}
WIN_ARGS=${WINDOW:+--refine-window $WINDOW}
OVERHEAD_N=${OVERHEAD_N:-64}
# Every stage is cached by its output file, so a rerun with other settings
# would reuse the old results and label them with the new ones: $OUT
# remembers its settings and a rerun with others is refused
SETTINGS="iterations=$ITERATIONS queries=$QUERIES group=$GROUP lr=$RL_LR rl=[$RL_ARGS] guard=[$GUARD]"
SETTINGS="$SETTINGS eval=${EVAL_PROMPTS}x$EVAL_SEEDS ref=[$REF_ARGS]"
# (only when set: an OUT made before the window existed keeps its settings)
SETTINGS="$SETTINGS${WINDOW:+ window=$WINDOW}"
if [ -f "$OUT/settings" ]; then
    if [ "$(cat "$OUT/settings")" != "$SETTINGS" ]; then
        printf '%s was made with other settings:\n  %s\nnow:\n  %s\nuse another OUT=DIR, or remove it\n' \
            "$OUT" "$(cat "$OUT/settings")" "$SETTINGS" >&2
        exit 2
    fi
elif [ -n "$(ls -A "$OUT/models" 2>/dev/null)$(ls -A "$OUT/eval" 2>/dev/null)" ]; then
    printf '%s holds results of an older version of this script (no settings file): use another OUT=DIR, or remove it\n' \
        "$OUT" >&2
    exit 2
fi
mkdir -p "$OUT/models" "$OUT/eval"
printf '%s\n' "$SETTINGS" > "$OUT/settings"
TIMES=$OUT/stage-times.tsv

stage() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
timed() {
    name=$1; shift
    t0=$(date +%s)
    "$@"
    printf '%s\t%s\n' "$name" "$(( $(date +%s) - t0 ))" >> "$TIMES"
}

# ---- 1 ref -----------------------------------------------------------------
if [ -f "$WEIGHTS/refiner-ref.safetensors" ] && [ "${SMOKE:-0}" != 1 ]; then
    REF_DIR=$WEIGHTS
    stage "ref: the shipped $WEIGHTS/refiner-ref"
else
    REF_DIR=$OUT/models
    if [ ! -f "$REF_DIR/refiner-ref.safetensors" ]; then
        stage "ref: training the reference refiner"
        resume=""
        [ -f "$REF_DIR/refiner-ref.ckpt" ] && resume="--resume $REF_DIR/refiner-ref.ckpt"
        # shellcheck disable=SC2086
        timed train-refiner-ref "$DALIGN" --threads "$THREADS" train refiner --weights "$WEIGHTS" --out "$REF_DIR" \
            --name refiner-ref --force -q $REF_ARGS $resume > "$REF_DIR/refiner-ref.txt"
    fi
fi
[ "${UNTIL:-}" = ref ] && exit 0

# ---- 2 rl ------------------------------------------------------------------
# rl NAME MODE [ARGS]: GRPO from the reference refiner, reward faithful
rl() {
    name=$1 mode=$2 d=$OUT/models
    shift 2
    [ -f "$d/$name.safetensors" ] && { stage "rl $name: cached"; return 0; }
    resume=""
    [ -f "$d/$name.ckpt" ] && resume="--resume $d/$name.ckpt"
    stage "rl $name (mode $mode, $ITERATIONS iterations of $QUERIES x $GROUP)"
    # shellcheck disable=SC2086
    timed "rl-$name" "$DALIGN" --threads "$THREADS" train promptloop --weights "$WEIGHTS" --out "$d" \
        --init "$REF_DIR/refiner-ref.safetensors" --name "$name" --reward faithful --refine-mode "$mode" \
        --iterations "$ITERATIONS" --queries "$QUERIES" --group "$GROUP" --lr "$RL_LR" $RL_ARGS "$@" --seed 1 --force -q $resume \
        > "$d/$name.txt"
}
# shellcheck disable=SC2086
rl refiner loop $WIN_ARGS
rl refiner-once once
# SHIP=1 (make refiner): weights/refiner.{safetensors,json} from this run's
# loop refiner, with its SHA256SUMS lines (replacing older ones)
if [ "${SHIP:-0}" = 1 ]; then
    [ "${SMOKE:-0}" = 1 ] && { echo "SHIP with SMOKE=1: refusing to ship a toy model" >&2; exit 1; }
    for ext in safetensors json; do cp "$OUT/models/refiner.$ext" "$WEIGHTS/refiner.$ext.tmp"; done
    for ext in safetensors json; do mv "$WEIGHTS/refiner.$ext.tmp" "$WEIGHTS/refiner.$ext"; done
    (cd "$WEIGHTS" && { grep -v " refiner\.\(safetensors\|json\)\$" SHA256SUMS || true; } > SHA256SUMS.tmp &&
        sha256sum refiner.safetensors refiner.json >> SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
    stage "shipped $WEIGHTS/refiner.{safetensors,json}"
fi
[ "${UNTIL:-}" = rl ] && exit 0

# ---- 3 eval ------------------------------------------------------------------
# evaluate LABEL SPLIT [refiner args]
evaluate() {
    label=$1 split=$2; shift 2
    dir=$OUT/eval/$label-$split
    [ -f "$dir/metrics.json" ] && { stage "eval $label $split: cached"; return 0; }
    stage "eval $label on $split prompts"
    # shellcheck disable=SC2068
    timed "eval-$label-$split" "$DALIGN" --threads "$THREADS" eval --weights "$WEIGHTS" --prompts "$split" \
        --n-prompts "$EVAL_PROMPTS" --seeds "$EVAL_SEEDS" -o "$dir" -q $@ > "$dir.txt"
}
M=$OUT/models
# shellcheck disable=SC2086 # WIN_ARGS: no words, or two
for split in heldin heldout; do
    evaluate base "$split"
    evaluate loop "$split" --refiner "$M/refiner.safetensors" --refine-mode loop $GUARD $WIN_ARGS
    evaluate apriori "$split" --refiner "$M/refiner.safetensors" --refine-mode apriori $GUARD $WIN_ARGS
    evaluate once "$split" --refiner "$M/refiner-once.safetensors" --refine-mode once $GUARD
    evaluate ref-loop "$split" --refiner "$REF_DIR/refiner-ref.safetensors" --refine-mode loop $GUARD $WIN_ARGS
done
[ "${UNTIL:-}" = eval ] && exit 0

# ---- 4 extras ----------------------------------------------------------------
X=$OUT/extras
mkdir -p "$X"
# wall time of $OVERHEAD_N images per mode (best of 3), against the base
overhead() {
    label=$1; shift
    best=""
    for r in 1 2 3; do
        t0=$(date +%s.%N)
        # shellcheck disable=SC2068
        "$DALIGN" --threads "$THREADS" sample --weights "$WEIGHTS" --prompt "a red circle left of a blue square" \
            --n "$OVERHEAD_N" --grid -o "$X/overhead.png" $@ > /dev/null 2>&1
        t=$(echo "$(date +%s.%N) - $t0" | bc)
        best=$(echo "$t $best" | awk '{ print ($2 == "" || $1 < $2) ? $1 : $2 }')
    done
    printf '%s\t%s\n' "$label" "$best" >> "$X/overhead.tsv.tmp"
}
# shellcheck disable=SC2086
if [ ! -f "$X/overhead.tsv" ]; then
    rm -f "$X/overhead.tsv.tmp"
    overhead base
    overhead loop --refiner "$M/refiner.safetensors" --refine-mode loop $GUARD $WIN_ARGS
    overhead apriori --refiner "$M/refiner.safetensors" --refine-mode apriori $GUARD $WIN_ARGS
    overhead once --refiner "$M/refiner-once.safetensors" --refine-mode once $GUARD
    mv "$X/overhead.tsv.tmp" "$X/overhead.tsv"
fi
# three example trajectories: the prompts written and the x0 read at each refinement
i=0
for q in "a small green triangle below a large red square" "a purple circle to the left of a yellow triangle" \
         "a large cyan square on a black background"; do
    i=$((i + 1))
    [ -f "$X/trajectory-$i-loop.png" ] && continue
    # shellcheck disable=SC2086
    "$DALIGN" --threads "$THREADS" sample --weights "$WEIGHTS" --prompt "$q" --refiner "$M/refiner.safetensors" \
        --seed "$i" --scale 4 $GUARD $WIN_ARGS -v -o "$X/trajectory-$i.png" > "$X/trajectory-$i.txt" 2>&1
done
[ "${UNTIL:-}" = extras ] && exit 0

# ---- 5 report ------------------------------------------------------------------
DOC=${DOC:-$OUT/report}
mkdir -p "$DOC"
R=$DOC/results.md
ci() {
    sed -n "s/.*\"$2\": *{\"mean\": *\([^,]*\), *\"ci95\": *\[\([^,]*\), *\([^]]*\)\].*/\1 \2 \3/p" "$1" |
        awk '{ printf "%.3f [%.3f, %.3f]", $1, $2, $3 }'
}
{
    echo "# PromptLoop: results"
    echo
    echo "Generated by scripts/experiment-promptloop.sh on $(date -u +%Y-%m-%d) from $OUT; GRPO on the"
    echo "faithful reward, $ITERATIONS iterations of $QUERIES queries x $GROUP rollouts at lr $RL_LR ($RL_ARGS${WIN_ARGS:+; loop: $WIN_ARGS});"
    echo "evaluation on $EVAL_PROMPTS prompts x $EVAL_SEEDS seeds per split, greedy refiners ($GUARD). Intervals: 95%,"
    echo "clustered by prompt."
    echo
    echo "## Win-rate against the base (same prompt and seed; judge: faithfulness, then the rater)"
    echo
    echo "| refiner | mode | split | faithfulness diff | rater win-rate |"
    echo "|---|---|---|---|---|"
    for split in heldin heldout; do
        for m in loop apriori once ref-loop; do
            base=$OUT/eval/base-$split model=$OUT/eval/$m-$split
            "$DALIGN" winrate "$base" "$model" --column faithful --json "$model.winrate-faith.json" > /dev/null
            "$DALIGN" winrate "$base" "$model" --json "$model.winrate.json" > /dev/null
            printf '| %s | %s | %s | %s | %s |\n' "$m" "$m" "$split" "$(ci "$model.winrate-faith.json" diff)" \
                "$(ci "$model.winrate.json" win_rate)"
        done
    done
    for split in heldin heldout; do
        echo
        echo "## Metrics on $split prompts"
        echo
        "$DALIGN" table --labels base,loop,apriori,once,ref-loop "$OUT/eval/base-$split" "$OUT/eval/loop-$split" \
            "$OUT/eval/apriori-$split" "$OUT/eval/once-$split" "$OUT/eval/ref-loop-$split"
    done
    echo
    echo "## Inference time ($OVERHEAD_N images, best of 3, $THREADS threads)"
    echo
    echo "| mode | seconds | vs base |"
    echo "|---|---|---|"
    b=$(awk '$1 == "base" { print $2 }' "$X/overhead.tsv")
    awk -v b="$b" '{ printf "| %s | %.2f | %+.1f%% |\n", $1, $2, 100 * ($2 / b - 1) }' "$X/overhead.tsv"
    echo
    echo "## Training curves"
    echo
    echo "![reward, faithfulness, KL](curves-rl.svg)"
    echo
    echo "## Example trajectories (columns: the x0 the refiner read at each refinement, steps counted from 0 as below; the image)"
    for k in 1 2 3; do
        cp "$X/trajectory-$k-loop.png" "$DOC/trajectory-$k.png"
        echo
        echo "![trajectory $k](trajectory-$k.png)"
        echo
        echo '```'
        grep -v "^wrote\|^dalign sample:\|^  " "$X/trajectory-$k.txt" || true
        grep "^  after\|^  before" "$X/trajectory-$k.txt" || true
        echo '```'
    done
    echo
    echo "## Wall time per stage ($THREADS threads)"
    echo
    echo "| stage | seconds |"
    echo "|---|---|"
    sed 's/^\(.*\)\t\(.*\)$/| \1 | \2 |/' "$TIMES"
} > "$R.tmp"
mv "$R.tmp" "$R"
"$DALIGN" plot --y reward,faith,kl,meaning --smooth 5 --labels loop,once --title "PromptLoop GRPO" \
    -o "$DOC/curves-rl.svg" "$M/refiner.metrics.jsonl" "$M/refiner-once.metrics.jsonl"
stage "done: results in $OUT, report in $R"
