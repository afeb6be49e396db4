# Helpers for tests/cli/*.sh (sourced; files starting with _ are not tests). $LV is the binary, $T the scratch directory.
LV=${1:?binary}; T=${2:?tmpdir}
# $T made absolute and created here: the scripts build paths from it and delete under them, so a
# missing or relative $T must never turn into a path outside it (a `cd` that failed once made a
# script's "$T/.." work folder resolve to /work and delete it)
mkdir -p -- "$T" && T=$(cd -- "$T" && pwd -P) && [ -n "$T" ] && [ "$T" != / ] || { echo "FAIL: scratch directory $2 is not usable" >&2; exit 1; }
SHARED=${LV_SHARED_DATA:-../shared/data}
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_fail "description" cmd... : the command must exit non-zero and print an error on stderr
# seconds since t0 (set by each helper), for the log
_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
expect_fail() {
  local what=$1 t0; shift
  t0=$(date +%s.%N)
  if "$@" >"$T/out" 2>"$T/err"; then fail "$what: expected failure, got success"; fi
  grep -qi "error" "$T/err" || fail "$what: no error message on stderr: $(cat "$T/err")"
  echo "ok: $what ($(_since "$t0") s) -> $(head -c 200 "$T/err" | tr '\n' ' ')"
}
expect_ok() {
  local what=$1 t0; shift
  t0=$(date +%s.%N)
  "$@" >"$T/out" 2>"$T/err" || fail "$what: exit $?: $(cat "$T/err")"
  echo "ok: $what ($(_since "$t0") s)"
}
