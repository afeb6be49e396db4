#!/usr/bin/env bash
# Runs the libFuzzer targets (make fuzz) for a time each, all at once, and prints what each did:
# executions, coverage (edges, features), corpus size, and findings. docs/testing.md records the
# runs. Usage: scripts/fuzz.sh SECONDS [TARGET ...]   (targets: gguf tokenizer video image mmproj serve_request; default all)
# Each target grows its corpus in build/fuzz/corpus-TARGET (seeded from fuzz/corpus/TARGET, never
# committed), logs to build/fuzz/TARGET.log, and writes a finding (crash-*, leak-*, timeout-*,
# oom-*) to build/fuzz/findings-TARGET/. Exits 1 if any target found something.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:?usage: scripts/fuzz.sh SECONDS [TARGET ...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gguf tokenizer video image mmproj serve_request)
make -s fuzz
for t in "${targets[@]}"; do
  [ -x "build/fuzz/fuzz_$t" ] || { echo "fuzz.sh: no build/fuzz/fuzz_$t" >&2; exit 2; }
  mkdir -p "build/fuzz/corpus-$t" "build/fuzz/findings-$t"
  extra=()
  seeds=fuzz/corpus/$t
  case $t in
    gguf) extra=(-dict=fuzz/gguf.dict) ;;
    mmproj) extra=(-dict=fuzz/gguf.dict); seeds=tests/golden/vision ;; # the tiny mmproj files (the other files there are cheap misses)
    serve_request) extra=(-dict=fuzz/serve.dict) ;;
  esac
  ASAN_OPTIONS=detect_leaks=1 nice -n 10 "build/fuzz/fuzz_$t" "${extra[@]}" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="build/fuzz/findings-$t/" "build/fuzz/corpus-$t" "$seeds" \
    > "build/fuzz/$t.log" 2>&1 &
done
wait || true
bad=0
printf '%-10s %8s %12s %8s %8s %8s %6s  %s\n' target seconds executions exec/s edges features corpus findings
for t in "${targets[@]}"; do
  log=build/fuzz/$t.log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1)
  cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
  found=$(ls "build/fuzz/findings-$t" | wc -l)
  grep -qE '^==[0-9]+==ERROR|SUMMARY: (Address|Undefined|Leak)Sanitizer|^ALARM' "$log" && found=$((found > 0 ? found : 1))
  [ "$found" -gt 0 ] && bad=1
  printf '%-10s %8s %12s %8s %8s %8s %6s  %s\n' "$t" "$secs" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
    "$([ "$found" -gt 0 ] && echo "FOUND: build/fuzz/findings-$t/, build/fuzz/$t.log" || echo none)"
done
exit $bad
