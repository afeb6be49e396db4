# Every command of the README's "Using it" block, run as written (one line at a time, in a scratch
# checkout layout: models/ here, ../shared beside it, longview on the PATH); each must succeed.
# Release build only: under ASan the same commands are covered by the other scripts, and these
# real shapes take ten times as long there.
. "$(dirname "$0")/_lib.sh"
case "$LV" in */asan/*) echo "skip: the README's commands run in the release build"; exit 0 ;; esac
[ -d "$SHARED" ] || { echo "skip: $SHARED not found (the README's commands read it)"; exit 0; }
repo=$PWD
case "$LV" in /*) ;; *) LV="$repo/$LV" ;; esac
W="$T/work" # $T is absolute and exists (_lib.sh)
rm -rf -- "$W"; mkdir -p "$W/checkout"
ln -s "$(cd "$SHARED/.." && pwd)" "$W/shared"
ln -s "$repo/models" "$W/checkout/models"
ln -s "$repo/tests" "$W/checkout/tests" # the vision lines read tests/golden/vision
mkdir -p "$W/bin"; ln -s "$LV" "$W/bin/longview"
awk '/^## Using it/ { on = 1 } on && /^```sh$/ { c = 1; next } c && /^```$/ { exit } c && !/^#/ && NF { print }' README.md > "$T/cmds"
[ "$(wc -l < "$T/cmds")" -ge 10 ] || fail "the README's command block was not found: $(cat "$T/cmds")"
n=0
while read -r line; do
  n=$((n + 1))
  (cd "$W/checkout" && PATH="$W/bin:$PATH" bash -c "$line") >"$T/out" 2>"$T/err" ||
    fail "README command $n failed: $line: $(tail -5 "$T/err")"
  echo "ok: $line"
done < "$T/cmds"
# what they made
[ -s "$W/checkout/q.gguf" ] && [ -s "$W/checkout/out.f32" ] && [ -s "$W/checkout/heads.tsv" ] && [ -s "$W/checkout/pk.gguf" ] &&
  [ -s "$W/checkout/frames.rgb" ] && [ -s "$W/checkout/img.f32" ] || fail "the README's commands wrote their files: $(ls "$W/checkout")"
