#!/bin/sh
# The experiment suite of issue 13 (docs/experiments.md; the report is
# docs/experiments/results.md). `make experiments` runs it; SMOKE=1 runs every
# stage at toy size (about 1.5 minutes on 2 cores).
#
# Every step writes its result under $OUT (default out/experiments/suite) and
# is skipped when that result exists: a trained model has OUT/models/NAME.done,
# an evaluation OUT/eval/LABEL-SPLIT/DONE. A training run stopped half-way
# (Ctrl-C, kill: the trainers checkpoint on a signal, and every $CKPT_EVERY
# optimizer steps) continues from OUT/models/NAME.ckpt with --resume when the
# same command is run again. Changing a size does not invalidate a finished
# step: use a new OUT.
#
#   i     reward optimisation on `faithful` at equal reward queries
#         (rollouts): PromptLoop refiners in modes loop and once (from
#         weights/refiner-ref), DDPO, GRPO, RAFT (from weights/unet);
#         evaluated on held-in and held-out prompts
#   ii    transfer: the loop refiner applied unchanged to weights/unet-b
#   iii   composition: the loop refiner on weights/unet-dpo
#   iv    over-optimisation: PromptLoop, DDPO and GRPO on the gameable
#         rewards pref and jpeg-neg, in $SEGMENTS segments, the held-back
#         judges evaluated after each
#   pref  the preference claims (DPO vs SFT, RPO vs DPO): the results in
#         $PREF_OUT when finished, else scripts/experiment-preference.sh with
#         the suite's sizes into it
#   report tables (95% intervals), claims, figures, grids -> $DOC/results.md
#         (DOC=docs/experiments for the shipped report)
# UNTIL=i|ii|iii|iv|pref stops after that stage.
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-out/experiments/suite}
DALIGN=${DALIGN:-./dalign}
THREADS=${THREADS:-2}
WEIGHTS=${WEIGHTS:-weights}
if [ "${SMOKE:-0}" = 1 ]; then
    OUT=${OUT}-smoke
    RL_ITERS=2 PL_Q=2 PL_G=2 DD_Q=2 DD_G=2 RL_STEPS=4 EVAL_PROMPTS=2 EVAL_SEEDS=2
    SEGMENTS=2 SEG_ITERS=1 OO_PL_Q=2 OO_PL_G=2 OO_DD_Q=2 OO_DD_G=2 CKPT_EVERY=1
    PREF_CHUNKS=1 PREF_CHUNK=8 PREF_PAIR_STEPS=4 PREF_SWEEP_STEPS=2 PREF_STEPS=4 PREF_BATCH=4
    PREF_VAL_DRAWS=1 PREF_BETA=500 PREF_LR=1e-5 PREF_TAU=0.5
fi
# ---- sizes -----------------------------------------------------------------
# Stage i compares methods at the same number of reward queries: every
# rollout (one image) is scored once, so a run of N iterations spends
# N x prompts x group rollouts. PromptLoop and GRPO compare within a group of
# G rollouts of one prompt (PL_Q x PL_G); DDPO and RAFT (best of K) take
# DD_Q prompts x DD_G images. The defaults are each trainer's own:
#   PromptLoop, GRPO: 4 queries x 8 rollouts = 32 per iteration
#   DDPO, RAFT:       8 prompts x 4 images   = 32 per iteration
#   15 iterations -> 15 x 32 = 480 rollouts (reward queries) per method
# (SMOKE: 2 x 2 = 4 per iteration, 2 iterations, 8 rollouts.) The script
# refuses sizes where PL_Q x PL_G differs from DD_Q x DD_G.
RL_ITERS=${RL_ITERS:-15}
PL_Q=${PL_Q:-4}
PL_G=${PL_G:-8}
DD_Q=${DD_Q:-8}
DD_G=${DD_G:-4}
RL_STEPS=${RL_STEPS:-20}
# learning rates: the refiner's is the PromptLoop experiment's (1e-4, chosen
# there on training metrics only); the UNet trainers keep their default (1e-5,
# full-weight fine-tuning, docs/rl-weights.md)
PL_LR=${PL_LR:-1e-4}
UNET_LR=${UNET_LR:-1e-5}
# stage iv: SEGMENTS runs of SEG_ITERS iterations each, the next run starting
# from the previous one's output (--init; a new seed per segment, so the
# segments draw new prompts); rollouts per iteration as in stage i's rule:
#   PromptLoop, GRPO: 2 x 8 = 16;  DDPO: 4 x 4 = 16
#   3 segments x 10 iterations x 16 = 480 rollouts per method and reward
SEGMENTS=${SEGMENTS:-3}
SEG_ITERS=${SEG_ITERS:-10}
# Stage iv must optimise the gameable reward hard enough to see what that
# does to the judges. The first full run (4 iterations a segment at stage i's
# learning rates) left every method's TRAINING reward flat (their JSONL; no
# evaluation was read for this choice), so stage iv trains 2.5x longer at 10x
# the UNet trainers' lr and 3x the refiner's.
OO_UNET_LR=${OO_UNET_LR:-1e-4}
OO_PL_LR=${OO_PL_LR:-3e-4}
OO_PL_Q=${OO_PL_Q:-2}
OO_PL_G=${OO_PL_G:-8}
OO_DD_Q=${OO_DD_Q:-4}
OO_DD_G=${OO_DD_G:-4}
OO_REWARDS=${OO_REWARDS:-pref jpeg-neg}
# every evaluation: the same prompts and seeds, so any two are paired
EVAL_PROMPTS=${EVAL_PROMPTS:-50}
EVAL_SEEDS=${EVAL_SEEDS:-2}
EVAL_STEPS=${EVAL_STEPS:-$RL_STEPS}
CKPT_EVERY=${CKPT_EVERY:-10}
# the preference stage (scripts/experiment-preference.sh's variables, at the
# suite's size: one setting per sweep, so the sweep is three short runs)
PREF_OUT=${PREF_OUT:-$OUT/preference}
PREF_CHUNKS=${PREF_CHUNKS:-2}
PREF_CHUNK=${PREF_CHUNK:-150}
PREF_PAIR_STEPS=${PREF_PAIR_STEPS:-10}
PREF_SWEEP_STEPS=${PREF_SWEEP_STEPS:-50}
PREF_STEPS=${PREF_STEPS:-150}
PREF_BATCH=${PREF_BATCH:-16}
PREF_WARMUP=${PREF_WARMUP:-50}
PREF_VAL_DRAWS=${PREF_VAL_DRAWS:-2}
PREF_BETA=${PREF_BETA:-2000}
PREF_LR=${PREF_LR:-1e-5}
PREF_TAU=${PREF_TAU:-0.5}

