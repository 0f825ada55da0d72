#!/usr/bin/env bash
# Runs retort's whole test suite: setup (packages + build), then ctest.
# This is exactly what CI runs (.ci/run).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RETORT_TEST_PKGS=1 bash "$root/launch/setup.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# idle OpenMP threads must not spin: tests run side by side on few cores
export OMP_WAIT_POLICY=PASSIVE
cd "${RETORT_BUILD:-$root/build}"
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" "$@"
