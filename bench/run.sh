#!/bin/sh
# make bench: sh bench/run.sh BUILD_DIR PYTHON
#
# Runs bench_peak (the FP32 peak and its derivation), bench_core (dalign's
# GEMM, conv2d, attention) and bench/torch_core.py (the same in PyTorch, same
# shapes and thread count), then prints a side-by-side table. Numbers only:
# nothing here passes or fails. Threads: DA_THREADS, default all cores.
set -e
B=${1:-build/default}
PY=${2:-/usr/bin/python3}

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
load_note "at end (includes this run)"
