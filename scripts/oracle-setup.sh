#!/usr/bin/env bash
# Builds our oracle program (oracle/lv_oracle.c) against llama.cpp's public llama.h, using the
# prebuilt llama.cpp libraries of the npm package node-llama-cpp 3.21.1 (llama.cpp release v0.4.0)
# and the headers of the same release (bundled in that package as llama/gitRelease.bundle).
# Everything lands in .oracle/ (git-ignored); nothing from it is ever committed.
# Needs: node/npm (network to the npm registry), git, a C compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
ORA=${LV_ORACLE_DIR:-$PWD/.oracle}
mkdir -p "$ORA"
if [ ! -d "$ORA/npm/node_modules/@node-llama-cpp/linux-x64" ]; then
  mkdir -p "$ORA/npm"
  (cd "$ORA/npm" && [ -f package.json ] || npm init -y >/dev/null)
  # --ignore-scripts: we only want the prebuilt libraries and the bundle, not a build
  (cd "$ORA/npm" && npm i -E --ignore-scripts --no-audit --no-fund node-llama-cpp@3.21.1 >/dev/null)
fi
LIBDIR="$ORA/npm/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
BUNDLE="$ORA/npm/node_modules/node-llama-cpp/llama/gitRelease.bundle"
if [ ! -f "$ORA/src/include/llama.h" ]; then
  rm -rf "$ORA/src"
  git clone -q "$BUNDLE" "$ORA/src" 2>/dev/null
fi
cc -O2 -std=c11 -Wall -I"$ORA/src/include" -I"$ORA/src/ggml/include" oracle/lv_oracle.c -o "$ORA/lv_oracle" \
   -L"$LIBDIR" -l:libllama.v0.4.0.so -l:libggml.v0.4.0.so -l:libggml-base.so -Wl,-rpath,"$LIBDIR" -lm
echo "$ORA/lv_oracle"
echo "LV_ORACLE_LIBDIR=$LIBDIR" > "$ORA/env"
