#!/bin/sh
# make bench: sh bench/run.sh BUILD_DIR PYTHON
#
# Runs bench_peak (the FP32 peak and its derivation), bench_core (dalign's
# GEMM, conv2d, attention) and bench/torch_core.py (the same in PyTorch, same
# shapes and thread count), then prints a side-by-side table. Then the models
# (docs/benchmarks.md, "Method"): for each row (sampling b1 and b16, UNet
# forward b1 and b32, UNet train step b16, b32 and b64) and each thread count,
# R rounds of one bench_models process and one bench/torch_models.py process,
# alternating (the side that goes first alternates too); per side the median
# over the R processes, their min-max, the ratio of the medians, the thread
# scaling, the UNet forward's GFLOP/s against a 1-thread sgemm, peak RSS, and
# the CPU time other processes took during each row. Numbers only: nothing
# here passes or fails. The last block is "key value" lines to paste from.
#
# Environment:
#   DA_THREADS         threads of the core benchmarks (default: all cores)
#   DA_BENCH_THREADS   thread counts of the model rows (default "1 2"; capped
#                      at the core count)
#   DA_BENCH_REPEATS   processes per side and row (default 5; 1 when quick)
#   DA_BENCH_SAMPLES, DA_BENCH_BUDGET  timed samples per process (default at
#                      most 3, as many as fit in 1 s; bench_models.c)
#   DA_BENCH_QUICK=1   a smoke run: 1 round, the model processes time one
#                      call each (the numbers mean little)
#   DA_BENCH_VERBOSE=1 also print every model process's own line
#   DALIGN_WEIGHTS     the weights directory (default weights/)
#   OMP_WAIT_POLICY, GOMP_SPINCOUNT  when either is set, both sides get it;
#                      else each side its own best (below)
set -e
B=${1:-build/default}
PY=${2:-/usr/bin/python3}
# "." decimals in every number printed and parsed (times, awk, printf)
LC_ALL=C
export LC_ALL

# How idle OpenMP threads wait (both sides use libgomp), each side as it
# runs best and as its users run it, unless the caller set OMP_WAIT_POLICY
# or GOMP_SPINCOUNT (then both sides get that):
# - dalign: GOMP_SPINCOUNT=1000, spin briefly, then sleep: what the dalign
#   binary sets for itself when neither variable is set (src/cli/main.c).
#   With OMP_WAIT_POLICY=passive every parallel region wakes its threads with
#   a futex: a train step at batch 32 on 2 threads took 182 ms instead of
#   134 ms (1 thread: 224 ms);
# - PyTorch: OMP_WAIT_POLICY=passive. With libgomp's default spinning its
#   OpenMP threads and its OpenBLAS pthreads fight over the cores: on 2
#   threads sampling at batch 16 took 1725 ms instead of 775 ms and a train
#   step at batch 32 322 ms instead of 156 ms (GOMP_SPINCOUNT=1000: 168 ms).
# (2-core AMD EPYC, 2026-12-04.)
# WAIT_DALIGN, WAIT_TORCH: the setting each side's processes get, or
# empty (the caller's, already in the environment)
WAIT_DALIGN="GOMP_SPINCOUNT=1000"
WAIT_TORCH="OMP_WAIT_POLICY=passive"
if [ -n "${OMP_WAIT_POLICY:-}${GOMP_SPINCOUNT:-}" ]; then
    WAIT_DALIGN=
    WAIT_TORCH=
fi
wait_note="idle threads: dalign ${WAIT_DALIGN:-as set}, PyTorch ${WAIT_TORCH:-as set} (OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}, GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-unset})"

T=${DA_THREADS:-0}
case $T in '' | *[!0-9]*) T=0 ;; esac
[ "$T" -gt 0 ] || T=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)

