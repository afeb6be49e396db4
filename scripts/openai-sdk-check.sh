#!/usr/bin/env bash
# `longview serve` through the official OpenAI SDK (issue 21, docs/server.md): installs the `openai`
# npm package at a pinned version into the git-ignored .oracle/openai (network once; nothing of it is
# committed), starts a server on a small random model with an API key, and runs
# oracle/openai_sdk_check.mjs: models, chat and completions streamed and not (the deltas equal to the
# whole answer, include_usage), logprobs, n, stop, a stream the client abandons, errors as the SDK's
# classes (401, 400). Not part of `make test` (it needs the package); run after `make`:
#   scripts/openai-sdk-check.sh [LONGVIEW_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
ORA=${LV_ORACLE_DIR:-$PWD/.oracle}
SDK_VERSION=4.104.0
BIN=${1:-build/release/longview}
[ -x "$BIN" ] || { echo "build longview first (make)" >&2; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null || { echo "needs node and npm (apt-get install nodejs npm)" >&2; exit 1; }
if [ "$(node -p "require('$ORA/openai/node_modules/openai/package.json').version" 2>/dev/null)" != "$SDK_VERSION" ]; then
  mkdir -p "$ORA/openai"
  (cd "$ORA/openai" && [ -f package.json ] || echo '{"private":true}' > package.json; npm i -E "openai@$SDK_VERSION" --no-audit --no-fund >&2)
fi
D=$(mktemp -d)
. tests/cli/_lib.sh "$BIN" "$D"
trap 'for p in "${servers[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf -- "$D"' EXIT
expect_ok "gen-model" "$LV" gen-model --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 96 --std 0.08 --vocab builtin:bytes --seed 5 -o "$T/m.gguf"
serve_start sdk -m "$T/m.gguf" -np 2 -c 2048 -b 64 -t 2 --api-key sdk-secret --alias tiny
# ES modules resolve `openai` from the importing file's folder: run a copy beside the package
cp oracle/openai_sdk_check.mjs "$ORA/openai/check.mjs"
node "$ORA/openai/check.mjs" "$(cat "$T/sdk.addr")" sdk-secret tiny || fail "the OpenAI SDK check failed (server log: $T/sdk.err)"
serve_stop sdk "$pid"
