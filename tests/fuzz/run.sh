#!/usr/bin/env bash
# Runs one libFuzzer harness for a bounded time on a scratch copy of its
# committed seed corpus (tests/fuzz/corpus/NAME); fails on any crash, leak,
# sanitizer report, timeout or out-of-memory. New interesting inputs stay
# in the scratch folder (printed) unless RT_FUZZ_KEEP names a folder.
#   bash tests/fuzz/run.sh FUZZ_BUILD_DIR NAME [SECONDS] [extra libFuzzer flags]
# SECONDS defaults to $RT_FUZZ_SECONDS or 20.
set -u
build=${1:?usage: run.sh FUZZ_BUILD_DIR NAME [SECONDS]}
name=${2:?usage: run.sh FUZZ_BUILD_DIR NAME [SECONDS]}
secs=${3:-${RT_FUZZ_SECONDS:-20}}
shift $(( $# < 3 ? $# : 3 ))
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$build/tests/fuzz/fuzz_$name
seeds=$here/corpus/$name
[ -x "$bin" ] || { echo "fuzz: $bin is not built (bash tests/fuzz/build.sh $build)"; exit 1; }
[ -d "$seeds" ] || { echo "fuzz: no seed corpus $seeds"; exit 1; }
work=${RT_FUZZ_KEEP:-$(mktemp -d "${TMPDIR:-/tmp}/rt_fuzz_${name}_XXXXXX")}
mkdir -p "$work/corpus" "$work/crashes"
# Fail fast on any sanitizer finding; LeakSanitizer runs after each input.
asan=abort_on_error=1:detect_leaks=1:allocator_may_return_null=1:fast_unwind_on_malloc=0
# HDF5 1.10.8 itself allocates whatever a corrupt object header claims (seen:
# 2.4 GB in H5C_protect under H5Fopen, from a 7.7 KB input): in the harnesses
# whose input goes through HDF5, an allocation above 1 GiB fails (NULL, as on
# a machine without that memory) instead of being reported as an
# out-of-memory of ours. retort's own size checks in those readers are
# covered by hostile.sh and the unit tests; the other harnesses keep
# libFuzzer's malloc limit, which is how claimed-size bugs show up there.
case $name in ckpt|shard) asan=$asan:max_allocation_size_mb=1024 ;; esac
export ASAN_OPTIONS=${ASAN_OPTIONS:-$asan}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1
# A harness's dictionary (tests/fuzz/NAME.dict: keys of a JSON format) is used when there is one.
dict=()
[ -f "$here/$name.dict" ] && dict=(-dict="$here/$name.dict")
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
       -print_final_stats=1 -artifact_prefix="$work/crashes/" "${dict[@]}" "$@" \
       "$work/corpus" "$seeds" >"$work/log" 2>&1
rc=$?
grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done )' "$work/log" | tr '\n' ' '
echo
if [ $rc -ne 0 ] || ls "$work/crashes/"* >/dev/null 2>&1; then
  echo "fuzz_$name FAILED (rc=$rc); last lines of $work/log:"
  grep -vE '^#[0-9]+' "$work/log" | tail -40
  for f in "$work/crashes/"*; do
    [ -f "$f" ] || continue
    echo "reproducer: $f ($(stat -c %s "$f") bytes); replay: $bin $f"
    head -c 256 "$f" | od -A d -t x1 | head -8
  done
  exit 1
fi
echo "fuzz_$name: no crash in ${secs}s"
if [ -n "${RT_FUZZ_KEEP:-}" ]; then echo "corpus kept in $work/corpus"; else rm -rf "$work"; fi
