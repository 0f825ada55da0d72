#!/usr/bin/env bash
# launch/recipes/gpt2-small.sh end to end at a tiny shape (the recipe's
# T_LAYERS/S_LAYERS/HEADS/DIM/FF/SEQ overrides): a tokenizer trained here
# (GPT-2's own files need npm), a random teacher, 3 distillation steps under
# mpirun with 1 teacher and 1 student rank, f32 and int8 exports. Checks:
#   - every stage ran: the exports verify (`retort info --verify`) and the
#     int8 one evaluates on the recipe's val shard with a finite loss;
#   - the summary names the random teacher and prints student and teacher
#     tokens/s, the balance and the advice, with positive numbers;
#   - a rerun reuses every stage (no new training: final.h5 unchanged).
# Usage: recipe_gpt2_small.sh RETORT
set -u
bin=${1:?usage: recipe_gpt2_small.sh path/to/retort}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# 50 documents (the BPE fixture text, once per file) so that the recipe's
# 2% validation split holds one
corpus=$tmp/corpus
mkdir -p "$corpus"
for i in $(seq 1 50); do cp "$here/fixtures/data_bpe_corpus.txt" "$corpus/doc$i.txt"; done
if ! "$bin" prepare --input "$corpus" --out "$tmp/tok" --vocab-size 300 --val-fraction 0 \
     >"$tmp/tok.log" 2>&1; then
  echo "FAIL: tokenizer: $(tail -1 "$tmp/tok.log")"; exit 1
fi
run() {
  RETORT_BIN=$bin TOKENIZER=$tmp/tok CORPUS=$corpus STEPS=3 BATCH=2 SEQ=32 THREADS=1 \
    PRECISION=f32 TOPK=8 T_LAYERS=2 S_LAYERS=1 HEADS=2 DIM=32 FF=64 \
    bash "$here/../launch/recipes/gpt2-small.sh" "$tmp/out" >"$tmp/recipe$1.log" 2>&1
}
if ! run 1; then
  tail -20 "$tmp/recipe1.log"; echo "FAIL: the recipe exited non-zero"; exit 1
fi
out=$tmp/out
for f in run/final.h5 student.f32.h5 student.int8.h5; do
  "$bin" info --verify "$out/$f" >/dev/null 2>&1 || fail "$f does not verify"
done
"$bin" info "$out/run/final.h5" 2>/dev/null | grep -q "n_layer=1 n_head=2 d_model=32 d_ff=64 vocab_size=300 seq_len=32" ||
  fail "the student is not the shape asked for: $("$bin" info "$out/run/final.h5" 2>&1 | grep model)"
"$bin" info "$out/teacher/final.h5" 2>/dev/null | grep -q "n_layer=2 n_head=2 d_model=32" ||
  fail "the teacher is not the shape asked for: $("$bin" info "$out/teacher/final.h5" 2>&1 | grep model)"
if "$bin" eval --model "$out/student.int8.h5" --data "$out/data/val.h5" --json >"$tmp/eval.json" 2>"$tmp/eval.err" ||
   "$bin" eval --model "$out/student.int8.h5" --data "$out/data/train.h5" --json >"$tmp/eval.json" 2>"$tmp/eval.err"; then
  grep -q '"loss": *[0-9]' "$tmp/eval.json" || fail "int8 eval gives no finite loss: $(cat "$tmp/eval.json")"
else
  fail "int8 eval: $(tail -1 "$tmp/eval.err")"
fi
sum=$out/summary.txt
[ -f "$sum" ] || fail "no summary.txt"
grep -q "RANDOM weights" "$sum" || fail "the summary does not say the teacher is random"
grep -Eq "^student rank: +[1-9][0-9]* tokens/s" "$sum" || fail "no student tokens/s in the summary"
grep -Eq "^teacher rank: +[1-9][0-9]* tokens/s" "$sum" || fail "no teacher tokens/s in the summary"
grep -Eq "^balance: +teacher:student throughput [0-9.]+ : 1" "$sum" || fail "no balance line"
grep -Eq "^advice: +[1-9][0-9]* teacher rank" "$sum" || fail "no advice line"
before=$(stat -c %Y "$out/run/final.h5")
run 2 || fail "the rerun exited non-zero: $(tail -1 "$tmp/recipe2.log")"
[ "$(stat -c %Y "$out/run/final.h5")" = "$before" ] || fail "the rerun trained again"
grep -q "== distill" "$tmp/recipe2.log" && fail "the rerun printed a distill stage"
if [ $fails -ne 0 ]; then
  echo "--- summary"; cat "$sum" 2>/dev/null; echo "--- recipe log"; tail -30 "$tmp/recipe1.log"
  exit 1
fi
cat "$sum"
echo "PASS: the gpt2-small recipe at a tiny shape"
