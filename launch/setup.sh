#!/usr/bin/env bash
# Installs the Debian packages retort needs (only those missing), then
# configures and builds into build/ (or $RETORT_BUILD). Idempotent: a second
# run with everything in place costs a dpkg query and an incremental make.
#
#   bash launch/setup.sh            # Release build
#   RETORT_SANITIZE=ON bash launch/setup.sh   # ASan + UBSan build
#   RETORT_TEST_PKGS=1 bash launch/setup.sh   # also the test-only packages (Slurm)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${RETORT_BUILD:-$root/build}

pkgs=(build-essential cmake pkg-config openmpi-bin libopenmpi-dev libdnnl-dev
      libhdf5-dev hdf5-tools libzstd-dev libcunit1-dev libpcre2-dev
      libjansson-dev libinih-dev fortunes fortunes-min
      clang-14 libclang-rt-14-dev libomp-14-dev)  # the last three: libFuzzer harnesses (tests/fuzz)
# launch/test.sh also wants a real Slurm for tests/slurm.sh (it starts its
# own munge, slurmctld and slurmd from a temporary configuration)
[ "${RETORT_TEST_PKGS:-0}" = 1 ] && pkgs+=(slurm-wlm munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# node + npm run the npm packages some tests use as outside references
# (tests/npm_cache.sh): Debian's, only when the machine has none.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

mkdir -p "$build"
jobs=$(nproc 2>/dev/null || echo 2)
if [ ! -f "$build/Makefile" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
        -DRETORT_SANITIZE="${RETORT_SANITIZE:-OFF}" >"$build/configure.log" 2>&1 || {
    cat "$build/configure.log" >&2
    echo "setup: cmake configure failed" >&2
    exit 1
  }
fi
echo "setup: building in $build (log: $build/build.log)"
if ! cmake --build "$build" -j "$jobs" >"$build/build.log" 2>&1; then
  grep -E 'error|Error' "$build/build.log" | head -40 >&2 || tail -40 "$build/build.log" >&2
  echo "setup: build failed; see $build/build.log" >&2
  exit 1
fi
echo "setup: built $build/trainer/retort"
