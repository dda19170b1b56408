#!/bin/sh
# make bench: sh bench/run.sh BUILD_DIR PYTHON
#
# Runs bench_peak (the FP32 peak and its derivation), bench_core (dalign's
# GEMM, conv2d, attention) and bench/torch_core.py (the same in PyTorch, same
# shapes and thread count), then prints a side-by-side table. Then the models:
# bench_models and bench/torch_models.py (text -> image sampling, UNet
# forward, UNet train step, peak RSS), one process per measurement and side,
# and their tables. Numbers only: nothing here passes or fails.
# Threads: DA_THREADS, default all cores. DA_BENCH_QUICK=1: the model
# benchmarks time one call each (a smoke run; the numbers mean little).
set -e
B=${1:-build/default}
PY=${2:-/usr/bin/python3}

# Idle OpenMP threads sleep instead of spinning, on both sides (dalign and
# PyTorch both use libgomp): a spinning thread holds a core that another
# process, or the other side's BLAS pool, then cannot use, and a preempted
# spinner stalls its whole parallel region, so timings swing with whatever
# else runs. Override with OMP_WAIT_POLICY=active.
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export OMP_WAIT_POLICY

T=${DA_THREADS:-0}
case $T in '' | *[!0-9]*) T=0 ;; esac
[ "$T" -gt 0 ] || T=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo "dalign benchmarks: $(date -u '+%Y-%m-%d %H:%M UTC'), ${cpu:-unknown CPU}, $(getconf _NPROCESSORS_ONLN) cores, $T threads, build $B"
# Other busy processes wreck multi-threaded timings (a preempted thread holds
# up its whole parallel region for a scheduler time slice): say so.
load_note() {
    load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')
    echo "load average (1 min) $1: $load (a load above ~0.5 before the run means other work was competing for the cores)"
}
load_note "at start"
echo

"$B/bench/bench_peak" | tee "$tmp/peak"
peak=$(sed -n 's/^PEAK_CORE_GFLOPS //p' "$tmp/peak")
echo

DA_THREADS=$T "$B/bench/bench_core" "${peak:-0}" "$tmp/dalign" | tee "$tmp/core"
backend=$(sed -n 's/.*da_gemm backend \([a-z]*\).*/\1/p' "$tmp/core")
echo

# PyTorch: its GEMM goes to the BLAS behind it (Debian: OpenBLAS, own thread
# pool), its convolutions to oneDNN (OpenMP); pin all of them to T threads.
if "$PY" -c 'import torch' >/dev/null 2>&1; then
    OMP_NUM_THREADS=$T OPENBLAS_NUM_THREADS=$T MKL_NUM_THREADS=$T \
        "$PY" bench/torch_core.py "$T" "$tmp/torch"
else
    echo "note: $PY has no torch (Debian package python3-torch); the PyTorch column is skipped"
    : > "$tmp/torch"
fi
echo

echo "== side by side ($T threads): median ms per call; ratio > 1 means dalign is slower"
echo "gemm.* = da_gemm ($backend), gemm_portable.* = da_gemm_portable; PyTorch: torch.mm for both"
awk 'FNR == NR { d[$1] = $2; order[++n] = $1; next }
     { t[$1] = $2 }
     END {
         printf "%-32s %12s %12s %13s\n", "benchmark", "dalign ms", "torch ms", "dalign/torch"
         for (i = 1; i <= n; i++) {
             k = order[i]; tk = k
             sub(/^gemm_portable\./, "gemm.", tk)
             if (tk in t) printf "%-32s %12.3f %12.3f %13.2f\n", k, d[k], t[tk], d[k] / t[tk]
             else printf "%-32s %12.3f %12s %13s\n", k, d[k], "-", "-"
         }
     }' "$tmp/dalign" "$tmp/torch"
echo

