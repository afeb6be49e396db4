#!/usr/bin/env bash
# Builds llama.cpp's llama-bench and llama-quantize (the speed baseline of bench/compare.sh and
# bench/longctx.sh, and the quantizer whose files must load) and llama-server (the serving baseline
# of bench/serve/run.sh; its web UI left out) from the source of the pinned release
# that scripts/oracle-setup.sh fetched (node-llama-cpp 3.21.1 = llama.cpp v0.4.0), as
# ../shared/BENCHMARKS.md describes: CPU, -march=native, OpenMP. Everything lands in .oracle/build
# (git-ignored); nothing built here is committed. Prints the three paths.
#   scripts/build-llama-tools.sh      then  LLAMA_BENCH=.oracle/build/bin/llama-bench bench/compare.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
ORA=${LV_ORACLE_DIR:-$PWD/.oracle}
# the real path: a worktree whose .oracle is a symbolic link to another checkout's must configure the
# shared build with the same paths, or CMake sees a new source tree and rebuilds all of it
[ -d "$ORA" ] && ORA=$(cd "$ORA" && pwd -P)
[ -f "$ORA/src/CMakeLists.txt" ] || scripts/oracle-setup.sh >/dev/null
command -v cmake >/dev/null || { echo "build-llama-tools: cmake is needed (apt-get install cmake g++)" >&2; exit 1; }
cmake -S "$ORA/src" -B "$ORA/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build "$ORA/build" --target llama-bench llama-quantize llama-server -j"$(nproc)" >/dev/null
echo "$ORA/build/bin/llama-bench"
echo "$ORA/build/bin/llama-quantize"
echo "$ORA/build/bin/llama-server"
