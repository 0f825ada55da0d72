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
. "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_error_prefix="retort: " # every error line here must start with it

fx=$tmp/fx
mkdir -p "$fx"
"$maker" --make-fixtures "$fx" || { echo "FAIL: test_eval --make-fixtures"; exit 1; }
m=$fx/model.h5 val=$fx/val.h5 tok=$fx/tok

# Sanity: the good paths work, so the errors below are about the files.
run eval --model "$m" --data "$val"
check '[ $rc -eq 0 ]' "eval on the fixtures exits 0"
run generate --model "$m" --tokenizer "$tok" --prompt "the" --max-new-tokens 3 --temperature 0
check '[ $rc -eq 0 ]' "generate on the fixtures exits 0"

# A full context (the fixture's seq_len is 16; "the" is 2 tokens): greedy
# decoding stops after 15 new tokens and says why; --context-shift goes on
# to all 50, restarting 4 times from the last 8 tokens, and its first 15
# tokens are the same (the shift only changes what comes after).
ids_of() { python3 -c 'import json,sys; print(" ".join(map(str, json.load(open(sys.argv[1]))["ids"])))' "$1"; }
run generate --model "$m" --tokenizer "$tok" --prompt "the" --max-new-tokens 50 --temperature 0 --json
check '[ $rc -eq 0 ]' "generate into a full context exits 0"
check 'grep -q "context is full (seq_len 16 tokens); stopping" "$tmp/err"' "generate says the context is full"
plain=$(ids_of "$tmp/out")
check '[ $(echo $plain | wc -w) -eq 15 ]' "generate stops after seq_len - prompt + 1 = 15 tokens (got $(echo $plain | wc -w))"
run generate --model "$m" --tokenizer "$tok" --prompt "the" --max-new-tokens 50 --temperature 0 --json --context-shift
check '[ $rc -eq 0 ]' "generate --context-shift exits 0"
check 'grep -q "filled 4 times; each time generation went on from the last 8 tokens" "$tmp/err"' \
  "generate --context-shift says how often it shifted"
shifted=$(ids_of "$tmp/out")
check '[ $(echo $shifted | wc -w) -eq 50 ]' "generate --context-shift makes all 50 tokens"
check '[ "$(echo $shifted | cut -d" " -f1-15)" = "$plain" ]' \
  "generate --context-shift: the tokens before the first shift are unchanged"

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

# ---------------------------------------------------------------- report
# A run folder with 5 val_loss records among 10, and a half-written last line.
mkdir -p "$tmp/run1"
for s in 1 2 3 4 5 6 7 8 9 10; do
  if [ $((s % 2)) -eq 0 ]; then
    echo "{\"step\":$s,\"tokens\":$((s * 1024)),\"loss\":5.0,\"val_loss\":$((60 - s)).5,\"wire_bytes_per_token\":$((40 + s)).25,\"dense_bytes_per_token\":2048}"
  else
    echo "{\"step\":$s,\"tokens\":$((s * 1024)),\"loss\":5.0}"
  fi
done >"$tmp/run1/metrics.jsonl"
printf '{"step":11,"tok' >>"$tmp/run1/metrics.jsonl"
rep=$tmp/rep
cp "$m" "$fx/self.h5" # the teacher's weights under another name
"$bin" bench infer --model "$m" --json >"$tmp/bench_out" 2>/dev/null; bench_rc=$?
run report --out "$rep" --data "$val" --teacher "$m" --model "teacher=$m" --model "small=$fx/small.h5" \
    --model "zero=$fx/zero.h5" --model "self=$fx/self.h5" --curve "run one=$tmp/run1" --json
check '[ $rc -eq 0 ]' "report on the fixtures exits 0"
for f in report.md report.json val_loss.svg size_ppl.svg; do
  check '[ -s "$rep/$f" ]' "report wrote $f"
done
check '[ "$(grep -c "^| \(teacher\|small\|zero\|self\) |" "$rep/report.md")" -eq 4 ]' \
      "report.md has one table row per model (teacher first)"
check 'grep -q "run one" "$rep/report.md" && grep -q "val_loss.svg" "$rep/report.md"' \
      "report.md shows the curve"
check 'grep -q "| 50.2 on wire (2048) |" "$rep/report.md"' \
      "report.md shows the run's last soft-label bytes per token beside dense f32"
