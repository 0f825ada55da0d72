#!/usr/bin/env bash
# What low-rank factorization buys in file size and inference speed, side
# by side with the dense model it came from, in f32 and int8 deploy files.
#
#   bash tests/bench/bench_lowrank.sh [RETORT] [PAIRS] [RATIOS] [SHAPE]
#
# SHAPE "L C F T V" (default "4 256 1024 128 512": 4 layers, d_model 256,
# d_ff 1024, seq_len 128, vocabulary 512) is trained 2 steps on the
# fortune-cookie corpus (weights for sizes and speed only, not quality),
# factored with `retort prune --method lowrank --rank-ratio X` for each X
# in RATIOS (default "0.25 0.125"), and every model is exported as f32 and
# int8 (static) deploy files. Sizes are of those files. Speed is `retort
# bench infer` prompt tokens/s and KV-cache generation tokens/s, measured
# in PAIRS (default 5) alternating dense/factored runs per precision on
# the same threads (OMP_NUM_THREADS, default 1); the ratio printed is the
# median of the per-pair ratios, so machine load drifts cancel.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
R=${1:-$root/build/trainer/retort}
pairs=${2:-5}
ratios=${3:-0.25 0.125}
source "$root/tests/bench/bench_lib.sh"
bench_train_model "${4:-4 256 1024 128 512}" 'steps = 2\nbatch = 2\nwarmup = 0\n'
export_all() { # NAME CKPT
  "$R" export --model "$2" --format deploy --out "$1.f32.h5" >/dev/null 2>&1
  "$R" export --model "$2" --format deploy --int8 --calib data/train.h5 --out "$1.int8.h5" >/dev/null 2>&1
}
export_all dense run/final.h5
printf '%-22s %8s %12s %12s %14s %14s\n' model params f32_bytes int8_bytes prompt_ratio gen_ratio
for x in $ratios; do
  "$R" prune --model run/final.h5 --method lowrank --rank-ratio "$x" --out "lr$x.h5" >/dev/null
  export_all "lr$x" "lr$x.h5"
  for p in f32 int8; do
    : >"r_$p.txt"
    for i in $(seq "$pairs"); do
      "$R" bench infer --model "dense.$p.h5" --json --steps 5 2>/dev/null >d.json
      "$R" bench infer --model "lr$x.$p.h5" --json --steps 5 2>/dev/null >l.json
      echo "$(field l.json prompt_tokens_per_s) $(field d.json prompt_tokens_per_s) $(field l.json gen_tokens_per_s) $(field d.json gen_tokens_per_s)" >>"r_$p.txt"
    done
    pr=$(awk '{print $1 / $2}' "r_$p.txt" | median)
    gr=$(awk '{print $3 / $4}' "r_$p.txt" | median)
    printf '%-22s %8s %12s %12s %14s %14s\n' "dense vs lr $x ($p)" "$(field l.json params)/$(field d.json params)" \
      "$(stat -c %s "lr$x.f32.h5")/$(stat -c %s dense.f32.h5)" "$(stat -c %s "lr$x.int8.h5")/$(stat -c %s dense.int8.h5)" \
      "${pr}x" "${gr}x"
  done
done
