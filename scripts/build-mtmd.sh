#!/usr/bin/env bash
# Builds llama.cpp's libmtmd (the multimodal library: tools/mtmd core + its vision/audio graphs) out of
# tree from the pinned llama.cpp v0.4.0 source that scripts/oracle-setup.sh fetched (node-llama-cpp
# 3.21.1's bundle), as ../shared/VISION.md §4.2 describes: g++ -O2 -fPIC, the 48 translation units
# tools/mtmd/{mtmd,clip,mtmd-image,mtmd-audio}.cpp + tools/mtmd/models/*.cpp (no mtmd-helper: stb,
# miniaudio, subprocess are not needed), linked -shared against the npm libllama/libggml/libggml-base.
# The npm prebuilt libraries have no mtmd_* symbol, hence this. Then builds our oracle program
# oracle/lv_mtmd.c against it. libmtmd lands in .oracle/mtmd (git-ignored, shared by the worktrees:
# it only depends on the pinned source); lv_mtmd in this checkout's build/oracle/ (it depends on this
# checkout's oracle/lv_mtmd.c). Nothing built here is committed. Idempotent: objects are rebuilt only
# when missing or older than the source, and .oracle/mtmd/env is only written when it changes.
#   scripts/build-mtmd.sh [-jN]      prints the path of lv_mtmd
set -euo pipefail
cd "$(dirname "$0")/.."
ORA=${LV_ORACLE_DIR:-$PWD/.oracle}
JOBS=${1:--j2}; JOBS=${JOBS#-j}
[ -f "$ORA/src/include/llama.h" ] || scripts/oracle-setup.sh >/dev/null
SRC="$ORA/src"
LIBDIR="$ORA/npm/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
OUT="$ORA/mtmd"
mkdir -p "$OUT/obj"
CXXFLAGS="-O2 -fPIC -std=c++17 -DLLAMA_SHARED -DLLAMA_BUILD -I$SRC/include -I$SRC/ggml/include -I$SRC/tools/mtmd"
srcs=("$SRC"/tools/mtmd/{mtmd,clip,mtmd-image,mtmd-audio}.cpp "$SRC"/tools/mtmd/models/*.cpp)
objs=()
todo=()
for s in "${srcs[@]}"; do
  rel=${s#"$SRC"/tools/mtmd/}
  o="$OUT/obj/${rel//\//_}.o"
  objs+=("$o")
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ]; then todo+=("$s|$o"); fi
done
if [ ${#todo[@]} -gt 0 ]; then
  echo "build-mtmd: compiling ${#todo[@]} of ${#srcs[@]} sources with -j$JOBS" >&2
  printf '%s\n' "${todo[@]}" | xargs -P "$JOBS" -I{} sh -c 'src=${1%%|*}; obj=${1#*|}; g++ '"$CXXFLAGS"' -c "$src" -o "$obj.tmp" && mv "$obj.tmp" "$obj"' _ {}
fi
LIB="$OUT/libmtmd.so"
need_link=0
[ -f "$LIB" ] || need_link=1
for o in "${objs[@]}"; do [ "$o" -nt "$LIB" ] && need_link=1; done
if [ $need_link = 1 ]; then
  g++ -shared -o "$LIB.tmp" "${objs[@]}" -L"$LIBDIR" -l:libllama.v0.4.0.so -l:libggml.v0.4.0.so -l:libggml-base.so \
      -Wl,-rpath,"$LIBDIR" -Wl,-soname,libmtmd.so -Wl,--no-undefined
  mv "$LIB.tmp" "$LIB"
fi
BIN="$PWD/build/oracle"
mkdir -p "$BIN"
if [ ! -f "$BIN/lv_mtmd" ] || [ oracle/lv_mtmd.c -nt "$BIN/lv_mtmd" ] || [ "$LIB" -nt "$BIN/lv_mtmd" ]; then
  cc -O2 -std=c11 -Wall -Wextra -I"$SRC/include" -I"$SRC/ggml/include" -I"$SRC/tools/mtmd" oracle/lv_mtmd.c -o "$BIN/lv_mtmd.tmp" \
     -L"$OUT" -lmtmd -L"$LIBDIR" -l:libllama.v0.4.0.so -l:libggml.v0.4.0.so -l:libggml-base.so \
     -Wl,-rpath,"$OUT" -Wl,-rpath,"$LIBDIR" -lm
  mv "$BIN/lv_mtmd.tmp" "$BIN/lv_mtmd"
fi
[ "$(cat "$OUT/env" 2>/dev/null)" = "LV_ORACLE_LIBDIR=$LIBDIR" ] || echo "LV_ORACLE_LIBDIR=$LIBDIR" > "$OUT/env"
echo "$BIN/lv_mtmd"