NCORES=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# CPU accounting. snap FILE: "uptime busy_jiffies steal_jiffies bench_cpu_s",
# where busy = user + nice + system + irq + softirq of all cores from
# /proc/stat, and bench_cpu_s = the user + system time of this shell and of
# all its finished children (`times`: the benchmark processes and the tools
# this script runs). Between two snapshots, the busy time not spent by us is
# other processes' (steal, time the hypervisor gave to other guests, is
# reported on its own).
snap() {
    times > "$tmp/times"
    {
        cut -d' ' -f1 /proc/uptime
        awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $9 + 0 }' /proc/stat
        awk '{ for (i = 1; i <= NF; i++) { v = $i; sub(/s$/, "", v); split(v, p, "m"); t += p[1] * 60 + p[2] } }
             END { printf "%.3f\n", t }' "$tmp/times"
    } | tr '\n' ' ' > "$1"
}
# cpu_delta FILE0 FILE1: "wall_s bench_cpu_s other_cpu_s steal_s"
cpu_delta() {
    awk -v hz="$HZ" 'NR == 1 { u0 = $1; b0 = $2; s0 = $3; c0 = $4; next }
                     { u1 = $1; b1 = $2; s1 = $3; c1 = $4 }
                     END { printf "%.2f %.2f %.2f %.2f\n", u1 - u0, c1 - c0, (b1 - b0) / hz - (c1 - c0), (s1 - s0) / hz }' \
        "$1" "$2"
}
snap "$tmp/snap.run0"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
echo "dalign benchmarks: $started, ${cpu:-unknown CPU}, $NCORES cores, $T threads, build $B"
# Other busy processes wreck multi-threaded timings (a preempted thread holds
# up its whole parallel region for a scheduler time slice): say so.
load_note() {
    load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')
    echo "load average (1 min) $1: $load (a load above ~0.5 before the run means other work was competing for the cores)"
}
load_note "at start"
echo "$wait_note"
echo "GEMM of dalign: ${DA_GEMM:-default of the build} (DA_GEMM=portable or openblas to choose)"
echo "$("$B/dalign" --version) (DA_GEMM_TILE, DA_ISA to choose; each process times the tile again)"
load_start=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')
echo

"$B/bench/bench_peak" | tee "$tmp/peak"
peak=$(sed -n 's/^PEAK_CORE_GFLOPS //p' "$tmp/peak")
echo

# shellcheck disable=SC2086 # the wait setting is one word or none
env $WAIT_DALIGN DA_THREADS=$T "$B/bench/bench_core" "${peak:-0}" "$tmp/dalign" | tee "$tmp/core"
backend=$(sed -n 's/.*da_gemm backend \([a-z]*\).*/\1/p' "$tmp/core")
echo

# PyTorch: its GEMM goes to the BLAS behind it (Debian: OpenBLAS, own thread
# pool), its convolutions to oneDNN (OpenMP); pin all of them to T threads.
if "$PY" -c 'import torch' >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    env $WAIT_TORCH OMP_NUM_THREADS=$T OPENBLAS_NUM_THREADS=$T MKL_NUM_THREADS=$T \
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

quick=0
case ${DA_BENCH_QUICK:-0} in '' | 0) ;; *) quick=1 ;; esac
R=${DA_BENCH_REPEATS:-}
case $R in '' | *[!0-9]*) if [ $quick = 1 ]; then R=1; else R=5; fi ;; esac
[ "$R" -ge 1 ] || R=1
# thread counts of the model rows: numbers >= 1, capped at the core count, no duplicates
TH=
for t in ${DA_BENCH_THREADS:-1 2}; do
    case $t in '' | *[!0-9]*) continue ;; esac
    [ "$t" -ge 1 ] || continue
    [ "$t" -le "$NCORES" ] || t=$NCORES
    case " $TH " in *" $t "*) ;; *) TH="$TH $t" ;; esac
