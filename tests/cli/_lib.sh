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
# longview serve in the background (tests/cli/serve*.sh, lvbench.sh):
# serve_start NAME ARGS... starts `$LV serve --port 0 ARGS...` (a free port), its stdout and stderr
# in $T/NAME.out and $T/NAME.err, waits until it is ready (failing if it exits or is not ready in
# 60 s), writes its address to $T/NAME.addr and leaves its pid in $pid. Whatever is still running
# when the script ends, a failed check included, is killed.
# serve_stop NAME PID: SIGTERM, then it must exit 0 within 40 s and say "stopped".
servers=()
serve_start() {
  local name=$1 i; shift
  "$LV" serve --port 0 "$@" >"$T/$name.out" 2>"$T/$name.err" &
  pid=$!
  servers+=("$pid")
  trap 'for p in "${servers[@]}"; do kill -KILL "$p" 2>/dev/null; done' EXIT
  for i in $(seq 1 1200); do
    grep -q "ready in" "$T/$name.err" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || { cat "$T/$name.err" >&2; fail "$name did not start"; }
    sleep 0.05
  done
  grep -q "ready in" "$T/$name.err" || fail "$name not ready: $(cat "$T/$name.err")"
  grep -o 'http://127.0.0.1:[0-9]*' "$T/$name.err" | head -1 > "$T/$name.addr"
}
serve_stop() {
  local name=$1 pid=$2 i
  kill -TERM "$pid"
  for i in $(seq 1 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; fail "$name did not stop on SIGTERM"; }
  wait "$pid" || fail "$name exited with status $?: $(tail -5 "$T/$name.err")"
  grep -q "stopped" "$T/$name.err" || fail "$name: no 'stopped' line: $(tail -3 "$T/$name.err")"
  echo "ok: $name stopped cleanly on SIGTERM"
}
