#!/bin/bash
# The preference-trainer experiment (issue 10; the report is
# docs/alignment-preference.md). `make experiment-preference` runs it;
# SMOKE=1 runs every stage at toy size.
#
# Every stage writes its result under $OUT (default out/experiments/preference)
# and is skipped when that result exists; a training run stopped half-way
# continues from its checkpoint. So a killed run is restarted with the same
# command and loses at most one pairs chunk.
#
#   1 pairs    from the shipped base UNet on train-split prompts, rater-labelled,
#              in chunks of $CHUNK pairs (one seed each); the last chunk is the
#              held-back validation set (never trained on)
#   2 sweep    DPO beta x lr, KTO beta and RPO tau at a short budget, each scored
#              by its implicit accuracy on the validation pairs (the choice is
#              made on those alone: never on evaluation prompts)
#   3 train    SFT, DPO, RPO, KTO from the base UNet at the same budget with the
#              chosen settings (SHIP=dpo, as `make unet-dpo` does, then copies
#              the DPO model to weights/unet-dpo.* with its SHA256SUMS lines)
#   4 eval     base and the four with `dalign eval` on held-in and held-out
#              prompts ($EVAL_PROMPTS prompts x $EVAL_SEEDS seeds, the same for all)
#   5 style    outline-style pairs, DPO and RPO on them, style share and
#              faithfulness on held-out prompts
#   6 report   win-rates against the base, tables, curves, grids, stage times
#              -> $DOC/results.md (DOC=docs/alignment-preference for the shipped report)
# UNTIL=pairs|sweep|train|eval|style stops after that stage; STYLE=0 leaves
# stage 5 (and its report section) out.
#
# Training runs and evaluations go $JOBS (default $THREADS) at a time, each
# on $THREADS/$JOBS threads (bits do not depend on either): two
# single-threaded runs side by side use 2 cores better than one run on 2
# threads. When SWEEP_STEPS equals STEPS, a method's final model is its
# chosen sweep run (no second run).
# Bash, not sh: the job pool needs `wait -n`.
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-out/experiments/preference}
DALIGN=${DALIGN:-./dalign}
THREADS=${THREADS:-2}
WEIGHTS=${WEIGHTS:-weights}
if [ "${SMOKE:-0}" = 1 ]; then
    OUT=${OUT}-smoke
    TRAIN_CHUNKS=1 CHUNK=16 PAIR_STEPS=4 STYLE_CHUNKS=1 STYLE_STEPS=4
    SWEEP_STEPS=4 STEPS=6 BATCH=4 WARMUP=2 EVAL_PROMPTS=4 EVAL_SEEDS=2 VAL_DRAWS=1
    BETAS="500 2000" LRS="1e-5" KTO_BETAS="500" TAUS="0.5"
fi
# The budget of the 2026-12-05 protocol: 8000 pairs, batches of 128, 400
# steps (6.4 epochs), warmup 20, constant lr. beta, KTO's beta and tau come
# from the batch-16 sweep on the same validation pairs (300 steps: DPO beta
# 500/2000/5000 x lr 1e-5/3e-5, KTO beta 500/2000/5000, RPO tau 0.1/0.5/2;
# docs/alignment-preference.md); the lr is swept again at this budget.
JOBS=${JOBS:-$THREADS}
JT=$(( THREADS / JOBS )); [ "$JT" -ge 1 ] || JT=1
TRAIN_CHUNKS=${TRAIN_CHUNKS:-16}
STYLE_CHUNKS=${STYLE_CHUNKS:-2}
STYLE_STEPS=${STYLE_STEPS:-500}
CHUNK=${CHUNK:-500}
PAIR_STEPS=${PAIR_STEPS:-20}
SWEEP_STEPS=${SWEEP_STEPS:-400}
STEPS=${STEPS:-400}
BATCH=${BATCH:-128}
WARMUP=${WARMUP:-20}
EVAL_PROMPTS=${EVAL_PROMPTS:-200}
EVAL_SEEDS=${EVAL_SEEDS:-4}
VAL_DRAWS=${VAL_DRAWS:-4}
BETAS=${BETAS:-5000}
LRS=${LRS:-1e-5 3e-5}
KTO_BETAS=${KTO_BETAS:-2000}
TAUS=${TAUS:-0.1}
STYLE=${STYLE:-1}
# the style stage keeps the budget its results were made with (1000 pairs)
STYLE_BATCH=${STYLE_BATCH:-16}
STYLE_WARMUP=${STYLE_WARMUP:-50}
mkdir -p "$OUT/pairs" "$OUT/models" "$OUT/eval"
TIMES=$OUT/stage-times.tsv
FAILED=$OUT/failed.txt
rm -f "$FAILED"