done
TH=${TH# }
[ -n "$TH" ] || TH=1
T1=${TH%% *}   # the first thread count: the base of the scaling table

have_torch=0
"$PY" -c 'import torch' >/dev/null 2>&1 && have_torch=1
: > "$tmp/log"

# one process per side: WHAT BATCH THREADS RESULTS_FILE
run_dalign() {
    # shellcheck disable=SC2086
    env $WAIT_DALIGN DA_THREADS=$3 "$B/bench/bench_models" "$wsrc" "$1" "$2" "$4" >> "$tmp/log"
}
run_torch() {
    [ $have_torch = 1 ] || return 0
    # shellcheck disable=SC2086
    env $WAIT_TORCH OMP_NUM_THREADS=$3 OPENBLAS_NUM_THREADS=$3 MKL_NUM_THREADS=$3 \
        "$PY" bench/torch_models.py "$3" "$wsrc" "$1" "$2" "$4" >> "$tmp/log"
}

# stats FILE: "n median min max batch rss_median run_median flop" over the
# processes' lines in FILE (n = 0: none)
stats() {
    awk 'function med(a, n,   i, j, t) {   # sorts a[1..n] in place
             for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
             return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
         }
         $1 ~ /^model\./ { ms[++n] = $2; b = $3 }
         $1 ~ /^rss\./ { r[++m] = $2; ru[m] = $2 - $3 }
         $1 ~ /^flop\./ { f = $2 }
         END {
             if (!n) { print "0 0 0 0 0 0 0 0"; exit }
             md = med(ms, n)
             printf "%d %.6f %.6f %.6f %d %.3f %.3f %.0f\n", n, md, ms[1], ms[n], b, med(r, m), med(ru, m), f
         }' "$1"
}

# the 1-thread sgemm reference for the UNet's GFLOP/s (before and after the rows; the higher counts)
DA_THREADS=1 "$B/bench/bench_models" - sgemm 1024 "$tmp/sgemm" >> "$tmp/log"

echo "== models and sampling: $wnote"
echo "rows at $TH thread(s); per row $R round(s) of one dalign and one PyTorch process (alternating, the first side"
if [ $quick = 1 ]; then
    echo "alternating too); DA_BENCH_QUICK: each process times one call after its warm-up (a smoke run);"
else
    echo "alternating too); each process: warm-up, then the median of up to ${DA_BENCH_SAMPLES:-3} samples (>= 50 ms each) within ${DA_BENCH_BUDGET:-1} s;"
fi
echo "$wait_note. Per row: median [min-max] ms over the processes, per side"
[ $have_torch = 1 ] || echo "note: $PY has no torch; the PyTorch columns are skipped"
snap "$tmp/snap.models0"
: > "$tmp/rows"
: > "$tmp/rowcpu"
for m in sample:1 sample:16 unet-fwd:1 unet-fwd:32 unet-train:16 unet-train:32 unet-train:64; do
    what=${m%:*}
    batch=${m#*:}
    case $what in
        sample) name=sample.b$batch ;;
        unet-fwd) name=unet_fwd.b$batch ;;
        *) name=unet_train.b$batch ;;
    esac
    for th in $TH; do
        key=$name.t$th
        : > "$tmp/d.$key"
        : > "$tmp/t.$key"
        snap "$tmp/snap.a"
        i=0
        while [ $i -lt "$R" ]; do
            if [ $((i % 2)) = 0 ]; then
                run_dalign "$what" "$batch" "$th" "$tmp/d.$key"
                run_torch "$what" "$batch" "$th" "$tmp/t.$key"
            else
                run_torch "$what" "$batch" "$th" "$tmp/t.$key"
                run_dalign "$what" "$batch" "$th" "$tmp/d.$key"
            fi
            i=$((i + 1))
        done
        snap "$tmp/snap.b"
        echo "$key dalign $(stats "$tmp/d.$key")" >> "$tmp/rows"
        echo "$key torch $(stats "$tmp/t.$key")" >> "$tmp/rows"
        echo "$key $(cpu_delta "$tmp/snap.a" "$tmp/snap.b")" >> "$tmp/rowcpu"
        awk -v k="$key" 'FILENAME ~ /rowcpu$/ { if ($1 == k) { w = $2; o = $4 }; next }
                         $1 == k && $2 == "dalign" { d = $4; dl = $5; dh = $6 }
                         $1 == k && $2 == "torch" { tn = $3; t = $4; tl = $5; th = $6 }
                         END {
                             printf "%-18s dalign %8.2f ms [%.2f-%.2f]", k, d, dl, dh
                             if (tn) printf "  torch %8.2f ms [%.2f-%.2f]  ratio %.2f", t, tl, th, d / t
                             printf "  (%.1f s; others %.2f CPU-s, %.0f%% of a core)\n", w, o, (w > 0 ? 100 * o / w : 0)
                         }' "$tmp/rows" "$tmp/rowcpu"
    done
