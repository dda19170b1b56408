#!/bin/sh
# Install the Debian packages named on the command line that are missing.
# Needs root (or sudo) only when something is actually missing.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "dalign: installing missing packages:$missing"
if [ "$(id -u)" -eq 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing && exit 0
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing && exit 0
else
  echo "dalign: missing packages:$missing" >&2
  echo "dalign: not root and no passwordless sudo; please run:" >&2
  echo "    sudo apt-get install$missing" >&2
  exit 1
fi
echo "dalign: apt-get failed to install:$missing" >&2
exit 1
