#!/usr/bin/env bash
# Installs the Debian 12 packages longview needs to build and test (idempotent: does nothing when
# they are present). Uses sudo when not run as root. See docs/dependencies.md for why each is used.
set -euo pipefail
pkgs=(build-essential pkg-config clang libclang-rt-14-dev
      libavformat-dev libavcodec-dev libswscale-dev libavutil-dev ffmpeg
      libpcre2-dev libjansson-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