# ---- models and sampling ----------------------------------------------------
# The shipped weights when weights/ (or $DALIGN_WEIGHTS) has the three models,
# else random models of the default configs on both sides (same speed).
W=${DALIGN_WEIGHTS:-weights}
wsrc="$W"
for f in text_encoder vae unet; do
    [ -f "$W/$f.json" ] && [ -f "$W/$f.safetensors" ] || wsrc=-
done
if [ "$wsrc" = - ]; then
    wnote="randomly initialised models of the default configs ($W has no text_encoder, vae and unet; speed does not depend on the values)"
else
    wnote="the models in $W"
fi
echo "== models and sampling ($T threads, OMP_WAIT_POLICY=$OMP_WAIT_POLICY): $wnote"
echo "each line is its own process (dalign, then PyTorch), so each peak RSS is that measurement's alone"
have_torch=0
"$PY" -c 'import torch' >/dev/null 2>&1 && have_torch=1
: > "$tmp/dalign_models"
: > "$tmp/torch_models"
for m in "sample 1" "sample 16" "unet-fwd 16" "unet-train 16" "unet-train 64"; do
    # shellcheck disable=SC2086 # $m is two words on purpose
    DA_THREADS=$T "$B/bench/bench_models" "$wsrc" $m "$tmp/dalign_models"
    if [ $have_torch = 1 ]; then
        # shellcheck disable=SC2086
        OMP_NUM_THREADS=$T OPENBLAS_NUM_THREADS=$T MKL_NUM_THREADS=$T \
            "$PY" bench/torch_models.py "$T" "$wsrc" $m "$tmp/torch_models"
    fi
done
[ $have_torch = 1 ] || echo "note: $PY has no torch; the PyTorch columns are skipped"
echo

echo "== models side by side ($T threads): median ms per call; images/s = batch / time; ratio > 1 means dalign is slower"
echo "sample.bN = N images: text encoder, 20 DDIM steps with CFG (one UNet call of 2N rows per step), VAE decode"
awk 'FNR == NR { if ($1 ~ /^model\./) { d[$1] = $2; b[$1] = $3; order[++n] = $1 }; next }
     $1 ~ /^model\./ { t[$1] = $2 }
     END {
         printf "%-24s %12s %12s %14s %14s %13s\n", "benchmark", "dalign ms", "torch ms",
                "dalign img/s", "torch img/s", "dalign/torch"
         for (i = 1; i <= n; i++) {
             k = order[i]; name = substr(k, 7)
             if (k in t) printf "%-24s %12.2f %12.2f %14.2f %14.2f %13.2f\n", name, d[k], t[k],
                                1000 * b[k] / d[k], 1000 * b[k] / t[k], d[k] / t[k]
             else printf "%-24s %12.2f %12s %14.2f %14s %13s\n", name, d[k], "-", 1000 * b[k] / d[k], "-", "-"
         }
     }' "$tmp/dalign_models" "$tmp/torch_models"
echo
echo "== peak RSS (getrusage ru_maxrss, MiB): whole process; \"+run\" = peak minus the RSS at start"
echo "(PyTorch's start is after importing torch: the interpreter and libtorch)"
awk 'FNR == NR { if ($1 ~ /^rss\./) { d[$1] = $2; d0[$1] = $3; order[++n] = $1 }; next }
     $1 ~ /^rss\./ { t[$1] = $2; t0[$1] = $3 }
     END {
         printf "%-24s %12s %12s %13s %12s %12s\n", "benchmark", "dalign MiB", "torch MiB", "dalign/torch",
                "dalign +run", "torch +run"
         for (i = 1; i <= n; i++) {
             k = order[i]; name = substr(k, 5)
             if (k in t) printf "%-24s %12.1f %12.1f %13.2f %12.1f %12.1f\n", name, d[k], t[k], d[k] / t[k],
                                d[k] - d0[k], t[k] - t0[k]
             else printf "%-24s %12.1f %12s %13s %12.1f %12s\n", name, d[k], "-", "-", d[k] - d0[k], "-"
         }
     }' "$tmp/dalign_models" "$tmp/torch_models"
echo
load_note "at end (includes this run)"
