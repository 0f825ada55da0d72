#!/usr/bin/env bash
# retort's GGUF files in llama.cpp itself: node-llama-cpp 3.21.1 (prebuilt
# CPU binaries, installed into the npm cache on first run, never built or
# downloaded beyond the package: tests/npm_cache.sh) loads the f32, f16 and
# q8_0 exports of a tiny student trained here (BPE tokenizer with merges,
# 2 layers, width 64), and tests/gguf_llama.mjs compares it with
# `retort generate --json --temperature 0` on one prompt:
#   - every file: llama.cpp tokenizes the prompt to retort's ids;
#   - f32: the greedy continuation is identical, and the log-probability of
#     every continuation token is within 1e-2 of retort's (llama.cpp keeps
#     its KV cache in f16, hence not 1e-5);
#   - f16: log-probabilities within 5e-2;
#   - q8_0: llama.cpp's top-1 is retort's token at >= 95% of positions;
#   - a head-pruned student (heads padded back as zeros): f32 as above;
#   - an int8 deploy file -> q8_0: top-1 >= 95% against the int8 model.
# Usage: cli_gguf.sh RETORT   (RETORT_OFFLINE=1: skip, exit 77, when npm
# cannot install)
set -u
bin=${1:?usage: cli_gguf.sh path/to/retort}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/npm_cache.sh"
if ! pkg=$(npm_cached node-llama-cpp 3.21.1); then
  [ "${RETORT_OFFLINE:-0}" = 1 ] && { echo "SKIP: node-llama-cpp not installable offline"; exit 77; }
  echo "FAIL: cannot install node-llama-cpp@3.21.1"; exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
die() { echo "FAIL: $*"; [ -f "$tmp/err" ] && tail -5 "$tmp/err"; exit 1; }

# --- a tiny trained student ----------------------------------------------------
"$bin" prepare --quiet --input "$here/fixtures/gpt2_vocab/corpus.txt" \
  "$here/fixtures/data_bpe_corpus.txt" --out "$tmp/data" --vocab-size 400 --val-fraction 0 \
  2>"$tmp/err" || die "prepare"
cat >"$tmp/s.ini" <<INI
[model]
n_layer = 2
n_head = 2
d_model = 64
d_ff = 256
seq_len = 64
[data]
train = $tmp/data/train.h5
val = $tmp/data/train.h5
tokenizer = $tmp/data
[train]
run_dir = $tmp/run
steps = 80
batch = 8
lr = 3e-3
warmup = 5
eval_every = 80
eval_tokens = 512
checkpoint_every = 80
log_every = 80
INI
OMP_NUM_THREADS=2 "$bin" train --config "$tmp/s.ini" >"$tmp/out" 2>"$tmp/err" || die "train"
s=$tmp/run/final.h5
prompt="The teacher model read every batch"

# compare FILE.gguf REF.json: prints the JSON line of gguf_llama.mjs into $tmp/res
compare() {
  timeout 300 node "$here/gguf_llama.mjs" "$pkg" check "$1" "$2" "$prompt" >"$tmp/res" 2>"$tmp/err" ||
    { fail "node-llama-cpp on $(basename "$1"): $(tail -3 "$tmp/err")"; return 1; }
  cat "$tmp/res"
}
field() { grep -o "\"$1\":[^,}]*" "$tmp/res" | sed 's/.*://'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 <= b + 0) }'; }

"$bin" generate --model "$s" --tokenizer "$tmp/data" --prompt "$prompt" --max-new-tokens 40 \
  --temperature 0 --json >"$tmp/ref.json" 2>"$tmp/err" || die "retort generate --json"
for t in f32 f16 q8_0; do
  "$bin" export --model "$s" --format gguf --type "$t" --out "$tmp/s.$t.gguf" 2>"$tmp/err" ||
    { fail "export --type $t: $(cat "$tmp/err")"; continue; }
  compare "$tmp/s.$t.gguf" "$tmp/ref.json" || continue
  [ "$(field tokenize_equal)" = true ] || fail "$t: llama.cpp tokenizes the prompt differently"
  case $t in
  f32) [ "$(field greedy_equal)" = true ] || fail "f32: greedy continuation differs"
       le "$(field max_abs_logprob_diff)" 1e-2 || fail "f32: log-probs differ by more than 1e-2" ;;
  f16) le "$(field max_abs_logprob_diff)" 5e-2 || fail "f16: log-probs differ by more than 5e-2" ;;
  q8_0) le 0.95 "$(field top1_agreement)" || fail "q8_0: top-1 agreement below 95%" ;;
  esac
done

# --- removed heads, padded back ------------------------------------------------
"$bin" prune --model "$s" --method heads --sparsity 0.5 --out "$tmp/heads.h5" >/dev/null \
  2>"$tmp/err" || die "prune --method heads"
"$bin" generate --model "$tmp/heads.h5" --tokenizer "$tmp/data" --prompt "$prompt" \
  --max-new-tokens 40 --temperature 0 --json >"$tmp/ref_h.json" 2>"$tmp/err" || die "generate heads"
"$bin" export --model "$tmp/heads.h5" --format gguf --out "$tmp/h.gguf" 2>"$tmp/err" ||
  fail "export of a head-pruned model: $(cat "$tmp/err")"
grep -q "padded back as zeros" "$tmp/err" || fail "export does not say the heads were padded"
if compare "$tmp/h.gguf" "$tmp/ref_h.json"; then
  [ "$(field greedy_equal)" = true ] || fail "heads: greedy continuation differs"
  le "$(field max_abs_logprob_diff)" 1e-2 || fail "heads: log-probs differ by more than 1e-2"
fi

# --- int8 deploy file -> q8_0 --------------------------------------------------
"$bin" export --model "$s" --format deploy --int8 --calib "$tmp/data/train.h5" \
  --out "$tmp/s8.h5" 2>"$tmp/err" || die "export --int8"
"$bin" generate --model "$tmp/s8.h5" --tokenizer "$tmp/data" --prompt "$prompt" \
  --max-new-tokens 40 --temperature 0 --json >"$tmp/ref_8.json" 2>"$tmp/err" || die "generate int8"
"$bin" export --model "$tmp/s8.h5" --format gguf --type q8_0 --out "$tmp/s8.gguf" 2>"$tmp/err" ||
  fail "export of an int8 deploy file to q8_0: $(cat "$tmp/err")"
if compare "$tmp/s8.gguf" "$tmp/ref_8.json"; then
  le 0.95 "$(field top1_agreement)" || fail "int8 -> q8_0: top-1 agreement below 95%"
fi

echo "cli_gguf: $fails failed"
[ "$fails" -eq 0 ]