stage() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# run NAME CMD...: time a finished step into $TIMES (wall seconds on $THREADS threads)
timed() {
    name=$1; shift
    t0=$(date +%s)
    "$@" || return # explicit: set -e does not act inside a `||` (spawn's)
    printf '%s\t%s\n' "$name" "$(( $(date +%s) - t0 ))" >> "$TIMES"
}

# spawn CMD...: CMD in the background, at most $JOBS at once; a failure is
# written to $FAILED and stops the script at the next join
spawn() {
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    { "$@" || echo "failed ($?): $*" >> "$FAILED"; } &
}
# join: wait for every spawned command; stop if one failed
join() {
    wait
    [ ! -s "$FAILED" ] || { cat "$FAILED" >&2; exit 1; }
}

# ---- 1 pairs ---------------------------------------------------------------
pairs_chunk() { # $1 = name, $2 = seed
    f="$OUT/pairs/$1.safetensors"
    [ -f "$f" ] && { stage "pairs $1: cached"; return 0; }
    stage "pairs $1 (seed $2, $CHUNK pairs)"
    timed "pairs-$1" "$DALIGN" --threads "$THREADS" pairs --weights "$WEIGHTS" --n "$CHUNK" --seed "$2" \
        --split train --steps "$PAIR_STEPS" -o "$f" -q > "$OUT/pairs/$1.txt"
}
i=1
TRAIN_PAIRS=""
while [ "$i" -le "$TRAIN_CHUNKS" ]; do
    pairs_chunk "train-$i" "$i"
    TRAIN_PAIRS="$TRAIN_PAIRS --pairs $OUT/pairs/train-$i.safetensors"
    i=$((i + 1))
done
pairs_chunk val 1000
VAL=$OUT/pairs/val.safetensors
[ "${UNTIL:-}" = pairs ] && exit 0

# ---- training (stages 2 and 3) --------------------------------------------
# train METHOD NAME STEPS ARGS...: OUT/models/NAME.* with its validation;
# skipped when NAME.val.json exists, resumed when its checkpoint does
train() {
    method=$1 name=$2 steps=$3; shift 3
    d=$OUT/models
    [ -f "$d/$name.val.json" ] && { stage "train $name: cached"; return 0; }
    resume=""
    [ -f "$d/$name.ckpt" ] && resume="--resume $d/$name.ckpt"
    stage "train $name ($method, $steps steps $*)"
    # shellcheck disable=SC2086
    timed "train-$name" "$DALIGN" --threads "$JT" train "$method" --weights "$WEIGHTS" --out "$d" \
        --name "$name" --force $TRAIN_PAIRS --val "$VAL" --val-draws "$VAL_DRAWS" --steps "$steps" \
        --batch "$BATCH" --warmup "$WARMUP" --seed 1 -q $resume "$@" > "$d/$name.txt"
}
# the sweep entry with the highest validation accuracy: prints its NAME
best_of() {
    best="" best_acc=-1
    for n in "$@"; do
        acc=$(sed -n 's/^  "acc": \(.*\),$/\1/p' "$OUT/models/$n.val.json")
        if awk -v a="$acc" -v b="$best_acc" 'BEGIN { exit !(a > b) }'; then best=$n best_acc=$acc; fi
    done
    echo "$best"
}
setting() { sed -n "s/^  \"$2\": \(.*\),\$/\1/p" "$OUT/models/$1.val.json"; }
# a JSON float, printed with 4 significant digits (0.529999971 -> 0.53)
g4() { awk -v x="$1" 'BEGIN { printf "%.4g", x }'; }