[ $((PL_Q * PL_G)) -eq $((DD_Q * DD_G)) ] || {
    echo "experiments.sh: PL_Q x PL_G ($PL_Q x $PL_G) must equal DD_Q x DD_G ($DD_Q x $DD_G): equal rollouts" >&2
    exit 2
}
[ $((OO_PL_Q * OO_PL_G)) -eq $((OO_DD_Q * OO_DD_G)) ] || {
    echo "experiments.sh: OO_PL_Q x OO_PL_G must equal OO_DD_Q x OO_DD_G: equal rollouts" >&2
    exit 2
}
for f in unet unet-b unet-dpo refiner-ref reward_net; do
    [ -f "$WEIGHTS/$f.safetensors" ] || {
        echo "experiments.sh: $WEIGHTS/$f.safetensors is missing (the suite starts from the shipped weights)" >&2
        exit 1
    }
done
BATCH_ROLLOUTS=$((PL_Q * PL_G))
OO_ROLLOUTS=$((OO_PL_Q * OO_PL_G))
M=$OUT/models
E=$OUT/eval
mkdir -p "$M" "$E" "$OUT/cmp"
TIMES=$OUT/stage-times.tsv
touch "$TIMES"
REF=$WEIGHTS/refiner-ref.safetensors

stage() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# timed STAGE NAME CMD...: run, then record STAGE<TAB>NAME<TAB>wall seconds
# (on $THREADS threads) in $TIMES; a step that was cached records nothing
# (sh has no local variables: every function's names are its own)
timed() {
    tm_stage=$1 tm_name=$2; shift 2
    tm_t0=$(date +%s)
    "$@"
    printf '%s\t%s\t%s\n' "$tm_stage" "$tm_name" "$(( $(date +%s) - tm_t0 ))" >> "$TIMES"
}
# stage_begin / stage_end NAME: print the stage's wall time in this invocation
# and its total over every invocation (resumed runs add up)
stage_begin() { stage_t0=$(date +%s); stage "== stage $1"; }
stage_end() {
    total=$(stage_seconds "$1")
    stage "== stage $1: $(( $(date +%s) - stage_t0 )) s now, $total s recorded in all"
}

