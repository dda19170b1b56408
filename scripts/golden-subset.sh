#!/bin/sh
# A golden directory holding the first N goldens of tests/golden/, for
# test_golden runs that need only a sample of them (DA_GOLDEN_DIR=OUT): the
# OpenBLAS core-type matrix, and the aarch64 suites under qemu, where one
# golden (13 images: 1 and 2 threads, alone and in batches of 3 and 8) takes
# about 7 minutes. Every golden is checked in full by the native make check.
# Usage: sh scripts/golden-subset.sh OUT N
set -eu
out=$1
n=$2
src=$(cd tests/golden && pwd)
rm -rf "$out"
mkdir -p "$out"
awk -v n="$n" 'NR == 1 || (!/^#/ && k++ < n)' "$src/manifest.tsv" > "$out/manifest.tsv"
for name in $(awk '!/^#/ {print $1}' "$out/manifest.tsv"); do
  ln -s "$src/$name.safetensors" "$src/$name.png" "$out/"
done
[ ! -f "$src/weights.SHA256SUMS" ] || ln -s "$src/weights.SHA256SUMS" "$out/"
