#!/usr/bin/env bash
# `retort eval`, `generate`, `info` (and `report` once present) through the
# binary: every error path (missing file, non-HDF5 file, truncated
# checkpoint, vocabulary and seq_len mismatches, bad flags) exits non-zero
# with exactly one line on stderr that names the culprit; info and
# info --verify on good and corrupted files. The numbers themselves are
# checked by test_eval (CUnit). Fixtures come from test_eval --make-fixtures.
# Usage: cli_eval.sh RETORT TEST_EVAL
set -u
bin=${1:?usage: cli_eval.sh path/to/retort path/to/test_eval}
maker=${2:?usage: cli_eval.sh path/to/retort path/to/test_eval}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 checks=0
fail() { echo "FAIL: $*"; echo "  rc=$rc stderr: $(head -c 600 "$tmp/err")"; fails=$((fails + 1)); }
check() { checks=$((checks + 1)); if ! eval "$1"; then fail "$2"; fi; }
run() { "$bin" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }
# An error: non-zero exit, one line on stderr starting "retort: ", naming $1.
expect_error() {
  local want=$1 what=$2
  check '[ $rc -ne 0 ]' "$what: exits non-zero"
  check '[ "$(wc -l <"$tmp/err")" -eq 1 ]' "$what: exactly one line on stderr"
  check 'grep -q "^retort: " "$tmp/err"' "$what: the line starts with 'retort: '"
  check 'grep -qF -- "$want" "$tmp/err"' "$what: the message names '$want'"
}

fx=$tmp/fx
mkdir -p "$fx"
"$maker" --make-fixtures "$fx" || { echo "FAIL: test_eval --make-fixtures"; exit 1; }
m=$fx/model.h5 val=$fx/val.h5 tok=$fx/tok

# Sanity: the good paths work, so the errors below are about the files.
run eval --model "$m" --data "$val"
check '[ $rc -eq 0 ]' "eval on the fixtures exits 0"
run generate --model "$m" --tokenizer "$tok" --prompt "the" --max-new-tokens 3 --temperature 0
check '[ $rc -eq 0 ]' "generate on the fixtures exits 0"

# Bad files, each as --model, --data and --teacher of eval, and for generate.
missing=$tmp/no/such.h5
printf 'this is not an HDF5 file\n' >"$tmp/text.h5"
head -c $(( $(stat -c %s "$m") / 2 )) "$m" >"$tmp/trunc.h5"
for bad in "$missing" "$tmp/text.h5" "$tmp/trunc.h5"; do
  name=$(basename "$bad")
  run eval --model "$bad" --data "$val";                 expect_error "$bad" "eval --model $name"
  run eval --model "$m" --data "$bad";                   expect_error "$bad" "eval --data $name"
  run eval --model "$m" --data "$val" --teacher "$bad";  expect_error "$bad" "eval --teacher $name"
  run eval --model "$bad" --data "$val" --json
  expect_error "$bad" "eval --json --model $name"
  check '[ ! -s "$tmp/out" ]' "eval --json --model $name prints nothing on stdout"
  run generate --model "$bad" --tokenizer "$tok" --prompt hi; expect_error "$bad" "generate --model $name"
  run info "$bad";                                       expect_error "$bad" "info $name"
  run info "$bad" --verify;                              expect_error "$bad" "info --verify $name"
done
# A checkpoint passed as the shard, and a shard passed as the checkpoint.
run eval --model "$m" --data "$m";     expect_error "$m" "eval --data CKPT"
run eval --model "$val" --data "$val"; expect_error "$val" "eval --model SHARD"

# Mismatches: both files named.
run eval --model "$m" --data "$fx/v400.h5"
expect_error "$fx/v400.h5" "eval vocab mismatch (shard)"
check 'grep -qF "$m" "$tmp/err" && grep -q "vocab_size" "$tmp/err"' "vocab mismatch names the model and vocab_size"
run eval --model "$fx/v400model.h5" --data "$val"
expect_error "$val" "eval vocab mismatch (model)"
run eval --model "$m" --data "$val" --teacher "$fx/seq8.h5"
expect_error "$fx/seq8.h5" "eval teacher seq_len mismatch"
check 'grep -q "seq_len" "$tmp/err"' "teacher mismatch says seq_len"
run eval --model "$m" --data "$val" --teacher "$fx/v400model.h5"
expect_error "$fx/v400model.h5" "eval teacher vocab mismatch"
run generate --model "$fx/v400model.h5" --tokenizer "$tok" --prompt hi
expect_error "$tok" "generate tokenizer/model vocab mismatch"
run generate --model "$m" --tokenizer "$tmp/no/tok" --prompt hi
expect_error "$tmp/no/tok" "generate missing tokenizer"
run eval --model "$m" --data "$val" --max-tokens 16
expect_error "$val" "eval with fewer tokens than a window"