# stage_seconds STAGE: its recorded wall time; pref: the preference script's
# own step times up to its evaluation (its style stage is not run here)
stage_seconds() {
    if [ "$1" = pref ]; then
        [ -f "$PREF_OUT/stage-times.tsv" ] || { echo 0; return 0; }
        awk -F '\t' '$1 !~ /^style-/ { t += $2 } END { print t + 0 }' "$PREF_OUT/stage-times.tsv"
    else
        awk -F '\t' -v s="$1" '$1 == s { t += $3 } END { print t + 0 }' "$TIMES"
    fi
}
# train STAGE KIND NAME ARGS...: dalign train KIND into $M/NAME.*; skipped
# when $M/NAME.done exists, resumed when its checkpoint does
train() {
    tr_stage=$1 tr_kind=$2 tr_name=$3; shift 3
    [ -f "$M/$tr_name.done" ] && { stage "train $tr_name: cached"; return 0; }
    tr_resume=""
    [ -f "$M/$tr_name.ckpt" ] && tr_resume="--resume $M/$tr_name.ckpt"
    stage "train $tr_name ($tr_kind $*)${tr_resume:+ (resuming)}"
    # shellcheck disable=SC2086
    timed "$tr_stage" "train-$tr_name" "$DALIGN" --threads "$THREADS" train "$tr_kind" --weights "$WEIGHTS" \
        --out "$M" --name "$tr_name" --force -q --ckpt-every "$CKPT_EVERY" $tr_resume "$@" > "$M/$tr_name.txt"
    touch "$M/$tr_name.done"
}
# evaluate STAGE LABEL SPLIT ARGS...: dalign eval into $E/LABEL-SPLIT
# (skipped when its DONE marker exists)
evaluate() {
    ev_stage=$1 ev_label=$2 ev_split=$3; shift 3
    ev_dir=$E/$ev_label-$ev_split
    [ -f "$ev_dir/DONE" ] && { stage "eval $ev_label $ev_split: cached"; return 0; }
    stage "eval $ev_label on $ev_split prompts"
    timed "$ev_stage" "eval-$ev_label-$ev_split" "$DALIGN" --threads "$THREADS" eval --weights "$WEIGHTS" \
        --prompts "$ev_split" --n-prompts "$EVAL_PROMPTS" --seeds "$EVAL_SEEDS" --steps "$EVAL_STEPS" \
        -o "$ev_dir" -q "$@" > "$ev_dir.txt"
}

# ---- i: reward optimisation on faithful ------------------------------------
stage_begin i
pl_rl() { # NAME MODE: GRPO on the refiner, from the reference refiner (calls train: no names of its own)
    train i promptloop "$1" --init "$REF" --reward faithful --refine-mode "$2" --iterations "$RL_ITERS" \
        --queries "$PL_Q" --group "$PL_G" --steps "$RL_STEPS" --lr "$PL_LR" --seed 1
}
pl_rl loop loop
pl_rl once once
train i ddpo ddpo --reward faithful --iterations "$RL_ITERS" --prompts "$DD_Q" --group "$DD_G" \
    --steps "$RL_STEPS" --lr "$UNET_LR" --seed 1
train i grpo grpo --reward faithful --iterations "$RL_ITERS" --prompts "$PL_Q" --group "$PL_G" \
    --steps "$RL_STEPS" --lr "$UNET_LR" --seed 1
train i raft raft --reward faithful --iterations "$RL_ITERS" --prompts "$DD_Q" --group "$DD_G" \
    --steps "$RL_STEPS" --lr "$UNET_LR" --seed 1
for split in heldin heldout; do
    evaluate i base "$split"
    evaluate i ref-loop "$split" --refiner "$REF" --refine-mode loop
    evaluate i loop "$split" --refiner "$M/loop.safetensors" --refine-mode loop
    evaluate i once "$split" --refiner "$M/once.safetensors" --refine-mode once
    for m in ddpo grpo raft; do evaluate i "$m" "$split" --unet "$M/$m.safetensors"; done
done
stage_end i
[ "${UNTIL:-}" = i ] && exit 0

# ---- ii: transfer to unet-b ------------------------------------------------
# The loop refiner, trained with unet's samples, reads unet-b's predicted
# latents unchanged. DDPO/GRPO have nothing to transfer: their gain is in
# unet's weights, and unet-b has another width.
stage_begin ii
for split in heldin heldout; do
    evaluate ii unet-b "$split" --unet unet-b
    evaluate ii unet-b-loop "$split" --unet unet-b --refiner "$M/loop.safetensors" --refine-mode loop
done
stage_end ii
[ "${UNTIL:-}" = ii ] && exit 0

# ---- iii: composition with unet-dpo ----------------------------------------
stage_begin iii
for split in heldin heldout; do
    evaluate iii unet-dpo "$split" --unet unet-dpo
    evaluate iii unet-dpo-loop "$split" --unet unet-dpo --refiner "$M/loop.safetensors" --refine-mode loop
done
stage_end iii
[ "${UNTIL:-}" = iii ] && exit 0

