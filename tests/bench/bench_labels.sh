#!/usr/bin/env bash
# Soft-label schemes side by side (issue 14): the quickstart student
# distilled from the quickstart teacher with each scheme, same steps, same
# tokens, only distill.* (or train.seed) changed, plus the student trained
# from scratch. For each row: val perplexity and ECE (`retort eval` on
# val.h5), the gain over scratch, the label bytes per token on the wire
# (zstd) and raw, against the dense f32 figure (4 * vocab).
#
#   bash tests/bench/bench_labels.sh [RETORT] [QS_DIR] [STEPS] [ROWS]
#
# Rows hidden*: the teacher's final hidden states (int8 or bf16) instead of
# label entries; the student rank rebuilds the dense teacher logits (its
# extra cost per step: bench_label_cache.sh with a hidden-state cache, or
# the tok/s of cache-hidden against cache-sample128).
#
# A row named cache-* first writes its labels with `retort label` (1 rank),
# reporting the cache's size and the label tokens/s, then trains from the
# cache with no teacher rank: its tokens/s against the scratch row's is the
# step-time cost of distilling from a cache.
#
# Needs QS_DIR/{data,teacher} (`bash launch/quickstart.sh prepare teacher`).
# STEPS (default 600, the quickstart's) is every run's length. ROWS picks
# rows by name (space-separated, run in the table's order; default: all);
# each row is NAME:SEED:ALPHA:distill settings (comma-separated). Set
# BENCH_OUT=DIR to keep the runs (and skip rows already finished there).
# Prints a markdown table as the rows finish, then one JSON line per row.
# Every run uses 1 teacher rank + 1 student rank (scratch: 1 rank) and
# OMP_NUM_THREADS=${BENCH_THREADS:-1} per rank.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
R=${1:-$root/build/trainer/retort}
QS=${2:-$root/quickstart}
steps=${3:-600}
want=${4:-}
threads=${BENCH_THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=${BENCH_OUT:-$(mktemp -d)}
[ -n "${BENCH_OUT:-}" ] || trap 'rm -rf "$out"' EXIT
mkdir -p "$out"

rows=(
  "scratch:2:0:"
  "topk64:2:0.5:labels=topk,topk=64"
  "dense:2:0.5:labels=topk,topk=4096"
  "sample32:2:0.5:labels=sample,samples=32"
  "sample128:2:0.5:labels=sample,samples=128"
  "topk8+sample24:2:0.5:labels=topk+sample,topk=8,samples=24"
  "topk16+sample112:2:0.5:labels=topk+sample,topk=16,samples=112"
  "sample128-s3:3:0.5:labels=sample,samples=128"
  "hidden:2:0.5:labels=hidden"
  "hidden-s3:3:0.5:labels=hidden"
  "hidden-bf16:2:0.5:labels=hidden,hidden=bf16"
  "cache-hidden:2:0.5:labels=hidden"
  "cache-sample128:2:0.5:labels=sample,samples=128"
  "dense-s3:3:0.5:labels=topk,topk=4096"
  "dense-a0.9:2:0.9:labels=topk,topk=4096"
  "sample128-a0.9:2:0.9:labels=sample,samples=128"
  "topk16+sample112-a0.9:2:0.9:labels=topk+sample,topk=16,samples=112"
  "topk64-a0.9:2:0.9:labels=topk,topk=64"
)

common=(--set "data.train=$QS/data/train.h5" --set "data.val=$QS/data/val.h5"
        --set "data.tokenizer=$QS/data/" --set "train.steps=$steps" --set train.eval_every=0
        --set "train.checkpoint_every=$steps")
scratch_ppl=""
vocab=$(h5dump -a /vocab_size "$QS/data/train.h5" | grep -o '(0): [0-9]*' | grep -o '[0-9]*$')
printf '| row | labels | alpha | seed | val ppl | gain over scratch | ECE | wire B/token | raw B/token | vs dense f32 (%d B) | tok/s |\n' $((4 * vocab))
printf '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n'
json=()
for row in "${rows[@]}"; do
  IFS=: read -r name seed alpha sets <<<"$row"
  if [ -n "$want" ] && [[ " $want " != *" $name "* ]]; then continue; fi
  run=$out/$name
  args=("${common[@]}" --set "train.run_dir=$run" --set "train.seed=$seed")
  failed() { tail -3 "$out/$name.log"; echo "bench: $name failed" >&2; exit 1; }
  if [ "$name" = scratch ]; then
    [ -f "$run/final.h5" ] || OMP_NUM_THREADS=$threads "$R" train --config "$root/launch/configs/student.ini" \
      "${args[@]}" >"$out/$name.log" 2>&1 || failed
  else
    IFS=, read -r -a kv <<<"$sets"
    for s in "${kv[@]}"; do args+=(--set "distill.$s"); done
    args+=(--set "distill.teacher=$QS/teacher/final.h5" --set "distill.alpha=$alpha")
    if [ "${name#cache-}" != "$name" ]; then
      [ -f "$out/$name.labels/index.json" ] && grep -q '"complete": true' "$out/$name.labels/index.json" ||
        OMP_NUM_THREADS=$threads "$R" label --config "$root/launch/configs/distill.ini" "${args[@]}" \
          --out "$out/$name.labels" >"$out/$name.label.log" 2>&1 || { cat "$out/$name.label.log"; failed; }
      grep '^label: .*tokens/s' "$out/$name.label.log"
      [ -f "$run/final.h5" ] || OMP_NUM_THREADS=$threads "$R" train \
        --config "$root/launch/configs/distill.ini" "${args[@]}" --set distill.teachers=0 \
        --set "distill.labels_dir=$out/$name.labels" >"$out/$name.log" 2>&1 || failed
    else
      [ -f "$run/final.h5" ] || mpirun -np 2 -x OMP_NUM_THREADS="$threads" "$R" train \
        --config "$root/launch/configs/distill.ini" "${args[@]}" >"$out/$name.log" 2>&1 || failed
    fi
  fi
  ev=$("$R" eval --model "$run/final.h5" --data "$QS/data/val.h5" --json 2>/dev/null)
  ppl=$(grep -o '"perplexity": *[0-9.e+-]*' <<<"$ev" | grep -o '[0-9.e+-]*$')
  ece=$(grep -o '"ece": *[0-9.e+-]*' <<<"$ev" | grep -o '[0-9.e+-]*$')
  [ "$name" = scratch ] && scratch_ppl=$ppl
  m=$run/metrics.jsonl
  last() { grep -o "\"$1\": *[0-9.e+-]*" "$m" | tail -1 | grep -o '[0-9.e+-]*$' || echo 0; }
  wire=$(last wire_bytes_per_token) raw=$(last raw_bytes_per_token)
  [ "${name#cache-}" != "$name" ] && wire=$(last disk_bytes_per_token) raw=0
  # mean training tokens/s over the logged intervals after the first
  # (warm-up) one, when there are several
  tps=$(grep -o '"tok_s": *[0-9.e+-]*' "$m" | grep -o '[0-9.e+-]*$' |
    awk '{ v[NR] = $1 } END { for (i = NR > 1 ? 2 : 1; i <= NR; i++) { s += v[i]; n++ }; printf "%.0f", n ? s / n : 0 }')
  gain=$(awk -v s="$scratch_ppl" -v p="$ppl" 'BEGIN { if (s == "") print "-"; else printf "%.1f%%", 100 * (s - p) / s }')
  frac=$(awk -v w="$wire" -v v="$vocab" 'BEGIN { if (w > 0) printf "1/%.0f", 4 * v / w; else print "-" }')
  a=$alpha
  [ "$name" = scratch ] && a=-
  printf '| %s | %s | %s | %s | %.1f | %s | %.4f | %.0f | %.0f | %s | %s |\n' "$name" "${sets:-none}" \
    "$a" "$seed" "$ppl" "$gain" "$ece" "$wire" "$raw" "$frac" "$tps"
  json+=("$(printf '{"row": "%s", "labels": "%s", "alpha": %s, "seed": %s, "steps": %s, "val_ppl": %s, "ece": %s, "wire_bytes_per_token": %s, "raw_bytes_per_token": %s, "tok_s": %s}' \
    "$name" "$sets" "$alpha" "$seed" "$steps" "$ppl" "$ece" "$wire" "$raw" "$tps")")
done
printf '%s\n' "${json[@]}"
