#!/usr/bin/env bash
# Step cost of training from a label cache against plain training (issue
# 14: target <= 1.1x): N alternating pairs of the same run, plain
# (launch/configs/student.ini) then from the cache (distill.ini with
# distill.labels_dir, no teacher ranks), each STEPS steps on one thread;
# prints the CPU seconds (user + sys, /usr/bin/time) of each run and the
# ratio of the sums. Ratios of alternating pairs, not absolute times, are
# what holds on a shared machine.
#
#   bash tests/bench/bench_label_cache.sh RETORT QS_DIR LABELS_DIR [STEPS] [N]
#
# LABELS_DIR: a cache written by `retort label --config launch/configs/
# distill.ini` for the same data, seed, batch and at least STEPS steps;
# QS_DIR/data holds the quickstart data (`launch/quickstart.sh prepare`).
# The teacher named in the cache must be given as TEACHER=path when the
# scheme needs it (labels = hidden); other settings come from BENCH_SETS
# (extra --set arguments, e.g. "distill.labels=hidden").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
R=$1 QS=$2 LAB=$3 steps=${4:-100} n=${5:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(--set "data.train=$QS/data/train.h5" --set "data.val=$QS/data/val.h5"
        --set "data.tokenizer=$QS/data/" --set "train.steps=$steps" --set train.eval_every=0
        --set "train.checkpoint_every=$steps")
extra=()
for s in ${BENCH_SETS:-}; do extra+=(--set "$s"); done
cpu() { # label, then the command: prints "label seconds"
  local l=$1
  shift
  rm -rf "$out/run"
  OMP_NUM_THREADS=1 /usr/bin/time -f "%U %S" -o "$out/t" "$@" --set "train.run_dir=$out/run" \
    >/dev/null 2>"$out/log" || { tail -3 "$out/log"; exit 1; }
  awk -v l="$l" '{ printf "%s %.2f\n", l, $1 + $2 }' "$out/t"
}
for i in $(seq "$n"); do
  cpu plain "$R" train --config "$root/launch/configs/student.ini" "${common[@]}"
  cpu cache "$R" train --config "$root/launch/configs/distill.ini" "${common[@]}" "${extra[@]}" \
    --set distill.teachers=0 --set "distill.teacher=${TEACHER:-}" --set "distill.labels_dir=$LAB"
done | tee "$out/pairs"
awk '{ s[$1] += $2 } END { printf "cache / plain CPU time: %.3f (%.1f s / %.1f s)\n", s["cache"] / s["plain"], s["cache"], s["plain"] }' "$out/pairs"
