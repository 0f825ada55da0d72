#!/usr/bin/env bash
# `retort bench teacher` through the binary at a tiny shape: every label
# scheme runs and its JSON holds sane figures (positive tokens/s and times,
# shares in [0, 1], the label width and record size each scheme implies),
# --f32 and --model (a checkpoint made by test_eval --make-fixtures) change
# what they should, and bad options are one-line errors with a non-zero
# exit that name the culprit; the record is also compressed (wire bytes).
# Speed itself is not tested (a benchmark).
# Usage: cli_bench_teacher.sh RETORT TEST_EVAL
set -u
bin=${1:?usage: cli_bench_teacher.sh path/to/retort path/to/test_eval}
maker=${2:?usage: cli_bench_teacher.sh path/to/retort path/to/test_eval}
. "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_error_prefix="retort: "

tiny=(--layers 2 --dim 32 --heads 2 --ff 64 --vocab 300 --seq 16 --steps 2 --warmup 1
      --peak 100)

# field NAME: the value of NAME in the last run's JSON ("" when absent).
field() {
  /usr/bin/python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(d.get(sys.argv[2], ""))' "$tmp/out" "$1" 2>/dev/null
}
# sane WHAT: the figures every run must have.
sane() {
  local w=$1
  check '[ $rc -eq 0 ]' "$w: exits 0"
  check '[ "$(field target)" = teacher ]' "$w: one JSON object with target teacher"
  for f in tokens_per_s forward_tokens_per_s batch_ms forward_ms gflop_per_s \
           fraction_of_peak fraction_of_peak_cpu peak_rss_mb record_bytes_per_token \
           wire_bytes_per_token; do
    check "awk -v v=\"\$(field $f)\" 'BEGIN { exit !(v + 0 > 0) }'" "$w: $f > 0"
  done
  check "awk -v v=\"\$(field compress_ms)\" 'BEGIN { exit !(v != \"\" && v >= 0) }'" \
    "$w: compress_ms >= 0"
  for f in labels_share labels_share_cpu; do
    check "awk -v v=\"\$(field $f)\" 'BEGIN { exit !(v != \"\" && v >= 0 && v <= 1) }'" \
      "$w: $f in [0, 1]"
  done
  # the batch is the forward plus the labels
  check "awk -v b=\"\$(field batch_ms)\" -v f=\"\$(field forward_ms)\" -v l=\"\$(field labels_ms)\" \
    'BEGIN { exit !(b > 0 && (f + l - b) ^ 2 < 1e-4 * b * b) }'" "$w: batch_ms = forward_ms + labels_ms"
}

