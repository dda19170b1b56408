#!/bin/sh
# The exports check of make check (docs/architecture.md, "Public API"): the
# shared library exports exactly the public API, the functions declared with
# DA_API in include/dalign/*.h. Fails, listing the names, when it exports a
# name without the da_ prefix, a da_ name that is not DA_API (an internal
# function that lost -fvisibility=hidden), or lacks a DA_API function
# (declared but not defined, or hidden).
# Usage: sh scripts/check-exports.sh NM LIBRARY   (NM: nm, or <triplet>-nm)
set -u
nm=$1 lib=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the functions declared DA_API: the name before the first '(' of the line
sed -n 's/^DA_API[^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' include/dalign/*.h | sort -u > "$tmp/api"
if ! $nm -D --defined-only "$lib" > "$tmp/nm"; then
  echo "check-exports: FAILED: cannot read the dynamic symbols of $lib with $nm"
  exit 1
fi
awk '{print $NF}' "$tmp/nm" | sort -u > "$tmp/exported"

bad=0
report() {   # report FILE MESSAGE: the names in FILE, if any, under MESSAGE
  if [ -s "$1" ]; then
    echo "check-exports: $2:"
    sed 's/^/  /' "$1"
    bad=1
  fi
}
grep -v '^da_' "$tmp/exported" > "$tmp/unprefixed"
report "$tmp/unprefixed" "$lib exports names without the da_ prefix"
comm -23 "$tmp/exported" "$tmp/api" | grep '^da_' > "$tmp/extra"
report "$tmp/extra" "$lib exports da_ names that are not DA_API in include/dalign/*.h"
comm -13 "$tmp/exported" "$tmp/api" > "$tmp/missing"
report "$tmp/missing" "DA_API functions that $lib does not export"
if [ $bad -ne 0 ]; then
  echo "check-exports: FAILED (public: DA_API in include/dalign/*.h; everything else is built hidden)"
  exit 1
fi
echo "check-exports: ok ($lib exports the $(wc -l < "$tmp/api") DA_API functions and nothing else)"