if command -v python3 >/dev/null; then
  # The report's numbers are those of `retort eval` on each file.
  for pair in "small:$fx/small.h5" "zero:$fx/zero.h5" "self:$fx/self.h5" "teacher:$m"; do
    name=${pair%%:*} file=${pair#*:}
    "$bin" eval --model "$file" --data "$val" --teacher "$m" --json >"$tmp/ev.json" 2>/dev/null
    check 'python3 - "$tmp/out" "$tmp/ev.json" "$name" <<EOF
import json, math, sys
rep, ev, name = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
row = [m for m in rep["models"] if m["name"] == name][0]
for k in ("loss", "perplexity", "ece", "params", "file_bytes", "tokens"):
    assert math.isclose(row[k], ev[k], rel_tol=1e-8), (k, row[k], ev[k])
assert math.isclose(row["agreement"], ev["agreement"], rel_tol=1e-12)
EOF' "report row $name equals retort eval --json of its file"
  done
  check 'python3 - "$tmp/out" <<EOF
import json, sys
rep = json.load(open(sys.argv[1]))
names = [m["name"] for m in rep["models"]]
assert names == ["teacher", "small", "zero", "self"], names
# A copy of the teacher agrees with it everywhere; the zero model almost nowhere.
assert [m["agreement"] for m in rep["models"] if m["name"] in ("teacher", "self")] == [1.0, 1.0]
assert [m["agreement"] for m in rep["models"] if m["name"] == "small"][0] < 1
c = rep["curves"][0]
assert c["name"] == "run one" and len(c["points"]) == 5, c
assert c["points"][0] == [2048.0, 58.5] and c["points"][-1] == [10240.0, 50.5], c["points"]
EOF' "report JSON: rows in order, self-agreement 1, the 5 val_loss points of the run"
  # Inference speed: a number exactly when `retort bench infer` works in this build.
  if [ $bench_rc -eq 0 ]; then
    check 'python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert all(isinstance(m[\"tokens_per_s\"], float) and m[\"tokens_per_s\"] > 0 for m in r[\"models\"])" "$tmp/out"' \
          "report fills tokens/s from bench infer"
  else
    check 'python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert all(m[\"tokens_per_s\"] is None and \"bench\" in m[\"bench_note\"] for m in r[\"models\"])" "$tmp/out"' \
          "report without a working bench infer says n/a and why"
    check 'grep -q "n/a for 4 models" "$rep/report.md"' "report.md explains the n/a tokens/s"
  fi
  # The plots are well-formed XML with one point per model and the curve's 5 points.
  check 'python3 - "$rep" <<EOF
import sys, xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
size = ET.parse(sys.argv[1] + "/size_ppl.svg").getroot()
assert len(size.findall(ns + "circle")) == 4
val = ET.parse(sys.argv[1] + "/val_loss.svg").getroot()
pl = val.findall(ns + "polyline")
assert len(pl) == 1 and len(pl[0].get("points").split()) == 5
EOF' "size_ppl.svg has 4 points and val_loss.svg a 5-point line"
  # The size plot (teacher and self sit on the same point): labels apart,
  # inside the picture, the Pareto front of report.json dashed.
  check 'python3 "$(dirname "$0")/check_size_plot.py" "$rep" "$tmp/out"' \
        "size_ppl.svg: Pareto front, labels that neither overlap nor leave the picture"
fi
run report --out "$tmp/rep2" --data "$val" --model "a=$m" --no-bench
check '[ $rc -eq 0 ] && grep -q "^| a |" "$tmp/out"' "report without --json prints the table"
check 'grep -q "not measured" "$tmp/rep2/report.md" && grep -q "no --teacher" "$tmp/rep2/report.md"' \
      "report with --no-bench and without --teacher says those columns are n/a"
run report --out "$tmp/rep3" --data "$val" --model "$m";             expect_error "NAME=PATH" "report --model without NAME="
run report --out "$tmp/rep3" --data "$val" --model "x=$missing";     expect_error "$missing" "report with a missing model"
check '[ ! -e "$tmp/rep3/report.md" ]' "a failed report writes no report.md"
run report --out "$tmp/rep3" --data "$tmp/text.h5" --model "x=$m";   expect_error "$tmp/text.h5" "report with a bad shard"
run report --out "$tmp/rep3" --data "$val" --model "x=$m" --curve "r=$tmp/none"
expect_error "$tmp/none/metrics.jsonl" "report with a missing run folder"
run report --out "$tmp/rep3" --data "$fx/v400.h5" --model "x=$m";   expect_error "$fx/v400.h5" "report vocab mismatch"
run report --out "$tmp/rep3" --data "$val" --teacher "$fx/seq8.h5" --model "x=$m"
expect_error "$fx/seq8.h5" "report teacher seq_len mismatch"
run report --out "$tmp/rep3" --data "$val";                          expect_error "--model" "report without --model"
run report --data "$val" --model "x=$m";                             expect_error "--out" "report without --out"

# Bias probe (--pairs): CSV quoting, column order, ignored columns, blank
# lines and '#' comments; the tallies per type agree with the per-sentence
# scores (the scores themselves are checked against PyTorch by test_student).
cat >"$tmp/pairs.csv" <<'EOF'
# a comment line before the header
sent_more,bias_type,ignored,sent_less
"the cat, the dog",gender,1,the dog

he ran,age,"x ""quoted"" y",she ran
"the ""cat""",age,3,the
EOF
run eval --model "$m" --pairs "$tmp/pairs.csv" --tokenizer "$tok" --json
check '[ $rc -eq 0 ]' "eval --pairs exits 0"
check 'python3 - "$tmp/out" <<EOF
import json, sys
b = json.load(open(sys.argv[1]))["bias"]
assert b["pairs"] == 3, b
t = b["types"]
assert t["age"]["pairs"] == 2 and t["gender"]["pairs"] == 1, t
assert sum(g["more"] for g in t.values()) == b["more"], b
assert abs(b["score"] - b["more"] / 3) < 1e-12, b
EOF' "eval --pairs --json: 3 pairs, 2 age + 1 gender, tallies add up"
run eval --model "$m" --pairs "$tmp/pairs.csv" --tokenizer "$tok" --data "$val"
check '[ $rc -eq 0 ] && grep -q "^perplexity" "$tmp/out" && grep -q "overall" "$tmp/out"' \
      "eval --data --pairs prints both"
printf 'sent_more,sent_other,x\na,b,c\n' >"$tmp/nocol.csv"
run eval --model "$m" --pairs "$tmp/nocol.csv" --tokenizer "$tok"
expect_error "sent_less, bias_type" "eval --pairs with missing columns names them"
printf 'sent_more,sent_less,bias_type\n"a,b,age\n' >"$tmp/quote.csv"
run eval --model "$m" --pairs "$tmp/quote.csv" --tokenizer "$tok"
expect_error "$tmp/quote.csv:2" "eval --pairs with an unterminated quote names the line"
printf 'sent_more,sent_less,bias_type\na b,c\n' >"$tmp/short.csv"
run eval --model "$m" --pairs "$tmp/short.csv" --tokenizer "$tok"
expect_error "$tmp/short.csv:2" "eval --pairs with a short row names the line"
printf 'sent_more,sent_less,bias_type\n%s,a,age\n' "$(printf 'word %.0s' $(seq 40))" >"$tmp/long.csv"
run eval --model "$m" --pairs "$tmp/long.csv" --tokenizer "$tok"
expect_error "seq_len 16" "eval --pairs with a sentence longer than seq_len"
printf 'sent_more,sent_less,bias_type\n' >"$tmp/empty.csv"
run eval --model "$m" --pairs "$tmp/empty.csv" --tokenizer "$tok"; expect_error "no pairs" "eval --pairs with no rows"
run eval --model "$m" --pairs "$tmp/no/pairs.csv" --tokenizer "$tok"; expect_error "$tmp/no/pairs.csv" "eval --pairs missing file"
run eval --model "$m" --pairs "$tmp/pairs.csv"; expect_error "--tokenizer" "eval --pairs on a file without a tokenizer"
run eval --model "$m";                          expect_error "--pairs" "eval without --data or --pairs"
run report --out "$tmp/rep4" --data "$val" --teacher "$m" --model "a=$m" --no-bench \
    --pairs "$tmp/pairs.csv" --tokenizer "$tok" --json
check '[ $rc -eq 0 ] && python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
m = r[\"models\"][0]
assert 0 <= m[\"bias_score\"] <= 1 and m[\"bias_shift\"] == 0, m
" "$tmp/out"' "report --pairs: a bias score per model, shift 0 for the teacher's own weights"
check 'grep -q "bias score (shift vs teacher)" "$tmp/rep4/report.md"' "report.md has the bias column"

cli_finish cli_eval
