#!/usr/bin/env bash
# Installs the Debian 12 packages longview needs to build and test (idempotent: does nothing when
# they are present). Uses sudo when not run as root. See docs/dependencies.md for why each is used.
# When another apt or dpkg (unattended-upgrades, a second install) holds the package lock, it
# waits for it (apt's DPkg::Lock::Timeout, and retries for up to 20 minutes) instead of failing.
set -euo pipefail
pkgs=(build-essential pkg-config clang libclang-rt-14-dev
      libavformat-dev libavcodec-dev libswscale-dev libavutil-dev ffmpeg
      libpcre2-dev libjansson-dev libmicrohttpd-dev libsimde-dev haproxy)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
pause=${LV_APT_RETRY_SLEEP:-10}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# apt-get with the lock's wait: apt itself waits DPkg::Lock::Timeout seconds for the dpkg lock; a
# lock it does not wait for (the lists lock of `update`) is retried here
apt_get() {
  local waited=0 rc
  while :; do
    rc=0
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 "$@" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] && return 0
    if grep -qE "Could not get lock|Unable to lock|Unable to acquire the dpkg frontend lock" "$log" && [ "$waited" -lt 1200 ]; then
      echo "install-deps: another apt or dpkg holds the package lock; waiting (${waited} s so far)" >&2
      sleep "$pause"
      waited=$((waited + pause))
      continue
    fi
    return "$rc"
  done
}

echo "install-deps: installing ${missing[*]}"
apt_get update -qq
apt_get install -y -qq --no-install-recommends "${missing[@]}"