done
snap "$tmp/snap.models1"
DA_THREADS=1 "$B/bench/bench_models" - sgemm 1024 "$tmp/sgemm" >> "$tmp/log"
sgemm=$(awk '$1 == "sgemm.1024" && $2 > g { g = $2 } END { printf "%.1f", g }' "$tmp/sgemm")
[ "${DA_BENCH_VERBOSE:-0}" = 0 ] || { echo; echo "== the model processes' own lines"; cat "$tmp/log"; }
echo

echo "== models side by side: median ms per call over $R process(es) per side, [min-max] over them;"
echo "images/s = batch / median; ratio of the medians > 1 means dalign is slower"
echo "sample.bN = N images: text encoder, 20 DDIM steps with CFG (one UNet call of 2N rows per step), VAE decode"
awk '$2 == "dalign" { d[$1] = $4; dl[$1] = $5; dh[$1] = $6; b[$1] = $7; order[++n] = $1 }
     $2 == "torch" && $3 > 0 { t[$1] = $4; tl[$1] = $5; th[$1] = $6 }
     END {
         printf "%-16s %4s %10s %19s %10s %19s %9s %9s %7s\n", "benchmark", "thr", "dalign ms", "dalign min-max",
                "torch ms", "torch min-max", "da img/s", "pt img/s", "da/pt"
         for (i = 1; i <= n; i++) {
             k = order[i]; name = k; thr = k; sub(/\.t[0-9]+$/, "", name); sub(/.*\.t/, "", thr)
             printf "%-16s %4s %10.2f %19s", name, thr, d[k], sprintf("%.2f-%.2f", dl[k], dh[k])
             if (k in t) printf " %10.2f %19s %9.2f %9.2f %7.2f\n", t[k], sprintf("%.2f-%.2f", tl[k], th[k]),
                                1000 * b[k] / d[k], 1000 * b[k] / t[k], d[k] / t[k]
             else printf " %10s %19s %9.2f %9s %7s\n", "-", "-", 1000 * b[k] / d[k], "-", "-"
         }
     }' "$tmp/rows"
echo

if [ "$TH" != "$T1" ]; then
    echo "== thread scaling: time at $T1 thread(s) / time at N threads (medians; N x would be perfect)"
    awk -v t1="$T1" '{ name = $1; thr = $1; sub(/\.t[0-9]+$/, "", name); sub(/.*\.t/, "", thr) }
         $3 > 0 { v[name, thr, $2] = $4 }
         $2 == "dalign" && !(name in seen) { seen[name] = 1; names[++n] = name }
         $2 == "dalign" && thr != t1 && !((thr) in tseen) { tseen[thr] = 1; ths[++m] = thr }
         END {
             printf "%-16s %6s %14s %14s\n", "benchmark", "N", "dalign", "torch"
             for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) {
                 a = v[names[i], t1, "dalign"]; b = v[names[i], ths[j], "dalign"]
                 c = v[names[i], t1, "torch"]; e = v[names[i], ths[j], "torch"]
                 printf "%-16s %6s %14s %14s\n", names[i], ths[j], (b > 0 ? sprintf("%.2f", a / b) : "-"),
                        (e > 0 ? sprintf("%.2f", c / e) : "-")
             }
         }' "$tmp/rows"
    echo
