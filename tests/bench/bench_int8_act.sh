#!/usr/bin/env bash
# Static (calibrated) vs dynamic (per-token) int8 activations: speed and
# quality of the two deploy files of one model, side by side.
#
#   bash tests/bench/bench_int8_act.sh [RETORT] [PAIRS] [SHAPE]
#
# SHAPE "L C F T V" (default "4 256 1024 128 512") is trained 300 steps on
# the fortune-cookie corpus, exported as f32, int8 static (`--int8 --calib
# data/train.h5`) and int8 dynamic (`--int8 --act dynamic`). Quality: val
# loss of each (`retort eval`). Speed: `retort bench infer` prompt tokens/s
# and KV-cache generation tokens/s in PAIRS (default 7) alternating
# static/dynamic runs on OMP_NUM_THREADS (default 1) threads; the ratio is
# the median of the per-pair dynamic/static ratios, so load drifts cancel.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
R=${1:-$root/build/trainer/retort}
pairs=${2:-7}
source "$root/tests/bench/bench_lib.sh"
bench_train_model "${3:-4 256 1024 128 512}" 'steps = 300\nbatch = 8\nwarmup = 20\nlr = 1e-3\n'
"$R" export --model run/final.h5 --format deploy --out f32.h5 >/dev/null 2>&1
"$R" export --model run/final.h5 --format deploy --int8 --calib data/train.h5 --out static.h5 >/dev/null 2>&1
"$R" export --model run/final.h5 --format deploy --int8 --act dynamic --out dynamic.h5 >/dev/null 2>&1
for f in f32 static dynamic; do
  "$R" eval --model $f.h5 --data data/val.h5 --json 2>/dev/null >e.json
  echo "$f: val loss $(field e.json loss), file $(stat -c %s $f.h5) bytes"
done
: >r.txt
for i in $(seq "$pairs"); do
  "$R" bench infer --model static.h5 --json --steps 5 2>/dev/null >s.json
  "$R" bench infer --model dynamic.h5 --json --steps 5 2>/dev/null >d.json
  echo "$(field d.json prompt_tokens_per_s) $(field s.json prompt_tokens_per_s) $(field d.json gen_tokens_per_s) $(field s.json gen_tokens_per_s)" >>r.txt
done
echo "static last pair: prompt $(field s.json prompt_tokens_per_s) tokens/s, generation $(field s.json gen_tokens_per_s) tokens/s"
echo "dynamic / static, median of $pairs pairs: prompt $(awk '{print $1 / $2}' r.txt | median)x, generation $(awk '{print $3 / $4}' r.txt | median)x"
