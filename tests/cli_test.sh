#!/usr/bin/env bash
# Runs every command-line test script in tests/cli/*.sh against one longview binary.
# Usage: tests/cli_test.sh path/to/longview     (LV_TEST_JOBS=N: scripts at once, default 1)
# Each script gets the binary as $1 and a scratch directory as $2, prints what it checks, and
# exits non-zero on the first failure. A script's line (and the end of its log when it fails) is
# printed when it finishes, with its time; the closing line counts the scripts.
set -u
bin=${1:?usage: cli_test.sh path/to/longview}
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
tmp=${LV_TEST_TMPDIR:-build/tmp}/cli
jobs=${LV_TEST_JOBS:-1}
mkdir -p "$tmp"
run_one() { # name script: run it, then print its result under the lock
  local name=$1 t=$2 t0 rc
  t0=$(date +%s.%N)
  mkdir -p "$tmp/$name"
  bash "$t" "$bin" "$tmp/$name" >"$tmp/$name.log" 2>&1
  rc=$?
  local dt; dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  {
    flock 9
    if [ $rc -eq 0 ]; then
      echo "ok   cli/$name (${dt} s)"
    else
      echo "FAIL cli/$name (${dt} s; log follows)"; sed 's/^/    /' "$tmp/$name.log" | tail -40
    fi
  } 9>"$tmp/.print-lock"
  echo $rc > "$tmp/$name.rc"
}
# the longest scripts first, so that with several jobs none is left running alone at the end
slow=(models train demo outputs engine eval)
scripts=()
for n in "${slow[@]}"; do [ -e "tests/cli/$n.sh" ] && scripts+=("tests/cli/$n.sh"); done
for t in tests/cli/[!_]*.sh; do
  case " ${slow[*]} " in *" $(basename "$t" .sh) "*) ;; *) scripts+=("$t") ;; esac
done
names=()
for t in "${scripts[@]}"; do
  [ -e "$t" ] || continue
  name=$(basename "$t" .sh)
  names+=("$name")
  rm -f "$tmp/$name.rc"
  if [ "$jobs" -gt 1 ]; then
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    run_one "$name" "$t" &
  else
    run_one "$name" "$t"
  fi
done
wait
passed=0; failed=0
for name in "${names[@]}"; do
  if [ "$(cat "$tmp/$name.rc" 2>/dev/null)" = 0 ]; then passed=$((passed+1)); else failed=$((failed+1)); fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
