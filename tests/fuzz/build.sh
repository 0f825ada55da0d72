#!/usr/bin/env bash
# Configures and builds the libFuzzer harnesses (tests/fuzz/fuzz_*.c) into
# their own build folder with clang-14: every retort library instrumented
# for coverage + ASan + UBSan (-DRETORT_FUZZ=ON).
#   bash tests/fuzz/build.sh [BUILD_DIR]     (default: build/fuzz)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$root/build/fuzz}
cc=${RETORT_FUZZ_CC:-clang-14}
command -v "$cc" >/dev/null || { echo "fuzz: $cc not found (bash launch/setup.sh installs it)" >&2; exit 1; }
mkdir -p "$out"
if [ ! -f "$out/Makefile" ]; then
  CC=$cc cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRETORT_FUZZ=ON \
      -DRETORT_NATIVE=OFF >"$out/configure.log" 2>&1 || {
    cat "$out/configure.log" >&2; echo "fuzz: configure failed" >&2; exit 1; }
fi
jobs=$(nproc 2>/dev/null || echo 2)
if ! cmake --build "$out" --target fuzz_all -j "$jobs" >"$out/build.log" 2>&1; then
  grep -E 'error|Error' "$out/build.log" | head -40 >&2 || tail -40 "$out/build.log" >&2
  echo "fuzz: build failed; see $out/build.log" >&2; exit 1
fi
echo "fuzz: built $(ls "$out"/tests/fuzz/fuzz_* | grep -v '\.' | xargs -n1 basename | tr '\n' ' ')in $out"
