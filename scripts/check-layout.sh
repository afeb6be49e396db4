#!/usr/bin/env bash
# Checks that the source tree keeps the shape docs/architecture.md describes, and prints its
# dependency graphs. Run by `make check` (after the build it reads); exits 1 on any violation.
#
#   scripts/check-layout.sh [BUILD_DIR]     (default build/release)
#
# What it checks:
#  - every folder src/X/ has its header src/X/X.h, whose opening comment says what the folder
#    owns ("Owns:") and what it never does ("Never:"), and docs/architecture.md names it;
#  - no cycle between folders, neither in the #include "X/..." lines of src/ (the include graph)
#    nor in which folder's objects call which (the link graph, from the symbols each object in
#    BUILD_DIR/src defines and uses);
#  - no cycle between the library's files in the link graph either (inside a folder, a dispatcher
#    may call its SIMD kernels, but those never call back into it: shared helpers live on the
#    side both use).
# It prints each graph, edges grouped by folder, and the folders in dependency order.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
fail=0
err() { echo "check-layout: $*" >&2; fail=1; }

folders=$(cd src && ls -d */ | tr -d /)

# ---- each folder: its header with the contract, and its place in docs/architecture.md ----
for f in $folders; do
  h=src/$f/$f.h
  if [ ! -f "$h" ]; then
    err "src/$f/ has no header $h saying what the folder owns and never does"
    continue
  fi
  head -40 "$h" | grep "Owns:" >/dev/null || err "$h: the opening comment has no 'Owns:' line"
  head -40 "$h" | grep "Never:" >/dev/null || err "$h: the opening comment has no 'Never:' line"
  grep -q "\`src/$f/\`" docs/architecture.md || err "docs/architecture.md does not name \`src/$f/\`"
done
for f in $(grep -o '`src/[a-z_]*/`' docs/architecture.md | sort -u | sed 's|`src/||; s|/`||'); do
  [ -d "src/$f" ] || err "docs/architecture.md names src/$f/, which does not exist"
done

# Print "a b" edges as a graph and check it for cycles. $1: title; stdin: edges (a uses b).
graph() {
  awk -v title="$1" '
    { if ($1 == $2) next; e[$1 SUBSEP $2] = 1; n[$1] = 1; n[$2] = 1 }
    END {
      k = 0
      for (x in n) names[++k] = x
      # sort the names (insertion sort: a few dozen)
      for (i = 2; i <= k; i++) { v = names[i]; j = i - 1; while (j > 0 && names[j] > v) { names[j + 1] = names[j]; j-- } names[j + 1] = v }
      print title
      for (i = 1; i <= k; i++) {
        line = ""
        for (j = 1; j <= k; j++) if ((names[i] SUBSEP names[j]) in e) line = line " " names[j]
        if (line != "") printf "  %-12s ->%s\n", names[i], line
      }
      # transitive closure (Warshall); a node that reaches itself is on a cycle
      for (i = 1; i <= k; i++) for (j = 1; j <= k; j++) r[i, j] = ((names[i] SUBSEP names[j]) in e)
      for (m = 1; m <= k; m++) for (i = 1; i <= k; i++) if (r[i, m]) for (j = 1; j <= k; j++) if (r[m, j]) r[i, j] = 1
      bad = 0
      for (i = 1; i <= k; i++) if (r[i, i]) { if (!bad) printf "  CYCLE through:"; printf " %s", names[i]; bad = 1 }
      if (bad) { print ""; exit 1 }
      # dependency order: repeatedly take what depends on nothing left
      done_n = 0; order = ""
      while (done_n < k) {
        for (i = 1; i <= k; i++) {
          if (taken[i]) continue
          ok = 1
          for (j = 1; j <= k; j++) if (j != i && !taken[j] && r[i, j]) ok = 0
          if (ok) { taken[i] = 1; done_n++; order = order (order == "" ? "" : " < ") names[i] }
        }
      }
      print "  no cycle; in dependency order: " order
    }'
}

# ---- the include graph between folders ----
inc_edges=$(for f in $folders; do
  grep -ho '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[a-z_]*/' src/$f/*.[ch] 2>/dev/null |
    sed 's|.*"||; s|/$||' | sort -u | while read -r to; do
      [ -d "src/$to" ] && echo "$f $to"
    done
done)
echo "$inc_edges" | graph "include graph between the folders of src/ (#include \"folder/...\"):" || err "the include graph has a cycle"

# ---- the link graph, from the objects' symbols ----
if [ ! -d "$build/src" ]; then
  err "no objects in $build/src: build first (make)"
  exit 1
fi
syms=$(cd "$build" && for o in src/*/*.o; do
  nm -g --defined-only "$o" | awk -v o="$o" 'NF == 3 { print "D", o, $3 }'
  nm -u "$o" | awk -v o="$o" '{ print "U", o, $NF }'
done)
file_edges=$(echo "$syms" | awk '
  $1 == "D" { def[$3] = $2; next }
  { use[++n] = $2 " " $3 }
  END { for (i = 1; i <= n; i++) { split(use[i], a, " "); if ((a[2] in def) && def[a[2]] != a[1]) print a[1], def[a[2]] } }' |
  sed 's|src/||g; s|\.o||g' | sort -u)
echo "$file_edges" | awk '{ split($1, a, "/"); split($2, b, "/"); print a[1], b[1] }' | sort -u |
  graph "link graph between the folders of src/ (folder -> folders whose functions it calls, $build):" || err "the link graph between folders has a cycle"
n_files=$(cd "$build" && ls src/*/*.o | wc -l)
n_edges=$(echo "$file_edges" | grep -c . || true)
# the file graph is long: printed whole only when it has a cycle
if files_out=$(echo "$file_edges" | graph "link graph between the library's files ($n_files objects, $n_edges edges):"); then
  echo "link graph between the library's files: $n_files objects, $n_edges edges, no cycle"
else
  echo "$files_out"
  err "the link graph between files has a cycle"
fi
[ $fail -eq 0 ] && echo "check-layout: $(echo $folders | wc -w) folders, each with its header; no cycle between folders or files"
exit $fail
