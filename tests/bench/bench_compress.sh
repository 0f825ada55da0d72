#!/usr/bin/env bash
# What each compression stage costs in quality and buys in size and speed,
# on a trained student with its teacher (the quickstart's by default):
#   - unstructured 50%: magnitude vs wanda, perplexity before and after a
#     short recovery distillation (masks fixed);
#   - structured: 25% of the MLP units removed (ffn): file size and
#     inference speed ratio vs the dense model, side by side;
#   - int8: PTQ (calibrated on train) and QAT students vs their f32 deploy.
#
#   bash tests/bench/bench_compress.sh [RETORT] [QS_DIR] [RECOVERY_STEPS]
# Prints one line per model, then a JSON summary. Needs QS_DIR/{data,teacher,
# distill} (run `bash launch/quickstart.sh prepare teacher distill` first);
# uses QS_DIR/qat when present.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
R=${1:-$root/build/trainer/retort}
QS=${2:-$root/quickstart}
steps=${3:-100}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
val=$QS/data/val.h5 train=$QS/data/train.h5 student=$QS/distill/final.h5

ppl() { "$R" eval --model "$1" --data "$val" --json | grep -o '"perplexity": *[0-9.]*' | grep -o '[0-9.]*$'; }
size() { stat -c %s "$1"; }
recover() { # recover NAME PRUNED: short distillation from PRUNED, masks fixed
  mpirun -np 2 -x OMP_NUM_THREADS=1 "$R" train --config "$root/launch/configs/distill.ini" \
    --set "data.train=$train" --set "data.val=$val" --set "distill.teacher=$QS/teacher/final.h5" \
    --set "train.init=$2" --set "train.run_dir=$out/$1" --set "train.steps=$steps" \
    --set train.lr=5e-4 --set train.warmup=10 --set train.eval_every=0 >/dev/null 2>&1
  echo "$out/$1/final.h5"
}
declare -A P
P[dense]=$(ppl "$student")
for m in magnitude wanda; do
  "$R" prune --model "$student" --method $m --sparsity 0.5 --calib "$train" --out "$out/$m.h5" >/dev/null
  P[$m]=$(ppl "$out/$m.h5")
  P[$m+rec]=$(ppl "$(recover $m "$out/$m.h5")")
done
for k in dense magnitude magnitude+rec wanda wanda+rec; do printf '%-16s ppl %s\n' "$k" "${P[$k]}"; done

# structured ffn 25%: size and speed of deploy files, side by side
"$R" prune --model "$student" --method ffn --sparsity 0.25 --calib "$train" --out "$out/ffn.h5" >/dev/null
"$R" export --model "$student" --format deploy --out "$out/dense.f32.h5" 2>/dev/null
"$R" export --model "$out/ffn.h5" --format deploy --out "$out/ffn.f32.h5" 2>/dev/null
P[ffn]=$(ppl "$out/ffn.h5")
tps() { "$R" bench infer --model "$1" --json | grep -o '"tokens_per_s": *[0-9.]*' | grep -o '[0-9.]*$'; }
d_t=() f_t=()
for _ in 1 2 3; do d_t+=("$(tps "$out/dense.f32.h5")"); f_t+=("$(tps "$out/ffn.f32.h5")"); done
med() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
ffn_speed=$(awk -v a="$(med "${f_t[@]}")" -v b="$(med "${d_t[@]}")" 'BEGIN { printf "%.3f", a / b }')
ffn_size=$(awk -v a="$(size "$out/ffn.f32.h5")" -v b="$(size "$out/dense.f32.h5")" 'BEGIN { printf "%.3f", a / b }')
printf 'ffn 25%%          ppl %s, deploy size %s x, inference speed %s x (median of 3, alternating)\n' \
  "${P[ffn]}" "$ffn_size" "$ffn_speed"

# int8: PTQ of the f32 student, QAT student when the quickstart has one
"$R" export --model "$student" --format deploy --int8 --calib "$train" --out "$out/ptq.h5" 2>/dev/null
P[ptq]=$(ppl "$out/ptq.h5")
int8_size=$(awk -v a="$(size "$out/ptq.h5")" -v b="$(size "$out/dense.f32.h5")" 'BEGIN { printf "%.3f", a / b }')
qat_json=""
if [ -f "$QS/qat/final.h5" ]; then
  "$R" export --model "$QS/qat/final.h5" --format deploy --out "$out/qat.f32.h5" 2>/dev/null
  "$R" export --model "$QS/qat/final.h5" --format deploy --int8 --out "$out/qat.int8.h5" 2>/dev/null
  P[qat_f32]=$(ppl "$out/qat.f32.h5")
  P[qat_int8]=$(ppl "$out/qat.int8.h5")
  printf 'QAT student      ppl f32 %s, int8 %s\n' "${P[qat_f32]}" "${P[qat_int8]}"
  qat_json=$(printf ', "qat_f32_ppl": %s, "qat_int8_ppl": %s' "${P[qat_f32]}" "${P[qat_int8]}")
fi
printf 'PTQ int8         ppl %s (f32 %s), deploy size %s x\n' "${P[ptq]}" "${P[dense]}" "$int8_size"
printf '{"dense_ppl": %s, "magnitude50_ppl": %s, "magnitude50_recovered_ppl": %s, "wanda50_ppl": %s, "wanda50_recovered_ppl": %s, "recovery_steps": %s, "ffn25_ppl": %s, "ffn25_size_ratio": %s, "ffn25_speed_ratio": %s, "ptq_int8_ppl": %s, "int8_size_ratio": %s%s}\n' \
  "${P[dense]}" "${P[magnitude]}" "${P[magnitude+rec]}" "${P[wanda]}" "${P[wanda+rec]}" "$steps" \
  "${P[ffn]}" "$ffn_size" "$ffn_speed" "${P[ptq]}" "$int8_size" "$qat_json"
