#!/bin/sh
# The layering check of make check (docs/architecture.md, "Layers"): a file
# may include headers of its own layer and of lower layers only, in the order
#
#   core < models < diffusion < data < pipeline < rewards < eval < train < cli
#
# A file's layer is its folder: src/<layer>/*.[ch], and include/dalign/<layer>.h
# for the public headers. A header's layer is the same: "dalign/<layer>.h"
# (public) or "<layer>/<file>.h" (internal, in src/<layer>/); dalign.h, the
# umbrella over every layer, counts as the top library layer (train), so
# only cli may include it. tests/ and bench/ may include anything.
# Prints every violation as FILE:LINE with the two layers and exits 1.
# Usage: sh scripts/check-layers.sh [ROOT]   (default: the current directory)
set -u
cd "${1:-.}" || exit 2
LAYERS="core models diffusion data pipeline rewards eval train cli"

rank() {   # rank LAYER: its position in LAYERS (0 = core), or nothing
  i=0
  for l in $LAYERS; do
    [ "$l" = "$1" ] && { echo $i; return; }
    i=$((i + 1))
  done
}

# the layer of an included header, or nothing when it is not dalign's
header_layer() {
  case $1 in
    dalign.h) echo train ;;
    dalign/*.h) h=${1#dalign/}; echo "${h%.h}" ;;
    */*.h) echo "${1%%/*}" ;;
  esac
}

bad=0
check_file() {   # check_file FILE LAYER
  file=$1 layer=$2
  r=$(rank "$layer")
  if [ -z "$r" ]; then
    echo "$file: unknown layer '$layer' (the layers: $LAYERS)"
    bad=1
    return
  fi
  # "LINE HEADER" for each #include "..." or <...> line
  awk '/^[ \t]*#[ \t]*include[ \t]*["<]/ {
         h = $0; sub(/^[^"<]*["<]/, "", h); sub(/[">].*/, "", h); print FNR, h }' "$file" > "$tmp"
  while read -r line header; do
    hl=$(header_layer "$header")
    [ -n "$hl" ] || continue
    hr=$(rank "$hl")
    [ -n "$hr" ] || continue   # <sys/stat.h> and the like
    if [ "$hr" -gt "$r" ]; then
      echo "$file:$line: layer $layer includes \"$header\" of the higher layer $hl"
      bad=1
    fi
  done < "$tmp"
}

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for f in src/*/*.c src/*/*.h; do
  [ -e "$f" ] || continue
  layer=${f#src/}
  check_file "$f" "${layer%%/*}"
done
for f in include/dalign/*.h; do
  [ -e "$f" ] || continue
  layer=${f#include/dalign/}
  check_file "$f" "${layer%.h}"
done

if [ $bad -ne 0 ]; then
  echo "check-layers: FAILED: a file includes a header of a higher layer (order: $LAYERS)."
  echo "  Move the code or the declaration down to the layer that owns it (docs/architecture.md)."
  exit 1
fi
echo "check-layers: ok (every include of src/ and include/dalign/ is of its own or a lower layer)"
