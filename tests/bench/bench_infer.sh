#!/usr/bin/env bash
# f32 vs int8 inference of the same model, side by side: runs `retort bench
# infer --json` on the two deploy files alternately (ROUNDS times each, so
# load from other processes hits both alike) and prints every JSON line,
# then the median tokens/s ratios (prompt processing = the headline
# tokens_per_s, the KV-cache prompt, generation), the prompt's CPU-time
# ratio (f32 / int8 median CPU ms per thread: the figure to quote on a
# shared machine, where wall-clock time depends on what else runs) and
# the file-size ratio.
# Threads: OMP_NUM_THREADS. With 2+ threads on a machine where another
# process holds a core, spinning threads stall every barrier (both files
# crawl, the ratio means nothing); OMP_WAIT_POLICY=PASSIVE avoids that but
# makes every small kernel wait for a wake-up (decoding suffers most), so
# quote ratios from a quiet machine and the default policy.
#   bash tests/bench/bench_infer.sh RETORT F32_FILE INT8_FILE [ROUNDS] [extra bench args]
set -euo pipefail
R=$1 f32=$2 int8=$3 rounds=${4:-3}
shift $(( $# < 4 ? $# : 4 ))
out=$(mktemp)
for i in $(seq "$rounds"); do
  "$R" bench infer --model "$f32" --json "$@" | tee -a "$out"
  "$R" bench infer --model "$int8" --json "$@" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda p, k: st.median(r[k] for r in rows if r["precision"] == p)
keys = ("tokens_per_s", "kv_prompt_tokens_per_s", "gen_tokens_per_s", "file_bytes",
        "prompt_cpu_ms")
f = {k: med("f32", k) for k in keys}
q = {k: med("int8", k) for k in keys}
print(json.dumps({"threads": rows[0]["threads"], "rounds": len(rows) // 2,
                  "prompt_speedup": q["tokens_per_s"] / f["tokens_per_s"],
                  "prompt_cpu_speedup": f["prompt_cpu_ms"] / q["prompt_cpu_ms"],
                  "kv_prompt_speedup": q["kv_prompt_tokens_per_s"] / f["kv_prompt_tokens_per_s"],
                  "gen_speedup": q["gen_tokens_per_s"] / f["gen_tokens_per_s"],
                  "size_ratio": q["file_bytes"] / f["file_bytes"],
                  "f32_tokens_per_s": f["tokens_per_s"], "int8_tokens_per_s": q["tokens_per_s"],
                  "f32_prompt_cpu_ms": f["prompt_cpu_ms"], "int8_prompt_cpu_ms": q["prompt_cpu_ms"]}))
PY
rm -f "$out"
