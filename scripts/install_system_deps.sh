#!/usr/bin/env bash
# Debian packages the project needs, by purpose: `test` (CI) or `bench` (anchors for benchmarks).
# Runs apt-get only for what is missing, and only as root (CI); otherwise says what to install.
set -euo pipefail
purpose="${1:-test}"
case "$purpose" in
  test)  pkgs=(gcc make python3-venv redis-server xmlsec1 postgresql haproxy pebble golang-go golang-golang-x-mod-dev nginx ccache gzip) ;;
  bench) pkgs=(gcc make zstd bsdiff xdelta3 nginx ccache libdeflate-tools p7zip-full pigz) ;;
  fuzz)  pkgs=(clang zlib1g-dev) ;;
  *) echo "usage: $0 [test|bench|fuzz]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
else
  echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
