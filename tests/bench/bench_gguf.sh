#!/usr/bin/env bash
# retort vs llama.cpp decoding speed on the same model, side by side: exports
# MODEL to GGUF (--type TYPE, default f32), then alternates `retort bench
# infer --json` and llama.cpp through node-llama-cpp 3.21.1
# (tests/gguf_llama.mjs speed; installed into the npm cache on first use)
# ROUNDS times, both generating NEW tokens greedily after PROMPT tokens with
# the KV cache, one thread each (OMP_NUM_THREADS, LLAMA_THREADS; set both
# to compare at other counts). Prints every JSON line, then the medians and
# the ratio llama.cpp / retort of generated tokens/s. node-llama-cpp's
# per-token JavaScript overhead is inside llama.cpp's number (it matters
# only for tiny models). Quote ratios from a quiet machine.
#   bash tests/bench/bench_gguf.sh RETORT MODEL [TYPE] [ROUNDS] [PROMPT] [NEW]
set -euo pipefail
R=$1 model=$2 type=${3:-f32} rounds=${4:-3} prompt=${5:-16} new=${6:-64}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$here/npm_cache.sh"
pkg=$(npm_cached node-llama-cpp 3.21.1)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} LLAMA_THREADS=${LLAMA_THREADS:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$R" export --model "$model" --format gguf --type "$type" --out "$tmp/m.gguf" 2>/dev/null
for i in $(seq "$rounds"); do
  "$R" bench infer --model "$model" --json --batch 1 --steps 3 --prompt-tokens "$prompt" \
    --new-tokens "$new" | tee -a "$tmp/retort"
  node "$here/gguf_llama.mjs" "$pkg" speed "$tmp/m.gguf" "$prompt" "$new" | tee -a "$tmp/llama"
done
python3 - "$tmp/retort" "$tmp/llama" "$type" <<'PY'
import json, sys, statistics as st
r = st.median(json.loads(l)["gen_tokens_per_s"] for l in open(sys.argv[1]))
l = st.median(json.loads(l)["gen_tokens_per_s"] for l in open(sys.argv[2]))
print(json.dumps({"gguf_type": sys.argv[3], "retort_gen_tokens_per_s": round(r, 1),
                  "llama_cpp_gen_tokens_per_s": round(l, 1), "llama_over_retort": round(l / r, 3)}))
PY
