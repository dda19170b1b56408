#!/bin/bash
# scripts/paraphrase-gain.sh: how much could any prompt rewriter gain in the shapes world?
#
#   scripts/paraphrase-gain.sh [OUT]      (default out/paraphrase-gain; env: SPLIT, N, P, SEEDS, THREADS)
#
# The base model samples N prompts of SPLIT (seed 7: not the evaluation prompts,
# which use 2025) and P paraphrases of each (examples/paraphrases: same meaning,
# other words), SEEDS images per line with the same noise for a prompt and its
# paraphrases (`dalign eval --prompts FILE` seeds line p the same way in every
# file). Faithfulness is scored against the prompt's own meaning, which every
# paraphrase shares. Then, per prompt p (f[j][k]: version j = 0 the prompt,
# 1..P paraphrases, noise k):
#
#   mean paraphrase effect   mean_j>0 mean_k f[j][k] - mean_k f[0][k]
#   text oracle              pick the version with the best mean over half of the
#                            seeds, score it minus the prompt on the other half
#                            (both halves, averaged): what a rewriter that reads
#                            only the text could gain, knowing the best wording
#                            of each prompt from SEEDS/2 images
#   noise oracle             mean_k max_j f[j][k] - f[0][k]: a rewriter that knew
#                            which wording this noise draws best (a ceiling for
#                            visual feedback with one rewrite before sampling)
#   wording / interaction    the two-way decomposition f[j][k] = m + a_j + b_k + e_jk:
#                            var(a) (the wording's own effect, learnable from
#                            text) against var(e) (wording x noise), unbiased
#                            estimates from the mean squares
#
# each with a 95% interval over prompts (t, n - 1 degrees of freedom). Resumes:
# an evaluation already written is kept. docs/promptloop.md, "How much a
# rewrite can give".
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/paraphrase-gain}
SPLIT=${SPLIT:-heldout} N=${N:-100} P=${P:-8} SEEDS=${SEEDS:-8} THREADS=${THREADS:-1}
DALIGN=${DALIGN:-${BUILD:-build/default}/dalign}
PARA=${PARA:-${BUILD:-build/default}/examples/paraphrases}
[ -x "$PARA" ] || { echo "paraphrase-gain: $PARA missing (make examples, or set BUILD or PARA)" >&2; exit 1; }
[ $((SEEDS % 2)) = 0 ] || { echo "paraphrase-gain: SEEDS must be even (two halves)" >&2; exit 1; }
mkdir -p "$OUT"
"$PARA" "$SPLIT" "$N" "$P" 7 "$OUT/prompts-"
for j in $(seq 0 "$P"); do
  [ -f "$OUT/ev-$j/metrics.json" ] && continue
  echo "paraphrase-gain: version $j of $P ($N prompts x $SEEDS seeds)" >&2
  t0=$(date +%s)
  "$DALIGN" --threads "$THREADS" eval --prompts "$OUT/prompts-$j.txt" --seeds "$SEEDS" --rewards faithful \
    -o "$OUT/ev-$j" -q
  echo "ev-$j wall=$(( $(date +%s) - t0 ))" >> "$OUT/times.txt"
done

# images.tsv: prompt_index k seed prompt faithful ...; the column is found by name
for j in $(seq 0 "$P"); do
  awk -F'\t' -v j="$j" 'NR == 1 { for (c = 1; c <= NF; c++) if ($c == "faithful") col = c; next }
                        { print j "\t" $1 "\t" $2 "\t" $col }' "$OUT/ev-$j/images.tsv"
done | awk -F'\t' -v P="$P" -v S="$SEEDS" -v N="$N" '
  { f[$1, $2, $3] = $4 }
  function stat(name, x,    i, m, v) {
    m = 0; for (i = 0; i < N; i++) m += x[i]; m /= N
    v = 0; for (i = 0; i < N; i++) v += (x[i] - m)^2; v /= N - 1
    # t quantile 0.975 at N - 1 degrees of freedom (1.984 at 99; 1.96 beyond)
    printf "%-28s %+.4f [%+.4f, %+.4f]\n", name, m, m - tq * sqrt(v / N), m + tq * sqrt(v / N)
  }
  END {
    tq = N - 1 >= 99 ? 1.984 : (N - 1 >= 30 ? 2.04 : 2.1)
    h = S / 2
    for (p = 0; p < N; p++) {
      base = 0; for (k = 0; k < S; k++) base += f[0, p, k]; base /= S
      para = 0; for (j = 1; j <= P; j++) for (k = 0; k < S; k++) para += f[j, p, k]; para /= P * S
      effect[p] = para - base
      # text oracle, cross-fitted over the two halves of the seeds
      g = 0
      for (half = 0; half < 2; half++) {
        best = -1; bj = 0
        for (j = 0; j <= P; j++) {
          s = 0; for (k = half * h; k < (half + 1) * h; k++) s += f[j, p, k]
          if (s > best + 1e-9) { best = s; bj = j }
        }
        for (k = (1 - half) * h; k < (2 - half) * h; k++) g += f[bj, p, k] - f[0, p, k]
      }
      text[p] = g / S
      g = 0
      for (k = 0; k < S; k++) {
        mx = f[0, p, k]; for (j = 1; j <= P; j++) if (f[j, p, k] > mx) mx = f[j, p, k]
        g += mx - f[0, p, k]
      }
      noise[p] = g / S
      # two-way decomposition over (version, noise)
      m = 0; for (j = 0; j <= P; j++) for (k = 0; k < S; k++) m += f[j, p, k]; m /= (P + 1) * S
      for (j = 0; j <= P; j++) { a[j] = 0; for (k = 0; k < S; k++) a[j] += f[j, p, k]; a[j] = a[j] / S - m }
      for (k = 0; k < S; k++) { b[k] = 0; for (j = 0; j <= P; j++) b[k] += f[j, p, k]; b[k] = b[k] / (P + 1) - m }
      sa = 0; for (j = 0; j <= P; j++) sa += a[j]^2
      se = 0; for (j = 0; j <= P; j++) for (k = 0; k < S; k++) se += (f[j, p, k] - m - a[j] - b[k])^2
      # variance components of the two-way model without replication: the
      # interaction mean square estimates var(e); the mean square of the versions
      # minus it, over S, estimates var(a) (unbiased, so it may dip below 0)
      mse = se / (P * (S - 1))
      wording[p] = (S * sa / P - mse) / S; inter[p] = mse
      basef[p] = base
    }
    printf "%d prompts x %d seeds, %d paraphrases each (faithfulness; 95%% intervals over prompts)\n", N, S, P
    stat("base faithfulness", basef)
    stat("mean paraphrase effect", effect)
    stat("text oracle gain", text)
    stat("noise oracle gain", noise)
    stat("wording variance var(a)", wording)
    stat("wording x noise var(e)", inter)
  }' | tee "$OUT/summary.txt"
