#!/usr/bin/env bash
# After `make install DESTDIR=ROOT PREFIX=PREFIX` (make install-check does both): the installed
# files, the shared library's SONAME and exports, and the README's library example built as the
# README says (pkg-config, shared and static) and run on a shipped model.
# Usage: tests/install_test.sh ROOT PREFIX BUILD_DIR
set -euo pipefail
root=${1:?root}; prefix=${2:?prefix}; build=${3:?build dir}
cd "$(dirname "$0")/.."
fail() { echo "install-check: FAIL: $*" >&2; exit 1; }
ok() { echo "install-check: ok: $*"; }
lib=$root$prefix/lib
for f in bin/longview include/longview.h lib/liblongview.a lib/liblongview.so lib/pkgconfig/longview.pc lib/pkgconfig/longview-static.pc; do
  [ -e "$root$prefix/$f" ] || fail "$prefix/$f not installed"
done
"$root$prefix/bin/longview" version >/dev/null || fail "the installed longview runs"
ok "files under $prefix"

soname=$(readelf -d "$lib/liblongview.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = liblongview.so.0 ] || fail "SONAME is '$soname'"
[ -e "$lib/$soname" ] || fail "$soname link missing"
cc -E -P -Iinclude include/longview.h | grep -oE '\blv_[a-z0-9_]+ *\(' | sed 's/ *(//' | sort -u > "$build/tmp/api.txt"
nm -D --defined-only "$lib/liblongview.so" | awk '$2 == "T" { print $3 }' | sed 's/@.*//' | sort -u > "$build/tmp/exports.txt"
diff "$build/tmp/api.txt" "$build/tmp/exports.txt" > "$build/tmp/exports.diff" ||
  fail "the exports differ from longview.h's functions (< header only, > library only): $(head -20 "$build/tmp/exports.diff")"
ok "SONAME $soname, exports = the $(wc -l < "$build/tmp/api.txt") functions of longview.h"

# the README's example and build lines, as written
work=$build/tmp/install-app
rm -rf "$work"; mkdir -p "$work"
awk '/^Library: `make install`/ { on = 1 } on && /^```c$/ { c = 1; next } c && /^```$/ { exit } c { print }' README.md > "$work/app.c"
[ -s "$work/app.c" ] || fail "no C example found in README.md's Library section"
grep '^cc app.c' README.md | sed 's/ *#.*$//' > "$work/build-lines"
[ "$(wc -l < "$work/build-lines")" = 2 ] || fail "README.md shows two cc lines (shared, static): $(cat "$work/build-lines")"
export PKG_CONFIG_PATH="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root"
model=$PWD/models/retrieval-long-bytes.gguf
n=0
while read -r line; do
  n=$((n + 1))
  (cd "$work" && rm -f app && eval "$line") || fail "README line $n does not build: $line"
  if [ $n = 1 ]; then
    # the loader's own trace (what ldd prints, without needing ldd), captured before grep: a
    # `ldd | grep -q` pipeline under pipefail fails when grep exits early and ldd dies of SIGPIPE
    deps=$(LD_LIBRARY_PATH=$lib LD_TRACE_LOADED_OBJECTS=1 "$work/app") || fail "tracing $work/app's libraries"
    grep -q "liblongview.so.0 => $lib/" <<< "$deps" || fail "the shared build links $lib/liblongview.so.0: $deps"
  else
    deps=$(LD_TRACE_LOADED_OBJECTS=1 "$work/app") || fail "tracing $work/app's libraries"
    grep -q liblongview <<< "$deps" && fail "the static build still needs liblongview.so: $deps"
  fi
  out=$(cd "$work" && LD_LIBRARY_PATH=$lib ./app "$model") || fail "the example (build $n) fails: $out"
  case "$out" in "The best thing to do in San Francisco is"?*) ;; *) fail "the example (build $n) printed '$out'" ;; esac
  ok "README build line $n: $line"
done < "$work/build-lines"
(cd "$work" && cc -std=c11 -Wall -Wextra -Werror -c app.c $(pkg-config --cflags longview) -o /dev/null) || fail "the example has warnings"
out=$(cd "$work" && LD_LIBRARY_PATH=$lib ./app "$work/missing.gguf" 2>&1) && fail "a missing model is an error"
echo "$out" | grep -q "missing.gguf" || fail "the error names the file: $out"
ok "the README's example: builds clean, runs, reports a missing model"