fi

echo "== UNet forward: achieved GFLOP/s (FLOP per image counted from the config: convs, linears, attention matmuls)"
echo "against the 1-thread sgemm reference: da_gemm 1024^3, best of 20 calls, $sgemm GFLOP/s (higher of two runs);"
echo "\"of N x sgemm\" = share of N x that 1-thread figure for the N threads of the row"
awk -v sg="$sgemm" '$2 == "dalign" && $1 ~ /^unet_fwd\./ { d[$1] = $4; b[$1] = $7; f[$1] = $10; order[++n] = $1 }
     $2 == "torch" && $3 > 0 { t[$1] = $4 }
     END {
         printf "%-16s %4s %10s %12s %10s %12s %12s %10s %12s\n", "benchmark", "thr", "MFLOP/img", "dalign GF/s",
                "of sgemm", "of N x sgemm", "torch GF/s", "of sgemm", "of N x sgemm"
         for (i = 1; i <= n; i++) {
             k = order[i]; name = k; thr = k; sub(/\.t[0-9]+$/, "", name); sub(/.*\.t/, "", thr)
             gd = f[k] * b[k] / d[k] * 1e-6
             printf "%-16s %4s %10.2f %12.1f %9.1f%% %11.1f%%", name, thr, f[k] * 1e-6, gd, 100 * gd / sg, 100 * gd / (sg * thr)
             if (k in t) { gt = f[k] * b[k] / t[k] * 1e-6
                           printf " %12.1f %9.1f%% %11.1f%%\n", gt, 100 * gt / sg, 100 * gt / (sg * thr) }
             else printf " %12s %10s %12s\n", "-", "-", "-"
         }
     }' "$tmp/rows"
echo

echo "== peak RSS (getrusage ru_maxrss, MiB; median over the processes): whole process; \"+run\" = peak minus the RSS at start"
echo "(PyTorch's start is after importing torch: the interpreter and libtorch)"
awk '$2 == "dalign" { d[$1] = $8; dr[$1] = $9; order[++n] = $1 }
     $2 == "torch" && $3 > 0 { t[$1] = $8; tr[$1] = $9 }
     END {
         printf "%-16s %4s %12s %12s %13s %12s %12s\n", "benchmark", "thr", "dalign MiB", "torch MiB", "dalign/torch",
                "dalign +run", "torch +run"
         for (i = 1; i <= n; i++) {
             k = order[i]; name = k; thr = k; sub(/\.t[0-9]+$/, "", name); sub(/.*\.t/, "", thr)
             if (k in t) printf "%-16s %4s %12.1f %12.1f %13.2f %12.1f %12.1f\n", name, thr, d[k], t[k], d[k] / t[k], dr[k], tr[k]
             else printf "%-16s %4s %12.1f %12s %13s %12.1f %12s\n", name, thr, d[k], "-", "-", dr[k], "-"
         }
     }' "$tmp/rows"
echo