# Bad flags: usage errors (exit 2), one line naming the flag.
run eval --model "$m" --data "$val" --bogus;        expect_error "--bogus" "eval unknown flag"
check '[ $rc -eq 2 ]' "eval unknown flag exits 2"
run eval --model "$m" --data "$val" --batch 0;      expect_error "--batch" "eval --batch 0"
run eval --model "$m" --data "$val" --max-tokens -5; expect_error "--max-tokens" "eval --max-tokens -5"
run eval --model "$m";                              expect_error "--data" "eval without --data"
run generate --model "$m" --prompt hi --temperature -1;  expect_error "--temperature" "generate --temperature -1"
run generate --model "$m" --prompt hi --top-k x;         expect_error "--top-k" "generate --top-k x"
run generate --model "$m" --prompt hi --max-new-tokens 0; expect_error "--max-new-tokens" "generate --max-new-tokens 0"
run info;                                           expect_error "CKPT" "info without CKPT"
run info "$m" --verify=yes;                         expect_error "--verify" "info --verify=yes"

# info and --verify on a good file.
run info "$m"
check '[ $rc -eq 0 ] && grep -q "^kind *train" "$tmp/out"' "info prints the kind"
check '! grep -q "^verify" "$tmp/out"' "info without --verify does not verify"
run info "$m" --verify
check '[ $rc -eq 0 ] && grep -q "^verify *OK" "$tmp/out"' "info --verify prints OK"
run info "$m" --json --verify
check '[ $rc -eq 0 ]' "info --json --verify exits 0"
if command -v python3 >/dev/null; then
  check 'python3 -c "import json,sys; o=json.load(open(sys.argv[1])); assert o[\"verified\"] is True and o[\"kind\"]==\"train\"" "$tmp/out"' \
        "info --json --verify prints one JSON object with verified: true"
fi

# A flipped bit inside a weight: metadata still reads, the checksum fails.
# The wte data is located by its own bytes (h5dump -b), not by HDF5 layout.
cp "$m" "$tmp/flip.h5"
if command -v h5dump >/dev/null && command -v python3 >/dev/null; then
  h5dump -d /model/transformer.wte.weight -b LE -o "$tmp/wte.bin" "$m" >/dev/null 2>&1
  if python3 - "$tmp/flip.h5" "$tmp/wte.bin" <<'EOF'
import sys
path, raw = sys.argv[1], open(sys.argv[2], "rb").read()
data = bytearray(open(path, "rb").read())
at = data.find(raw[:256]) if len(raw) >= 256 else -1
if at < 0:
    sys.exit(1)
data[at + 1001] ^= 0x10
open(path, "wb").write(data)
EOF
  then
    run info "$tmp/flip.h5"
    check '[ $rc -eq 0 ]' "info (metadata only) still reads a file with a flipped weight bit"
    run info "$tmp/flip.h5" --verify
    expect_error "transformer.wte.weight" "info --verify on a flipped weight bit"
    check 'grep -q "^verify *FAILED" "$tmp/out"' "info --verify prints FAILED on stdout"
    run info "$tmp/flip.h5" --verify --json
    check '[ $rc -ne 0 ] && python3 -c "import json,sys; o=json.load(open(sys.argv[1])); assert o[\"verified\"] is False and \"wte\" in o[\"verify_error\"]" "$tmp/out"' \
          "info --json --verify reports verified: false with the error"
    run eval --model "$tmp/flip.h5" --data "$val"
    expect_error "transformer.wte.weight" "eval refuses a checkpoint with a bad checksum"
  else
    fail "could not locate the bytes of transformer.wte.weight in $tmp/flip.h5"
  fi
fi

echo "cli_eval: $checks checks, $fails failures"
[ "$fails" -eq 0 ]
