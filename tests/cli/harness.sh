# The test harness itself (lv_test, beside the longview binary): the library's warnings on stderr
# land between whole lines of a test's output, never inside one (gen-model warns while the golden
# test prints its rows), and -j runs tests in parallel processes with every test reported once.
. "$(dirname "$0")/_lib.sh"
LT="$(dirname "$LV")/lv_test"
[ -x "$LT" ] || { echo "skip: no lv_test beside $LV"; exit 0; }
if [ -d "$SHARED" ]; then
  LV_TEST_TMPDIR="$T" LV_TEST_QUICK=1 "$LT" golden_qwen2-q4_k_m-fallback 2>&1 | cat > "$T/h.log" || fail "golden test: $(tail "$T/h.log")"
  grep -q "longview warning: gen-model" "$T/h.log" || fail "the golden model's generation warns: $(head "$T/h.log")"
  grep -q ".longview warning" "$T/h.log" && fail "a warning inside a line: $(grep ".longview warning" "$T/h.log" | head -2)"
  echo "ok: warnings between whole lines"
fi
LV_TEST_TMPDIR="$T" "$LT" -j 2 errors_and_status error_and_log allocation_fault > "$T/j.log" 2>&1 || fail "-j 2: $(cat "$T/j.log")"
grep -q "3 passed, 0 failed" "$T/j.log" || fail "three tests, each once: $(cat "$T/j.log")"
[ "$(grep -c '^ok ' "$T/j.log")" = 3 ] || fail "three result lines: $(cat "$T/j.log")"
echo "ok: lv_test -j 2"
