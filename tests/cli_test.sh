#!/usr/bin/env bash
# Runs every command-line test script in tests/cli/*.sh against one longview binary.
# Usage: tests/cli_test.sh path/to/longview
# Each script gets the binary as $1 and a scratch directory as $2, prints what it checks, and
# exits non-zero on the first failure. The closing line counts the scripts.
set -u
bin=${1:?usage: cli_test.sh path/to/longview}
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
tmp=${LV_TEST_TMPDIR:-build/tmp}/cli
mkdir -p "$tmp"
passed=0; failed=0
for t in tests/cli/[!_]*.sh; do
  [ -e "$t" ] || continue
  name=$(basename "$t" .sh)
  mkdir -p "$tmp/$name"
  if bash "$t" "$bin" "$tmp/$name" >"$tmp/$name.log" 2>&1; then
    echo "ok   cli/$name"; passed=$((passed+1))
  else
    echo "FAIL cli/$name (log follows)"; sed 's/^/    /' "$tmp/$name.log" | tail -40; failed=$((failed+1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