# Each scheme: the width of its rows (topk 64 of 300; 128 draws; both;
# none), and the record bytes per token that width implies.
for s in topk:64 sample:128 topk+sample:192 hidden:0; do
  scheme=${s%%:*} width=${s##*:}
  run bench teacher "${tiny[@]}" --labels "$scheme" --json
  sane "$scheme"
  check '[ "$(field labels)" = "$scheme" ] && [ "$(field label_width)" = "$width" ]' \
    "$scheme: labels $scheme of width $width"
  check '[ "$(field precision)" = bf16 ] && [ "$(field peak_type)" = bf16 ]' "$scheme: bf16 by default"
done
# topk: 8 bytes per entry + the tail; hidden int8: d_model bytes + a scale
run bench teacher "${tiny[@]}" --labels topk --topk 5 --json
sane "topk 5"
t5=$(field record_bytes_per_token)
run bench teacher "${tiny[@]}" --labels topk --topk 6 --json
t6=$(field record_bytes_per_token)
check "awk -v a=$t5 -v b=$t6 'BEGIN { exit !(b - a == 8) }'" "topk 6 - topk 5 = 8 record bytes per token"
run bench teacher "${tiny[@]}" --labels topk --topk 1000 --json
check '[ "$(field topk)" = 300 ] && [ "$(field label_width)" = 300 ]' "--topk above the vocabulary is dense"
run bench teacher "${tiny[@]}" --labels hidden --hidden bf16 --json
hb=$(field record_bytes_per_token)
run bench teacher "${tiny[@]}" --labels hidden --hidden int8 --json
hi=$(field record_bytes_per_token)
check "awk -v a=$hi -v b=$hb 'BEGIN { exit !(b - a == 32 - 4) }'" "hidden bf16 - int8 = d_model - 4 bytes per token"
# feature maps: d_model floats per map and token
run bench teacher "${tiny[@]}" --feature-map 1:1,2:2 --json
sane "feature maps"
f2=$(field record_bytes_per_token)
check '[ "$(field features)" = 2 ]' "--feature-map 1:1,2:2 copies 2 maps"
check "awk -v a=$t6 -v b=$f2 'BEGIN { exit !(b - a == 2 * 32 * 4 + (64 - 6) * 8) }'" \
  "2 feature maps add 2 x 32 floats per token"
run bench teacher "${tiny[@]}" --f32 --temperature 1.5 --samples 7 --labels sample --json
sane "f32"
check '[ "$(field precision)" = f32 ] && [ "$(field peak_type)" = f32 ]' "--f32 runs f32"
check '[ "$(field temperature)" = 1.5 ] && [ "$(field label_width)" = 7 ]' "--temperature and --samples reach the teacher"
run bench teacher "${tiny[@]}" --zstd-level 1 --json
check '[ "$(field zstd_level)" = 1 ]' "--zstd-level reaches the codec"
run bench teacher "${tiny[@]}"
check '[ $rc -eq 0 ] && grep -q "labels .*% of the batch" "$tmp/out"' "text output names the labels' share"

# A model file, loaded as a teacher rank loads it: its shape, not the defaults.
fx=$tmp/fx
mkdir -p "$fx"
"$maker" --make-fixtures "$fx" >/dev/null || { echo "FAIL: test_eval --make-fixtures"; exit 1; }
run bench teacher --model "$fx/model.h5" --steps 1 --warmup 0 --peak 100 --json
sane "--model"
check '[ "$(field model)" = "$fx/model.h5" ] && [ "$(field layers)" != 12 ] && [ "$(field vocab)" != 50257 ]' \
  "--model takes the file's shape"

# Bad options: one line, non-zero, naming what is wrong.
run bench teacher "${tiny[@]}" --labels foo;       expect_error "foo" "unknown --labels"
run bench teacher "${tiny[@]}" --topk 0;           expect_error "--topk" "--topk 0"
run bench teacher "${tiny[@]}" --hidden f16;       expect_error "--hidden" "bad --hidden"
run bench teacher "${tiny[@]}" --temperature 0;    expect_error "--temperature" "--temperature 0"
run bench teacher "${tiny[@]}" --feature-map x;    expect_error "--feature-map" "bad --feature-map"
run bench teacher "${tiny[@]}" --feature-map 1:3;  expect_error "feature layer" "feature map past the last layer"
run bench teacher "${tiny[@]}" --labels sample --samples 300; expect_error "samples" "more draws than the vocabulary"
run bench teacher "${tiny[@]}" --batch 0;          expect_error "--batch" "--batch 0"
run bench teacher "${tiny[@]}" --zstd-level 99;    expect_error "--zstd-level" "--zstd-level 99"
run bench teacher --dim 30 --heads 4 --vocab 300 --seq 16; expect_error "30" "--heads not dividing --dim"
run bench teacher --model "$tmp/no/such.h5";       expect_error "$tmp/no/such.h5" "missing --model"
run bench teacher --model "$fx/model.h5" --dim 64; expect_error "--dim" "a shape option with --model"
run bench teacher --bogus;                         expect_error "--bogus" "unknown option"
run bench teacher --help
check '[ $rc -eq 0 ] && grep -qF -- "--labels" "$tmp/out" && grep -qF -- "--peak" "$tmp/out"' "bench teacher --help"
run bench --help
check '[ $rc -eq 0 ] && grep -qE "^  teacher " "$tmp/out"' "bench --help lists teacher"

cli_finish cli_bench_teacher