# ---- iv: over-optimisation on gameable rewards ------------------------------
# Segment k (1..SEGMENTS) is a new run from segment k-1's output (segment 0:
# the shipped start), so a judge can be evaluated at each point. The
# optimizer state (AdamW moments) and, for PromptLoop and GRPO, the KL anchor
# (the --init model) restart at each segment; the seed is k, so the segments
# draw different prompts and noises. Held-out prompts only; point 0 is
# stage i's base (DDPO, GRPO) and ref-loop (PromptLoop) evaluation.
stage_begin iv
for rw in $OO_REWARDS; do
    k=1
    while [ "$k" -le "$SEGMENTS" ]; do
        prev=$((k - 1))
        if [ "$prev" = 0 ]; then
            pl_init=$REF unet_init=unet
        else
            pl_init=$M/oo-pl-$rw-$prev.safetensors unet_init=$M/oo-ddpo-$rw-$prev.safetensors
        fi
        train iv promptloop "oo-pl-$rw-$k" --init "$pl_init" --reward "$rw" --refine-mode loop \
            --iterations "$SEG_ITERS" --queries "$OO_PL_Q" --group "$OO_PL_G" --steps "$RL_STEPS" --lr "$OO_PL_LR" --seed "$k"
        train iv ddpo "oo-ddpo-$rw-$k" --init "$unet_init" --reward "$rw" --iterations "$SEG_ITERS" \
            --prompts "$OO_DD_Q" --group "$OO_DD_G" --steps "$RL_STEPS" --lr "$OO_UNET_LR" --seed "$k"
        [ "$prev" = 0 ] || unet_init=$M/oo-grpo-$rw-$prev.safetensors
        train iv grpo "oo-grpo-$rw-$k" --init "$unet_init" --reward "$rw" --iterations "$SEG_ITERS" \
            --prompts "$OO_PL_Q" --group "$OO_PL_G" --steps "$RL_STEPS" --lr "$OO_UNET_LR" --seed "$k"
        evaluate iv "oo-pl-$rw-$k" heldout --refiner "$M/oo-pl-$rw-$k.safetensors" --refine-mode loop
        evaluate iv "oo-ddpo-$rw-$k" heldout --unet "$M/oo-ddpo-$rw-$k.safetensors"
        evaluate iv "oo-grpo-$rw-$k" heldout --unet "$M/oo-grpo-$rw-$k.safetensors"
        k=$((k + 1))
    done
done
stage_end iv
[ "${UNTIL:-}" = iv ] && exit 0

# ---- pref: DPO vs SFT, RPO vs DPO -------------------------------------------
stage_begin pref
pref_done=1
for m in base sft dpo rpo; do
    for split in heldin heldout; do
        [ -f "$PREF_OUT/eval/$m-$split/metrics.json" ] || pref_done=0
    done
done
if [ "$pref_done" = 1 ]; then
    stage "pref: the finished results in $PREF_OUT"
else
    stage "pref: scripts/experiment-preference.sh into $PREF_OUT"
    # its own stages are cached and resumable and time themselves into
    # $PREF_OUT/stage-times.tsv; SMOKE=0 keeps it from renaming its OUT
    SMOKE=0 SHIP='' UNTIL=eval OUT=$PREF_OUT DALIGN=$DALIGN THREADS=$THREADS WEIGHTS=$WEIGHTS \
        TRAIN_CHUNKS=$PREF_CHUNKS CHUNK=$PREF_CHUNK PAIR_STEPS=$PREF_PAIR_STEPS SWEEP_STEPS=$PREF_SWEEP_STEPS \
        STEPS=$PREF_STEPS BATCH=$PREF_BATCH WARMUP=$PREF_WARMUP EVAL_PROMPTS=$EVAL_PROMPTS EVAL_SEEDS=$EVAL_SEEDS \
        VAL_DRAWS=$PREF_VAL_DRAWS BETAS=$PREF_BETA LRS=$PREF_LR KTO_BETAS=$PREF_BETA TAUS=$PREF_TAU \
        bash scripts/experiment-preference.sh
fi
stage_end pref
[ "${UNTIL:-}" = pref ] && exit 0

