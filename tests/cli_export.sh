#!/usr/bin/env bash
# `retort export` deploy formats through the binary, on the fixtures of
# test_eval --make-fixtures: each file exports, evaluates through the one
# model reader close to the f32 model it came from (the exact numbers are
# test_quant's), and every bad combination of flags is one line on stderr
# naming the flag and a non-zero exit.
# Usage: cli_export.sh RETORT TEST_EVAL
set -u
bin=${1:?usage: cli_export.sh path/to/retort path/to/test_eval}
maker=${2:?usage: cli_export.sh path/to/retort path/to/test_eval}
. "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
# loss_within FILE_JSON REF_JSON FRACTION: |loss - ref| < FRACTION * ref
loss_within() {
  python3 -c "
import json, sys
d, f = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert abs(d['loss'] - f['loss']) < float(sys.argv[3]) * f['loss'], (d['loss'], f['loss'])
" "$1" "$2" "$3"
}

fx=$tmp/fx
mkdir -p "$fx"
"$maker" --make-fixtures "$fx" >/dev/null || { echo "FAIL: test_eval --make-fixtures"; exit 1; }
m=$fx/model.h5 val=$fx/val.h5
run eval --model "$m" --data "$val" --json; cp "$tmp/out" "$tmp/f32.json"
check '[ $rc -eq 0 ]' "eval of the fixture model"

# int8 with dynamic activations: no calibration data needed
run export --model "$m" --format deploy --int8 --act dynamic --out "$tmp/dyn.h5"
check '[ $rc -eq 0 ]' "export --int8 --act dynamic exits 0"
run eval --model "$tmp/dyn.h5" --data "$val" --json
check 'loss_within "$tmp/out" "$tmp/f32.json" 0.02' "eval of the dynamic int8 deploy within 2% of the f32 loss"
run export --model "$m" --format deploy --act dynamic --out "$tmp/x.h5"
expect_error "--int8" "export --act dynamic without --int8"
run export --model "$m" --format deploy --int8 --act weekly --out "$tmp/x.h5"
expect_error "weekly" "export --act with a bad value"

# Codebook (weight sharing) deploy files: smaller than the f32 deploy,
# evaluated through the same reader; bad sizes and --codebook with --int8
# are errors.
run export --model "$m" --format deploy --out "$tmp/f32.h5"
run export --model "$m" --format deploy --codebook 16 --out "$tmp/cb16.h5"
check '[ $rc -eq 0 ]' "export --codebook 16 exits 0"
check '[ "$(stat -c %s "$tmp/cb16.h5")" -lt "$(stat -c %s "$tmp/f32.h5")" ]' \
      "the 16-entry codebook file is smaller than the f32 one"
run eval --model "$tmp/cb16.h5" --data "$val" --json
check 'loss_within "$tmp/out" "$tmp/f32.json" 0.05' "eval of the 16-entry codebook deploy within 5% of the f32 loss"
run export --model "$m" --format deploy --codebook 256 --codebook-per channel --out "$tmp/cb256.h5"
run eval --model "$tmp/cb256.h5" --data "$val" --json
check 'loss_within "$tmp/out" "$tmp/f32.json" 0.01' "eval of the 256-entry per-channel codebook deploy within 1% of the f32 loss"
run export --model "$m" --format deploy --codebook 8 --out "$tmp/x.h5"
expect_error "--codebook" "export --codebook 8"
run export --model "$m" --format deploy --codebook 16 --int8 --out "$tmp/x.h5"
expect_error "--int8" "export --codebook with --int8"
run export --model "$m" --format deploy --codebook 16 --codebook-per row --out "$tmp/x.h5"
expect_error "row" "export --codebook-per with a bad value"

[ ! -e "$tmp/x.h5" ] || fail "a failed export left $tmp/x.h5 behind"
cli_finish cli_export
