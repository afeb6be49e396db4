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

# a key name of terminal escapes and invalid UTF-8 is printed escaped, never raw
{ printf 'GGUF\003\000\000\000'; printf '\000\000\000\000\000\000\000\000'; printf '\001\000\000\000\000\000\000\000'
  printf '\010\000\000\000\000\000\000\000'; printf '\033[2Jbad\377'; printf '\143\000\000\000'; } > "$T/esc.gguf"
expect_fail "a key of escape bytes" "$LV" info -m "$T/esc.gguf"
grep -q "'\\\\x1b\[2Jbad\\\\xff'" "$T/err" || fail "the key is escaped: $(cat -v "$T/err")"
LC_ALL=C grep -q "$(printf '\033')" "$T/err" && fail "a raw ESC reached the terminal: $(cat -v "$T/err")"
true