# ---- report ------------------------------------------------------------------
DOC=${DOC:-$OUT/report}
mkdir -p "$DOC"
R=$DOC/results.md
C=$OUT/cmp
CLAIMS=$OUT/claims.tsv.tmp
: > "$CLAIMS"
# diff3 A B COL: "mean lo hi" of B - A on column COL of images.tsv (paired by
# prompt and seed, 95% interval clustered by prompt; dalign winrate, whose
# JSON stays in $C for the win-rate); A and B: evaluation directories
diff3() {
    j=$C/$(echo "$1--$2" | tr '/' '_')-$3.json
    "$DALIGN" winrate "$1" "$2" --column "$3" --json "$j" > /dev/null
    sed -n 's/.*"diff": *{"mean": *\([^,]*\), *"ci95": *\[\([^,]*\), *\([^]]*\)\].*/\1 \2 \3/p' "$j"
}
fmt3() { echo "$1" | awk '{ printf "%+.3f [%+.3f, %+.3f]", $1, $2, $3 }'; }
# verdict "mean lo hi": the claim says the difference is positive
verdict() {
    echo "$1" | awk '{ if ($2 > 0) print "reproduced"; else if ($3 < 0) print "not reproduced"; else print "inconclusive" }'
}
# combine "V;V;...": one verdict of several comparisons: all the same -> that
# one, else mixed
combine() {
    printf '%s' "$1" | tr ';' '\n' | sort -u | awk '{ n++; v = $0 } END { print (n == 1) ? v : "mixed" }'
}
# mean DIR KEY: the mean of a metrics.json entry (KEY: faithfulness, rater,
# diversity, or a reward name such as pref, jpeg-neg)
mean() {
    sed -n "s/^ *\"$2\": {.*\"mean\": *\([^,]*\),.*/\1/p" "$1/metrics.json" | head -n 1
}
# claim TEXT COMPARISON...: each comparison is "A B COL LABEL..." (A, B: a
# label of $E or a directory path); the claim says B > A on COL. Appends the
# claim's row (text, evidence, verdict) to $CLAIMS.
claim() {
    cl_text=$1; shift
    cl_evidence="" cl_verdicts=""
    for cl_c in "$@"; do
        # shellcheck disable=SC2086
        set -- $cl_c
        cl_a=$1 cl_b=$2 cl_col=$3; shift 3
        case $cl_a in */*) ;; *) cl_a=$E/$cl_a ;; esac
        case $cl_b in */*) ;; *) cl_b=$E/$cl_b ;; esac
        cl_d=$(diff3 "$cl_a" "$cl_b" "$cl_col")
        cl_evidence="$cl_evidence${cl_evidence:+; }$*: $(fmt3 "$cl_d")"
        cl_verdicts="$cl_verdicts$(verdict "$cl_d");"
    done
    printf '%s\t%s\t%s\n' "$cl_text" "$cl_evidence" "$(combine "$cl_verdicts")" >> "$CLAIMS"
}

# the claims (every comparison: B - A on the same images)
LAST=$SEGMENTS
claim "(i) PromptLoop (loop) raises faithfulness over the base" \
    "base-heldin loop-heldin faithful faithfulness, loop - base, held-in" \
    "base-heldout loop-heldout faithful held-out"
for m in ddpo grpo raft once; do
    claim "(i) PromptLoop (loop) reaches a higher faithfulness than $m at equal rollouts" \
        "$m-heldin loop-heldin faithful faithfulness, loop - $m, held-in" \
        "$m-heldout loop-heldout faithful held-out"
done
claim "(ii) the loop refiner transfers unchanged to unet-b (faithfulness gain)" \
    "unet-b-heldin unet-b-loop-heldin faithful faithfulness, unet-b+loop - unet-b, held-in" \
    "unet-b-heldout unet-b-loop-heldout faithful held-out"
claim "(iii) refiner + unet-dpo composes: the refiner's faithfulness gain on unet-dpo, and unet-dpo's rater gain under the refiner" \
    "unet-dpo-heldout unet-dpo-loop-heldout faithful faithfulness, unet-dpo+loop - unet-dpo (held-out)" \
    "loop-heldout unet-dpo-loop-heldout rater rater, unet-dpo+loop - unet+loop (held-out)"
for base in ddpo grpo; do
    cmps=""
    for rw in $OO_REWARDS; do
        for col in rater faithful; do
            cmps="$cmps|oo-$base-$rw-$LAST-heldout oo-pl-$rw-$LAST-heldout $col $col, trained on $rw, promptloop - $base"
        done
    done
    old_ifs=$IFS IFS='|'
    # shellcheck disable=SC2086
    set -- ${cmps#|}
    IFS=$old_ifs
    claim "(iv) PromptLoop over-optimises less than $base: higher held-back judges after equal rollouts on a gameable reward (held-out)" "$@"
done
P=$PREF_OUT/eval
claim "(pref) DPO beats SFT (rater utility)" \
    "$P/sft-heldin $P/dpo-heldin rater rater, dpo - sft, held-in" "$P/sft-heldout $P/dpo-heldout rater held-out"
claim "(pref) RPO beats DPO (rater utility)" \
    "$P/dpo-heldin $P/rpo-heldin rater rater, rpo - dpo, held-in" "$P/dpo-heldout $P/rpo-heldout rater held-out"

# training reward against rollouts spent: the iteration lines of a trainer's
# JSONL (those with "reward") as {"rollouts": k x B, "reward": r}
rollout_curve() { # JSONL B OUT
    awk -v b="$2" 'match($0, /"reward":[^,}]*/) {
        k++; printf "{\"rollouts\":%d,\"reward\":%s}\n", k * b, substr($0, RSTART + 9, RLENGTH - 9) }' "$1" > "$3"
}
mkdir -p "$OUT/curves"
for m in loop once ddpo grpo raft; do rollout_curve "$M/$m.metrics.jsonl" "$BATCH_ROLLOUTS" "$OUT/curves/$m.jsonl"; done
"$DALIGN" plot --x rollouts --y reward --smooth 3 --labels "loop,once,ddpo,grpo,raft" \
    --title "faithful reward during training ($BATCH_ROLLOUTS rollouts per iteration)" -o "$DOC/curves-faithful.svg" \
    "$OUT/curves/loop.jsonl" "$OUT/curves/once.jsonl" "$OUT/curves/ddpo.jsonl" "$OUT/curves/grpo.jsonl" \
    "$OUT/curves/raft.jsonl" > /dev/null