# ---- 2 sweep ---------------------------------------------------------------
names=""
for lr in $LRS; do
    for beta in $BETAS; do
        spawn train dpo "sweep-dpo-b$beta-lr$lr" "$SWEEP_STEPS" --beta "$beta" --lr "$lr" --min-lr "$lr"
        names="$names sweep-dpo-b$beta-lr$lr"
    done
done
join
# shellcheck disable=SC2086
best=$(best_of $names)
# the settings as the run names spell them (the JSON floats do not round-trip)
BETA=${best#sweep-dpo-b}
BETA=${BETA%-lr*}
LR=${best##*-lr}
stage "sweep: DPO's best is $best (beta $BETA, lr $LR)"
names=""
for beta in $KTO_BETAS; do
    spawn train kto "sweep-kto-b$beta" "$SWEEP_STEPS" --beta "$beta" --lr "$LR" --min-lr "$LR"
    names="$names sweep-kto-b$beta"
done
kto_names=$names
names=""
for tau in $TAUS; do
    spawn train rpo "sweep-rpo-t$tau" "$SWEEP_STEPS" --beta "$BETA" --tau "$tau" --lr "$LR" --min-lr "$LR"
    names="$names sweep-rpo-t$tau"
done
join
# shellcheck disable=SC2086
best=$(best_of $kto_names)
KTO_BETA=${best##*-b}
# shellcheck disable=SC2086
best=$(best_of $names)
TAU=${best##*-t}
printf 'beta\t%s\nlr\t%s\nkto_beta\t%s\ntau\t%s\n' "$BETA" "$LR" "$KTO_BETA" "$TAU" > "$OUT/chosen.tsv"
stage "chosen: beta $BETA, lr $LR, KTO beta $KTO_BETA, tau $TAU"
[ "${UNTIL:-}" = sweep ] && exit 0

# ---- 3 train ---------------------------------------------------------------
# final METHOD NAME SWEEP_RUN ARGS...: the chosen sweep run when it had the
# final budget (its files linked under NAME), else a new run of STEPS
final() {
    method=$1 name=$2 from=$3; shift 3
    d=$OUT/models
    if [ "$SWEEP_STEPS" = "$STEPS" ] && [ -f "$d/$from.val.json" ]; then
        for f in "$d/$from".*; do ln -f "$f" "$d/$name${f#"$d/$from"}"; done
        stage "train $name: the sweep's $from (same budget)"
        return 0
    fi
    spawn train "$method" "$name" "$STEPS" "$@"
}
final sft sft none --lr "$LR" --min-lr "$LR" --beta "$BETA"
final dpo dpo "sweep-dpo-b$BETA-lr$LR" --lr "$LR" --min-lr "$LR" --beta "$BETA"
final rpo rpo "sweep-rpo-t$TAU" --lr "$LR" --min-lr "$LR" --beta "$BETA" --tau "$TAU"
final kto kto "sweep-kto-b$KTO_BETA" --lr "$LR" --min-lr "$LR" --beta "$KTO_BETA"
# no join here unless shipping or stopping: the evaluations below start on
# the cores the last training runs leave free
if [ -n "${SHIP:-}" ] || [ "${UNTIL:-}" = train ]; then join; fi

# ---- ship (SHIP=METHOD: make unet-dpo) ------------------------------------
# weights/unet-METHOD.{safetensors,json} from this run's model, and their
# SHA256SUMS lines (replacing older ones of the same names)
if [ -n "${SHIP:-}" ]; then
    [ "${SMOKE:-0}" = 1 ] && { echo "SHIP with SMOKE=1: refusing to ship a toy model" >&2; exit 1; }
    for ext in safetensors json; do cp "$OUT/models/$SHIP.$ext" "$WEIGHTS/unet-$SHIP.$ext.tmp"; done
    for ext in safetensors json; do mv "$WEIGHTS/unet-$SHIP.$ext.tmp" "$WEIGHTS/unet-$SHIP.$ext"; done
    (cd "$WEIGHTS" && grep -v " unet-$SHIP\.\(safetensors\|json\)\$" SHA256SUMS > SHA256SUMS.tmp &&
        sha256sum "unet-$SHIP.safetensors" "unet-$SHIP.json" >> SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
    stage "shipped $WEIGHTS/unet-$SHIP.{safetensors,json}"
fi
[ "${UNTIL:-}" = train ] && exit 0

# ---- 4 eval ----------------------------------------------------------------
# eval NAME UNET SPLIT: OUT/eval/NAME-SPLIT/ (skipped when its metrics.json exists)
evaluate() {
    name=$1 unet=$2 split=$3 dir=$OUT/eval/$1-$3
    [ -f "$dir/metrics.json" ] && { stage "eval $name $split: cached"; return 0; }
    stage "eval $name on $split prompts"
    timed "eval-$name-$split" "$DALIGN" --threads "$JT" eval --weights "$WEIGHTS" --unet "$unet" \
        --prompts "$split" --n-prompts "$EVAL_PROMPTS" --seeds "$EVAL_SEEDS" -o "$dir" -q > "$dir.txt"
}
# after FILE CMD...: CMD once FILE exists (an evaluation waiting for its
# model's training, which another job of the pool runs); gives up when a
# job has failed
after() {
    f=$1; shift
    while [ ! -f "$f" ]; do
        [ ! -s "$FAILED" ] || return 1
        sleep 5
    done
    "$@"
}
# The control: DPO as chosen, on the same pairs each judged the other way.
# Any fine-tuning moves the images; only a method that learned the labels'
# direction should beat the base where its control does not.
spawn train dpo dpo-swapped "$STEPS" --lr "$LR" --min-lr "$LR" --beta "$BETA" --swap-labels
# the base first, SFT and the control last (with the sweep at the final
# budget, they are the runs still training)
for split in heldin heldout; do spawn evaluate base unet "$split"; done
for m in dpo rpo kto sft dpo-swapped; do
    for split in heldin heldout; do
        spawn after "$OUT/models/$m.val.json" evaluate "$m" "$OUT/models/$m.safetensors" "$split"
    done
done
join
[ "${UNTIL:-}" = eval ] && exit 0

# ---- 5 style (issue 10 item 6, Diffusion-RPO's own evaluation) -------------
if [ "$STYLE" = 1 ]; then
# Preferred: the prompt's own scene rendered in the outline style (VAE-encoded);
# dispreferred: a base sample. DPO and RPO at the chosen settings; the share of
# held-out images in the style (outline score >= 0.06) and their faithfulness
# against the base's.
S=$OUT/style
mkdir -p "$S/pairs" "$S/models" "$S/eval"
style_chunk() { # $1 = name, $2 = seed, $3 = pairs
    f="$S/pairs/$1.safetensors"
    [ -f "$f" ] && { stage "style pairs $1: cached"; return 0; }
    stage "style pairs $1 (seed $2, $3 pairs)"
    timed "style-pairs-$1" "$DALIGN" --threads "$THREADS" pairs --style outline --weights "$WEIGHTS" --n "$3" \
        --seed "$2" --split train --steps "$PAIR_STEPS" -o "$f" -q > "$S/pairs/$1.txt"
}
STYLE_PAIRS=""
i=1
while [ "$i" -le "$STYLE_CHUNKS" ]; do
    style_chunk "train-$i" "$((100 + i))" "$CHUNK"
    STYLE_PAIRS="$STYLE_PAIRS --pairs $S/pairs/train-$i.safetensors"
    i=$((i + 1))
done
style_chunk val 2000 "$((CHUNK / 2))"
style_train() { # $1 = method, $2 = name, ARGS...
    method=$1 name=$2; shift 2
    [ -f "$S/models/$name.val.json" ] && { stage "style train $name: cached"; return 0; }
    resume=""
    [ -f "$S/models/$name.ckpt" ] && resume="--resume $S/models/$name.ckpt"
    stage "style train $name"
    # shellcheck disable=SC2086
    timed "style-train-$name" "$DALIGN" --threads "$THREADS" train "$method" --weights "$WEIGHTS" \
        --out "$S/models" --name "$name" --force $STYLE_PAIRS --val "$S/pairs/val.safetensors" \
        --val-draws "$VAL_DRAWS" --steps "$STYLE_STEPS" --batch "$STYLE_BATCH" --warmup "$STYLE_WARMUP" --seed 2 -q \
        $resume "$@" > "$S/models/$name.txt"
}
style_train dpo dpo --lr "$LR" --min-lr "$LR" --beta "$BETA"
style_train rpo rpo --lr "$LR" --min-lr "$LR" --beta "$BETA" --tau "$TAU"
style_eval() { # $1 = name, $2 = unet
    dir=$S/eval/$1-heldout
    [ -f "$dir/metrics.json" ] && { stage "style eval $1: cached"; return 0; }
    stage "style eval $1 on heldout prompts"
    timed "style-eval-$1" "$DALIGN" --threads "$THREADS" eval --weights "$WEIGHTS" --unet "$2" \
        --prompts heldout --n-prompts "$EVAL_PROMPTS" --seeds "$EVAL_SEEDS" -o "$dir" -q > "$dir.txt"
}
style_eval base unet
style_eval dpo "$S/models/dpo.safetensors"
style_eval rpo "$S/models/rpo.safetensors"
fi
[ "${UNTIL:-}" = style ] && exit 0

# ---- 6 report --------------------------------------------------------------
# Win-rates against the base on the same prompt and seed (the judge: the
# rater's noiseless utility, and the learned pref model as a second opinion),
# the metric tables, the training curves, the grids; all into $DOC
# (docs/alignment-preference/ for the real run).
DOC=${DOC:-$OUT/report}
mkdir -p "$DOC"
R=$DOC/results.md
# ci FILE KEY: "mean [lo, hi]" of {"KEY": {"mean": m, "ci95": [lo, hi], ...}} in a winrate JSON
ci() {
    sed -n "s/.*\"$2\": *{\"mean\": *\([^,]*\), *\"ci95\": *\[\([^,]*\), *\([^]]*\)\].*/\1 \2 \3/p" "$1" |
        awk '{ printf "%.3f [%.3f, %.3f]", $1, $2, $3 }'
}
{
    echo "# Preference fine-tuning: results"
    echo
    echo "Generated by scripts/experiment-preference.sh on $(date -u +%Y-%m-%d) from $OUT;"
    echo "$(( TRAIN_CHUNKS * CHUNK )) training pairs, $CHUNK validation pairs, $STEPS steps of $BATCH pairs (warmup $WARMUP),"
    echo "evaluation on $EVAL_PROMPTS prompts x $EVAL_SEEDS seeds per split. Intervals: 95%, clustered by prompt."
    echo
    echo "## Win-rate against the base (same prompt and seed)"
    echo
    echo "| model | split | rater win-rate | rater utility diff | pref win-rate |"
    echo "|---|---|---|---|---|"
    for split in heldin heldout; do
        for m in sft dpo rpo kto dpo-swapped; do
            base=$OUT/eval/base-$split model=$OUT/eval/$m-$split
            "$DALIGN" winrate "$base" "$model" --json "$model.winrate.json" > "$model.winrate.txt"
            "$DALIGN" winrate "$base" "$model" --column pref --json "$model.winrate-pref.json" > /dev/null
            printf '| %s | %s | %s | %s | %s |\n' "$m" "$split" "$(ci "$model.winrate.json" win_rate)" \
                "$(ci "$model.winrate.json" diff)" "$(ci "$model.winrate-pref.json" win_rate)"
        done
    done
    for split in heldin heldout; do
        echo
        echo "## Metrics on $split prompts"
        echo
        "$DALIGN" table --labels base,sft,dpo,rpo,kto,dpo-swapped "$OUT/eval/base-$split" "$OUT/eval/sft-$split" \
            "$OUT/eval/dpo-$split" "$OUT/eval/rpo-$split" "$OUT/eval/kto-$split" "$OUT/eval/dpo-swapped-$split"
    done
    echo
    echo "## The sweep (validation pairs: implicit accuracy of the tuned UNet)"
    echo
    echo "| run | steps | beta | tau | lr | val acc | val margin |"
    echo "|---|---|---|---|---|---|---|"
    for f in "$OUT"/models/sweep-*.val.json "$OUT"/models/sft.val.json "$OUT"/models/dpo.val.json \
             "$OUT"/models/rpo.val.json "$OUT"/models/kto.val.json "$OUT"/models/dpo-swapped.val.json; do
        n=$(basename "$f" .val.json)
        # the sweep's lr is in its name; every final run used the chosen one
        case $n in *-lr*) lr=${n##*-lr} ;; *) lr=$LR ;; esac
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$(setting "$n" steps)" "$(setting "$n" beta)" \
            "$(g4 "$(setting "$n" tau)")" "$lr" "$(g4 "$(setting "$n" acc)")" "$(g4 "$(setting "$n" margin)")"
    done
    echo
    echo "(dpo-swapped: the control, trained on swapped labels and validated on the"
    echo "rater's own: below 0.5 when the labels' direction was learned.)"
    echo
    echo "Chosen: beta $BETA, lr $LR, KTO beta $KTO_BETA, tau $(g4 "$TAU")."
    echo
    if [ "$STYLE" = 1 ]; then
        echo "## Style alignment (outline style, held-out prompts)"
        echo
        "$DALIGN" table --keys style_share,rewards.outline,faithfulness,faithfulness.clauses.shape,faithfulness.clauses.relation,rater,diversity \
            --labels base,dpo-style,rpo-style "$S/eval/base-heldout" "$S/eval/dpo-heldout" "$S/eval/rpo-heldout"
        echo
    fi
    echo "## Training curves"
    echo
    echo "![loss, accuracy, margin](curves-loss.svg)"
    echo
    echo "![winner and loser gains over the reference](curves-gain.svg)"
    echo
    echo "## Grids (the same prompts and seeds; rows: prompts, columns: seeds)"
    echo
    echo "| base | SFT | DPO | RPO | KTO |"
    echo "|---|---|---|---|---|"
    for split in heldin heldout; do
        row="|"
        for m in base sft dpo rpo kto; do
            cp "$OUT/eval/$m-$split/grid.png" "$DOC/grid-$m-$split.png"
            row="$row ![$m $split](grid-$m-$split.png) |"
        done
        echo "$row"
    done
    echo
    echo "## Wall time per stage ($THREADS threads)"
    echo
    echo "| stage | seconds |"
    echo "|---|---|"
    sed 's/^\(.*\)\t\(.*\)$/| \1 | \2 |/' "$TIMES"
} > "$R.tmp"
mv "$R.tmp" "$R"
L=""
for m in sft dpo rpo kto; do L="$L $OUT/models/$m.metrics.jsonl"; done
# shellcheck disable=SC2086
"$DALIGN" plot --y loss,acc,margin --smooth 10 --labels sft,dpo,rpo,kto --title "preference fine-tuning" \
    -o "$DOC/curves-loss.svg" $L
# shellcheck disable=SC2086
"$DALIGN" plot --y gain_w,gain_l,grad_norm --smooth 10 --labels sft,dpo,rpo,kto \
    --title "gain over the reference: winners, losers" -o "$DOC/curves-gain.svg" $L
stage "done: results in $OUT, report in $R"
