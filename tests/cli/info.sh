# longview info and the top-level dispatcher
. "$(dirname "$0")/_lib.sh"
expect_ok "help" "$LV" --help
grep -q "info" "$T/out" || fail "--help does not list info"
expect_fail "unknown command" "$LV" frobnicate
expect_fail "info without -m" "$LV" info
expect_fail "info on a missing file" "$LV" info -m "$T/does-not-exist.gguf"
printf 'NOTGGUF....' > "$T/bad.gguf"
expect_fail "info on a non-GGUF file" "$LV" info -m "$T/bad.gguf"
grep -q "not a GGUF file" "$T/err" || fail "bad magic not named"
