#!/bin/sh
# make check: run every test suite from the repository root (they read
# tests/oracle/ and tests/golden/), each as `$TEST_RUNNER SUITE`; with
# CORETYPES=1 run the thread-determinism suites again under each OpenBLAS
# core type (scripts/check-coretypes.sh). Ends with the suites that failed,
# one per line, and "check: N passed, N failed[, N skipped]"; exit status 1
# on any failure.
# Usage: TEST_RUNNER=... CORETYPES=0|1 sh scripts/check.sh BUILD_DIR SUITE...
# Environment:
#   TEST_TIMEOUT=S   stop a suite after S seconds (counted as a failure)
#   TEST_JOBS=N      run N suites at once, each one's output printed when it
#                    ends (for qemu, where a suite keeps about one core busy)
#   SKIP_SUITES="test_a test_b"  do not run these (reported as skipped)
set -u
if [ "$1" = --one ]; then   # one suite, with TEST_JOBS > 1: output to a log
  B=$2 t=$3 name=${3##*/}
  log=$B/check-logs/$name.log
  t0=$(date +%s)
  if ${TEST_TIMEOUT:+timeout $TEST_TIMEOUT} ${TEST_RUNNER:-} "$t" > "$log" 2>&1; then r=pass; else r=fail; fi
  {
    flock 9
    echo "== ${TEST_RUNNER:+$TEST_RUNNER }$t"
    cat "$log"
    [ $r = pass ] || echo "FAILED: $t"
    echo "-- $name: $(( $(date +%s) - t0 )) s"
    echo "$r $name" >> "$B/check.results"
  } 9>> "$B/check.lock"
  exit 0
fi

B=$1
shift
# Idle OpenMP threads sleep (a user's explicit choice is kept): spinning
# threads made 2-thread suites 5-70x slower when anything else used a core.
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# Every loop opens its parallel region, however small (src/core/par.h): the
# thread-determinism tests use small tensors, which would otherwise run on
# one thread and prove nothing.
DA_PAR_MIN=${DA_PAR_MIN:-0}
# the suites that start the dalign binary start it through the runner too
DA_TEST_RUNNER=${TEST_RUNNER:-}
export OMP_WAIT_POLICY DA_PAR_MIN DA_TEST_RUNNER

results=$B/check.results
: > "$results"
start=$(date +%s)
suites=""
for t in "$@"; do
  case " ${SKIP_SUITES:-} " in
    *" ${t##*/} "*) echo "skipped: ${t##*/} (SKIP_SUITES)"; echo "skip ${t##*/}" >> "$results" ;;
    *) suites="$suites $t" ;;
  esac
done
jobs=${TEST_JOBS:-1}
if [ "$jobs" -gt 1 ]; then
  mkdir -p "$B/check-logs"
  # the longest suites first, so that the last ones to start are short
  first=""
  rest=""
  for t in $suites; do
    case ${t##*/} in
      test_golden|test_experiments|test_reward_net|test_pretrain|test_pairs|test_sample_parity|test_model_vae|test_rewards) first="$first $t" ;;
      *) rest="$rest $t" ;;
    esac
  done
  printf '%s\n' $first $rest | xargs -P "$jobs" -n 1 sh "$0" --one "$B"
else
  for t in $suites; do
    echo "== ${TEST_RUNNER:+$TEST_RUNNER }$t"
    t0=$(date +%s)
    if ${TEST_TIMEOUT:+timeout $TEST_TIMEOUT} ${TEST_RUNNER:-} "$t"; then
      echo "pass ${t##*/}" >> "$results"
    else
      echo "FAILED: $t"
      echo "fail ${t##*/}" >> "$results"
    fi
    echo "-- ${t##*/}: $(( $(date +%s) - t0 )) s"
  done
fi
if [ "${CORETYPES:-0}" = 1 ]; then
  sh scripts/check-coretypes.sh "$B" "$results"
fi

n_pass=$(grep -c '^pass ' "$results")
n_fail=$(grep -c '^fail ' "$results")
n_skip=$(grep -c '^skip ' "$results")
echo
echo "make check ($B${TEST_RUNNER:+, under $TEST_RUNNER}): $(( $(date +%s) - start )) s"
if [ "$n_fail" -gt 0 ]; then
  echo "failed suites:"
  sed -n 's/^fail /  /p' "$results"
fi
echo "check: $n_pass passed, $n_fail failed$([ "$n_skip" -gt 0 ] && echo ", $n_skip skipped")"
[ "$n_fail" -eq 0 ]
