#!/bin/sh
# The browser check of the report pages (issue 14, item 7): not part of
# make check (it needs Chromium and the shipped weights). It runs two small
# evaluations (the base UNet and unet-dpo), writes the compare page of the
# two and a curves SVG of a training log, renders each page in headless
# Chromium and fails when a screenshot is blank (a page that did not render).
# Look at the screenshots too: a check of pixels cannot tell a good layout.
#
# Usage: sh scripts/check-pages.sh [DALIGN [OUTDIR [LOG.jsonl]]]
#   DALIGN  the binary (default build/default/dalign)
#   OUTDIR  where the runs and the screenshots go (default: a new temp folder)
#   LOG     a trainer's metrics log for `dalign plot` (default: a small
#           made-up log with a trainer's keys, written into OUTDIR)
# Needs: chromium (apt-get install chromium), python3, weights/.
set -eu
dalign=${1:-build/default/dalign}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "check-pages: FAILED: no chromium (apt-get install chromium)"
  exit 1
fi

# two runs with the same prompts and seeds: a page of every prompt, and a
# compare page with both runs' images
"$dalign" eval --prompts heldout --n-prompts 24 --seeds 4 --steps 10 -q -o "$out/base" > /dev/null
"$dalign" eval --prompts heldout --n-prompts 24 --seeds 4 --steps 10 --unet unet-dpo -q -o "$out/dpo" > /dev/null
"$dalign" compare "$out/base" "$out/dpo" --html "$out/compare.html" -q > /dev/null
log=${3:-}
if [ -z "$log" ]; then   # a trainer's shape: every step some keys, some steps more, a null
  log="$out/made-up.metrics.jsonl"
  awk 'BEGIN { for (s = 1; s <= 200; s++) {
      printf "{\"step\":%d,\"loss\":%.5f,\"lr\":%.3g,\"grad_norm\":%.4f", s, 0.7 * exp(-s / 60) + 0.05 * sin(s),
             1e-5 * (s < 20 ? s / 20 : 1), 2 + sin(s / 7)
      if (s % 10 == 0)
        printf ",\"acc\":%.4f,\"margin\":%s", 1 - 0.5 * exp(-s / 50), s == 100 ? "null" : sprintf("%.4f", s / 100)
      print "}" } }' > "$log"
fi
"$dalign" plot "$log" -o "$out/curves.svg" -q
pages="$out/base/index.html $out/compare.html $out/curves.svg"

# a screenshot of each page (tall enough for the charts and the first images),
# and a check that it has more than a handful of colours: a blank or an
# error page has one or two
bad=0
for page in $pages; do
  name=$(basename "$(dirname "$page")")-$(basename "$page" | tr . -)
  png="$out/$name.png"
  rm -f "$png"
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,3000 \
    --screenshot="$png" "file://$(readlink -f "$page")" > /dev/null 2>&1 || true
  colours=$(python3 - "$png" <<'PY'
import struct, sys, zlib
try:
    data = open(sys.argv[1], "rb").read()
except OSError:
    print(0); sys.exit()
pos, idat, w, h, ct = 8, b"", 0, 0, 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, _, ct = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw, bpp = zlib.decompress(idat), {2: 3, 6: 4}.get(ct, 3)
stride, seen, prev = w * bpp, set(), bytearray(w * bpp)
for y in range(0, h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):   # undo the PNG filters
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    prev = line
    if y % 7 == 0:
        for x in range(0, w, 5):
            seen.add(bytes(line[x * bpp:x * bpp + 3]))
print(len(seen))
PY
)
  if [ "$colours" -lt 16 ]; then
    echo "check-pages: FAILED: $png is blank or missing ($colours colours) for $page"
    bad=1
  else
    echo "check-pages: $png ($colours colours)"
  fi
done
[ "$bad" = 0 ] && echo "check-pages: ok (look at the screenshots in $out)"
exit "$bad"
