#!/bin/sh
# Install the Debian packages named on the command line that are missing.
# A name may carry a foreign architecture (libopenblas-dev:arm64, for a cross
# build): that architecture is added to dpkg first (dpkg --add-architecture),
# so apt-get update fetches its package lists.
# Needs root (or sudo) only when something is actually missing.
missing=""
archs=""
native=$(dpkg --print-architecture 2>/dev/null)
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
  missing="$missing $p"
  case $p in
    *:*) a=${p##*:}
         [ "$a" = "$native" ] || [ "$a" = all ] || dpkg --print-foreign-architectures | grep -qx "$a" ||
           case " $archs " in *" $a "*) ;; *) archs="$archs $a" ;; esac ;;
  esac
done
[ -z "$missing" ] && exit 0
echo "dalign: installing missing packages:$missing"
if [ "$(id -u)" -eq 0 ]; then
  as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root="sudo"
else
  echo "dalign: missing packages:$missing" >&2
  echo "dalign: not root and no passwordless sudo; please run:" >&2
  for a in $archs; do echo "    sudo dpkg --add-architecture $a" >&2; done
  [ -n "$archs" ] && echo "    sudo apt-get update" >&2
  echo "    sudo apt-get install$missing" >&2
  exit 1
fi
for a in $archs; do
  echo "dalign: adding the package architecture $a (dpkg --add-architecture $a)"
  $as_root dpkg --add-architecture "$a" || { echo "dalign: dpkg --add-architecture $a failed" >&2; exit 1; }
done
$as_root apt-get update -qq && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing && exit 0
echo "dalign: apt-get failed to install:$missing" >&2
exit 1
