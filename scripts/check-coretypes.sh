#!/bin/sh
# The thread-determinism suites again under each OpenBLAS kernel ("core
# type") this CPU can execute. Debian's OpenBLAS picks its kernel per CPU
# at load time, and OPENBLAS_CORETYPE forces one; dalign's bits must not
# depend on which one it is (an AVX2 machine gets Haswell or Zen, an AVX-512
# one SkylakeX, so a test that passes on one CPU can fail on another).
# Usage: sh scripts/check-coretypes.sh BUILD_DIR [RESULTS_FILE]
# RESULTS_FILE gets "pass|fail SUITE (OPENBLAS_CORETYPE=X)" lines
# (scripts/check.sh); exit status 1 when any run failed.
# CORETYPE_SUITES overrides the suites (names in BUILD_DIR/tests/).
set -u
B=$1
results=${2:-/dev/null}
suites=${CORETYPE_SUITES:-test_gemm test_golden test_ops_conv test_model_unet}
if [ "$(uname -m)" != x86_64 ]; then
  echo "core-type matrix: skipped: these are x86-64 core types (this machine is $(uname -m))"
  exit 0
fi
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
DA_PAR_MIN=${DA_PAR_MIN:-0}   # every loop split over threads, as in check.sh
# the suites' default GEMM is the portable one (no OpenBLAS kernel in it);
# here they run on OpenBLAS, whose kernel is what changes (test_gemm and
# test_golden check both backends whatever this says)
DA_GEMM=openblas
export OMP_WAIT_POLICY DA_PAR_MIN DA_GEMM
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
lacks() {   # the CPU flags among $@ that this CPU does not have
  out=""
  for f in "$@"; do
    case $flags in *" $f "*) ;; *) out="$out $f" ;; esac
  done
  echo $out
}
# test_golden checks each golden with both GEMM backends, 1 and 2 threads,
# alone and in batches (43 s for all four here); under each core type it
# checks the first CORETYPE_GOLDENS of them (default 1; the plain run
# checked them all).
gdir=$B/coretype-golden
sh scripts/golden-subset.sh "$gdir" "${CORETYPE_GOLDENS:-1}" || exit 1
fail=0
for ct in Prescott Nehalem Sandybridge Haswell Zen SkylakeX; do
  case $ct in
    Prescott)    need="pni" ;;   # SSE3 ("pni" in /proc/cpuinfo)
    Nehalem)     need="ssse3 sse4_1 sse4_2 popcnt" ;;
    Sandybridge) need="avx" ;;
    Haswell|Zen) need="avx2 fma" ;;
    SkylakeX)    need="avx512f avx512bw avx512dq avx512vl" ;;
  esac
  missing=$(lacks $need)
  if [ -n "$missing" ]; then
    echo "skipped OPENBLAS_CORETYPE=$ct: this CPU lacks $missing"
    continue
  fi
  for s in $suites; do
    t=$B/tests/$s
    [ -x "$t" ] || continue
    # OPENBLAS_VERBOSE=2 makes OpenBLAS print the kernel it loaded ("Core: X")
    echo "== OPENBLAS_CORETYPE=$ct $t"
    if DA_GOLDEN_DIR=${DA_GOLDEN_DIR:-$gdir} OPENBLAS_CORETYPE=$ct OPENBLAS_VERBOSE=2 "$t"; then
      echo "pass $s (OPENBLAS_CORETYPE=$ct)" >> "$results"
    else
      echo "FAILED: $t (OPENBLAS_CORETYPE=$ct)"
      echo "fail $s (OPENBLAS_CORETYPE=$ct)" >> "$results"
      fail=1
    fi
  done
done
exit $fail