snap "$tmp/snap.run1"
cpu_delta "$tmp/snap.models0" "$tmp/snap.models1" > "$tmp/cpu.models"
cpu_delta "$tmp/snap.run0" "$tmp/snap.run1" > "$tmp/cpu.run"
echo "== other processes: CPU time during each row = busy time of all cores (/proc/stat) minus this run's own"
echo "(this shell and its children: the benchmark processes); bench cores = bench CPU / wall (about the row's"
echo "thread count when nothing else runs); % of a core = other / wall; steal = time the hypervisor gave elsewhere"
echo "(tick accounting: a few hundredths of a second either way per row; small negatives mean none)"
awk 'FILENAME ~ /rowcpu$/ { r[++n] = $0; next }
     FILENAME ~ /cpu\.models$/ { mo = $0; next }
     { ru = $0 }
     END {
         printf "%-20s %9s %11s %10s %11s %12s %9s\n", "row", "wall s", "bench CPU s", "bench cores", "other CPU s",
                "% of a core", "steal s"
         for (i = 1; i <= n; i++) { split(r[i], f, " "); line(f[1], f[2], f[3], f[4], f[5]) }
         split(mo, f, " "); line("all model rows", f[1], f[2], f[3], f[4])
         split(ru, f, " "); line("whole run", f[1], f[2], f[3], f[4])
     }
     function line(name, w, c, o, st) {
         printf "%-20s %9.1f %11.1f %10.2f %11.2f %11.1f%% %9.2f\n", name, w, c, (w > 0 ? c / w : 0), o,
                (w > 0 ? 100 * o / w : 0), st
     }' "$tmp/rowcpu" "$tmp/cpu.models" "$tmp/cpu.run"
read -r wall _ other _ < "$tmp/cpu.run"
echo "other processes used $other CPU-seconds during this run ($(awk -v o="$other" -v w="$wall" 'BEGIN { printf "%.1f", (w > 0 ? 100 * o / w : 0) }')% of one core over ${wall} s)"
load_note "at end (includes this run)"
echo

echo "== summary (key value; medians over the processes, ms per call; ratio = dalign/torch; scaling = t$T1 time / tN time)"
{
    echo "date $started"
    echo "cpu ${cpu:-unknown}"
    echo "cores $NCORES"
    echo "build $B"
    echo "weights $wsrc"
    echo "repeats $R"
    echo "threads $TH"
    echo "quick $quick"
    echo "load_start $load_start"
    echo "load_end $(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')"
    echo "sgemm1024_t1_gflops $sgemm"
    awk -v t1="$T1" -v sg="$sgemm" '
        { name = $1; thr = $1; sub(/\.t[0-9]+$/, "", name); sub(/.*\.t/, "", thr) }
        $3 > 0 {
            p = $1 "." $2
            printf "%s_ms %.3f\n%s_min %.3f\n%s_max %.3f\n%s_rss_mib %.1f\n%s_run_mib %.1f\n", p, $4, p, $5, p, $6, p, $8, p, $9
            v[$1, $2] = $4; tv[name, thr, $2] = $4
            if ($2 == "dalign") fk[$1] = $10
            if (fk[$1] > 0) printf "%s_gflops %.1f\n%s_of_sgemm_t1 %.3f\n", p, fk[$1] * $7 / $4 * 1e-6, p,
                                   fk[$1] * $7 / $4 * 1e-6 / sg
            if ($10 > 0 && !fl) { fl = 1; printf "unet_fwd_flop_per_image %.0f\n", $10 }
        }
        $2 == "torch" && $3 > 0 && v[$1, "dalign"] > 0 { printf "%s.ratio %.3f\n", $1, v[$1, "dalign"] / $4 }
        $2 == "torch" && thr != t1 {
            for (s = 1; s <= 2; s++) { side = s == 1 ? "dalign" : "torch"
                if (tv[name, thr, side] > 0 && tv[name, t1, side] > 0)
                    printf "%s.scaling_t%s_t%s.%s %.3f\n", name, t1, thr, side, tv[name, t1, side] / tv[name, thr, side] }
        }' "$tmp/rows"
    awk '{ printf "%s.other_cpu_s %.2f\n%s.wall_s %.1f\n", $1, $4, $1, $2 }' "$tmp/rowcpu"
    read -r w c o s < "$tmp/cpu.models"
    echo "models_wall_s $w"
    echo "models_bench_cpu_s $c"
    echo "models_other_cpu_s $o"
    echo "models_steal_s $s"
    read -r w c o s < "$tmp/cpu.run"
    echo "run_wall_s $w"
    echo "run_bench_cpu_s $c"
    echo "run_other_cpu_s $o"
    echo "run_steal_s $s"
} | sed 's/^/BENCH /'