# stage iv: per method and reward, the evaluated reward and judges at each
# point, {"rollouts", "reward", "rater", "faithfulness", "diversity"}
for rw in $OO_REWARDS; do
    for m in pl ddpo grpo; do
        f=$OUT/curves/oo-$m-$rw.jsonl
        : > "$f"
        k=0
        while [ "$k" -le "$SEGMENTS" ]; do
            if [ "$k" = 0 ]; then
                dir=$E/base-heldout
                [ "$m" = pl ] && dir=$E/ref-loop-heldout
            else
                dir=$E/oo-$m-$rw-$k-heldout
            fi
            printf '{"rollouts":%d,"reward":%s,"rater":%s,"faithfulness":%s,"diversity":%s}\n' \
                $((k * SEG_ITERS * OO_ROLLOUTS)) "$(mean "$dir" "$rw")" "$(mean "$dir" rater)" \
                "$(mean "$dir" faithfulness)" "$(mean "$dir" diversity)" >> "$f"
            k=$((k + 1))
        done
    done
    "$DALIGN" plot --x rollouts --y reward,rater,faithfulness,diversity --labels promptloop,ddpo,grpo \
        --title "trained on $rw: the reward and the held-back judges (held-out prompts)" \
        -o "$DOC/overopt-$rw.svg" "$OUT/curves/oo-pl-$rw.jsonl" "$OUT/curves/oo-ddpo-$rw.jsonl" \
        "$OUT/curves/oo-grpo-$rw.jsonl" > /dev/null
    "$DALIGN" plot --x reward --y rater,faithfulness,diversity --labels promptloop,ddpo,grpo \
        --title "reward-vs-judge frontier, $rw (x: the $rw reward)" -o "$DOC/frontier-$rw.svg" \
        "$OUT/curves/oo-pl-$rw.jsonl" "$OUT/curves/oo-ddpo-$rw.jsonl" "$OUT/curves/oo-grpo-$rw.jsonl" > /dev/null
done

# grids: the same prompts and seeds in every evaluation (rows: prompts)
grid() { cp "$E/$1/grid.png" "$DOC/grid-$1.png"; printf '![%s](grid-%s.png)' "$1" "$1"; }
edirs() { for l in "$@"; do printf '%s ' "$E/$l"; done; }
{
    echo "# Experiment suite: results"
    echo
    echo "Generated by scripts/experiments.sh on $(date -u +%Y-%m-%d) from $OUT (docs/experiments.md says what each"
    echo "stage tests). Every evaluation: $EVAL_PROMPTS prompts x $EVAL_SEEDS seeds per split, $EVAL_STEPS DDIM steps,"
    echo "the same prompts and seeds everywhere, greedy refiners. Intervals: 95%, clustered by prompt; a"
    echo "difference is paired (the same prompt and seed), from \`dalign winrate\`."
    if [ "${SMOKE:-0}" = 1 ]; then
        echo
        echo "**SMOKE=1: toy sizes. This run checks that every stage works; its numbers mean nothing.**"
    fi
    echo
    echo "## Claims"
    echo
    echo "A claim is **reproduced** when the 95% interval of every difference it names excludes 0 in the claimed"
    echo "direction, **not reproduced** when every one excludes 0 the other way, **inconclusive** when every"
    echo "interval holds 0, and **mixed** otherwise (the comparisons disagree). Evidence: B - A, mean [95% interval]."
    echo
    echo "| claim | evidence | verdict |"
    echo "|---|---|---|"
    awk -F '\t' '{ printf "| %s | %s | **%s** |\n", $1, $2, $3 }' "$CLAIMS"
    echo
    echo "Not decided mechanically: (ii)'s other half, that DDPO and GRPO cannot transfer, holds by construction"
    echo "(their gain is in unet's weights; unet-b has another width); (iv) compares the judges after the same"
    echo "rollouts, not at the same optimised reward: read it with the frontier figures."
    echo
    echo "## (i) Reward optimisation on faithful, at $((RL_ITERS * BATCH_ROLLOUTS)) rollouts each"
    echo
    echo "$RL_ITERS iterations of $BATCH_ROLLOUTS rollouts: PromptLoop and GRPO $PL_Q queries x $PL_G, DDPO and"
    echo "RAFT $DD_Q prompts x $DD_G; refiners from refiner-ref (lr $PL_LR), UNets from unet (lr $UNET_LR)."
    echo "ref-loop: the reference refiner before RL."
    echo
    echo "| method | split | faithfulness - base | rater utility - base |"
    echo "|---|---|---|---|"
    for split in heldin heldout; do
        for m in ref-loop loop once ddpo grpo raft; do
            printf '| %s | %s | %s | %s |\n' "$m" "$split" "$(fmt3 "$(diff3 "$E/base-$split" "$E/$m-$split" faithful)")" \
                "$(fmt3 "$(diff3 "$E/base-$split" "$E/$m-$split" rater)")"
        done
    done
    for split in heldin heldout; do
        echo
        echo "### Metrics on $split prompts"
        echo
        # shellcheck disable=SC2046
        "$DALIGN" table --keys faithfulness,faithfulness.exact,faithfulness.clauses.relation,rater,rewards.pref,diversity \
            --labels base,ref-loop,loop,once,ddpo,grpo,raft $(edirs base-$split ref-loop-$split loop-$split \
            once-$split ddpo-$split grpo-$split raft-$split)
    done
    echo
    echo "![training reward against rollouts](curves-faithful.svg)"
    echo
    echo "## (ii) Transfer to unet-b"
    echo
    echo "The loop refiner, trained on unet's samples only, applied unchanged to unet-b. DDPO and GRPO have no"
    echo "counterpart: their gain is in unet's weights, which unet-b (another width) cannot load."
    echo
    echo "| split | unet-b + refiner - unet-b: faithfulness | rater utility |"
    echo "|---|---|---|"
    for split in heldin heldout; do
        printf '| %s | %s | %s |\n' "$split" "$(fmt3 "$(diff3 "$E/unet-b-$split" "$E/unet-b-loop-$split" faithful)")" \
            "$(fmt3 "$(diff3 "$E/unet-b-$split" "$E/unet-b-loop-$split" rater)")"
    done
    echo
    # shellcheck disable=SC2046
    "$DALIGN" table --keys faithfulness,faithfulness.clauses.relation,rater,diversity \
        --labels unet-b,unet-b+loop,unet,unet+loop $(edirs unet-b-heldout unet-b-loop-heldout base-heldout loop-heldout)
    echo
    echo "## (iii) Composition with unet-dpo (held-out prompts)"
    echo
    echo "| comparison | faithfulness | rater utility |"
    echo "|---|---|---|"
    for p in "base-heldout unet-dpo-loop-heldout" "loop-heldout unet-dpo-loop-heldout" \
             "unet-dpo-heldout unet-dpo-loop-heldout" "base-heldout unet-dpo-heldout"; do
        # shellcheck disable=SC2086
        set -- $p
        printf '| %s - %s | %s | %s |\n' "$2" "$1" "$(fmt3 "$(diff3 "$E/$1" "$E/$2" faithful)")" \
            "$(fmt3 "$(diff3 "$E/$1" "$E/$2" rater)")"
    done
    echo
    # shellcheck disable=SC2046
    "$DALIGN" table --keys faithfulness,rater,rewards.pref,diversity --labels base,unet+loop,unet-dpo,unet-dpo+loop \
        $(edirs base-heldout loop-heldout unet-dpo-heldout unet-dpo-loop-heldout)
    echo
    echo "## (iv) Over-optimisation"
    echo
    echo "Trained on a gameable reward in $SEGMENTS segments of $SEG_ITERS iterations x $OO_ROLLOUTS rollouts"
    echo "(PromptLoop, GRPO: $OO_PL_Q x $OO_PL_G; DDPO: $OO_DD_Q x $OO_DD_G; lr: refiner $OO_PL_LR, UNets $OO_UNET_LR),"
    echo "each segment a new run from the previous"
    echo "one's output: the optimizer state, and for PromptLoop and GRPO the KL anchor, restart at each segment."
    echo "Point 0 is the start (refiner-ref in loop mode for PromptLoop, unet for DDPO and GRPO). Held-out prompts;"
    echo "the judges (rater utility, faithfulness to the query, diversity) are never optimised."
    for rw in $OO_REWARDS; do
        echo
        echo "### Trained on $rw"
        for m in pl ddpo grpo; do
            echo
            echo "$m (columns: points along training, rollouts spent):"
            echo
            labels="0" ds=$E/base-heldout
            [ "$m" = pl ] && ds=$E/ref-loop-heldout
            k=1
            while [ "$k" -le "$SEGMENTS" ]; do
                labels="$labels,$((k * SEG_ITERS * OO_ROLLOUTS))"
                ds="$ds $E/oo-$m-$rw-$k-heldout"
                k=$((k + 1))
            done
            # shellcheck disable=SC2086
            "$DALIGN" table --keys "rewards.$rw,rater,faithfulness,diversity" --labels "$labels" $ds
        done
        echo
        echo "![$rw: reward and judges along training](overopt-$rw.svg)"
        echo
        echo "![$rw: reward-vs-judge frontier](frontier-$rw.svg)"
        echo
        echo "The last point's images (rows: prompts, columns: seeds; the start: base and ref-loop in the grids below):"
        echo
        echo "| PromptLoop | DDPO | GRPO |"
        echo "|---|---|---|"
        echo "| $(grid "oo-pl-$rw-$LAST-heldout") | $(grid "oo-ddpo-$rw-$LAST-heldout") | $(grid "oo-grpo-$rw-$LAST-heldout") |"
    done
    echo
    echo "## Preference claims"
    echo
    echo "From $PREF_OUT (scripts/experiment-preference.sh; the chosen setting: beta"
    echo "$(sed -n 's/^beta\t//p' "$PREF_OUT/chosen.tsv"), tau $(awk -F '\t' '$1 == "tau" { printf "%.4g", $2 }' "$PREF_OUT/chosen.tsv");" \
        "evaluation: $(sed -n 's/^  "n_prompts": \(.*\),$/\1/p' "$PREF_OUT/eval/dpo-heldout/metrics.json") prompts x" \
        "$(sed -n 's/^  "seeds": \(.*\),$/\1/p' "$PREF_OUT/eval/dpo-heldout/metrics.json") seeds per split)."
    echo
    echo "| comparison | split | rater utility | rater win-rate |"
    echo "|---|---|---|---|"
    for p in "sft dpo" "dpo rpo" "base dpo" "base sft" "base rpo"; do
        # shellcheck disable=SC2086
        set -- $p
        for split in heldin heldout; do
            d=$(diff3 "$P/$1-$split" "$P/$2-$split" rater)
            j=$C/$(echo "$P/$1-$split--$P/$2-$split" | tr '/' '_')-rater.json
            wr=$(sed -n 's/.*"win_rate": *{"mean": *\([^,]*\), *"ci95": *\[\([^,]*\), *\([^]]*\)\].*/\1 \2 \3/p' "$j" |
                awk '{ printf "%.3f [%.3f, %.3f]", $1, $2, $3 }')
            printf '| %s - %s | %s | %s | %s |\n' "$2" "$1" "$split" \
                "$(fmt3 "$d")" "$wr"
        done
    done
    echo
    echo "## Grids (held-out prompts; rows: prompts, columns: seeds)"
    echo
    echo "| base | ref-loop | loop | once | DDPO | GRPO | RAFT |"
    echo "|---|---|---|---|---|---|---|"
    echo "| $(grid base-heldout) | $(grid ref-loop-heldout) | $(grid loop-heldout) | $(grid once-heldout) |" \
        "$(grid ddpo-heldout) | $(grid grpo-heldout) | $(grid raft-heldout) |"
    echo
    echo "| unet-b | unet-b + loop | unet-dpo | unet-dpo + loop |"
    echo "|---|---|---|---|"
    echo "| $(grid unet-b-heldout) | $(grid unet-b-loop-heldout) | $(grid unet-dpo-heldout) | $(grid unet-dpo-loop-heldout) |"
    echo
    echo "The same grids on one page: [grids.html](grids.html)."
    echo
    echo "## Wall time per stage ($THREADS threads)"
    echo
    echo "Summed over every invocation that did work (a resumed step counts its part; cached steps add nothing);"
    echo "pref: the preference script's own stage times, up to its evaluation."
    echo
    echo "| stage | seconds |"
    echo "|---|---|"
    for s in i ii iii iv pref; do printf '| %s | %s |\n' "$s" "$(stage_seconds "$s")"; done
    echo
    echo "<details><summary>every step</summary>"
    echo
    echo "| stage | step | seconds |"
    echo "|---|---|---|"
    awk -F '\t' '{ printf "| %s | %s | %s |\n", $1, $2, $3 }' "$TIMES"
    echo
    echo "</details>"
} > "$R.tmp"
mv "$R.tmp" "$R"
awk -F '\t' '{ print $1 "\t" $3 "\t" $2 }' "$CLAIMS" > "$DOC/claims.tsv"
rm -f "$CLAIMS"
# one HTML page with every grid of the report
{
    echo '<!DOCTYPE html><html><head><meta charset="utf-8"><title>dalign experiments: grids</title>'
    echo '<style>body{font-family:sans-serif} figure{display:inline-block;margin:8px}'
    echo 'img{image-rendering:pixelated;width:256px}</style></head><body>'
    echo '<h1>Experiment suite: grids (held-out prompts; rows: prompts, columns: seeds)</h1>'
    for g in "$DOC"/grid-*.png; do
        n=$(basename "$g" .png)
        printf '<figure><img src="%s.png" alt="%s"><figcaption>%s</figcaption></figure>\n' "$n" "${n#grid-}" "${n#grid-}"
    done
    echo '<p>See <a href="results.md">results.md</a>.</p></body></html>'
} > "$DOC/grids.html"
stage "report: $R"
for s in i ii iii iv pref; do stage "wall time, stage $s: $(stage_seconds "$s") s"; done
stage "done: results in $OUT, report in $R"
