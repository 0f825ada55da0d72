#!/usr/bin/env bash
# The quickstart pipeline: from the fortune-cookie corpus to a deployable
# int8 student and a compression report, on one machine.
#
#   bash launch/quickstart.sh            # everything, into quickstart/
#   bash launch/quickstart.sh STAGE...   # only these stages (their inputs must exist)
#
# Stages, in order (each reuses its output when it is already there and
# verifies, so a rerun is cheap; an interrupted training stage resumes):
#   setup     install missing Debian packages, configure, build
#   prepare   fortunes -> quickstart/data (BPE tokenizer + train/val shards)
#   teacher   pretrain the teacher (launch/configs/teacher.ini)
#   distill   distill the student: 1 teacher rank + 1 student rank under mpirun
#   scratch   the same student trained from scratch on the same tokens (baseline)
#   qat       quantization-aware distillation, continuing from the distilled student
#   prune     Wanda 50% on the distilled student, then QAT recovery distillation
#   export    deploy files: f32 for every model, int8 for the QAT students
#   report    quickstart/report/report.md + SVG plots, from real eval/bench runs
#   compare   (not in the default list; needs teacher, distill and qat) the
#             compression toolbox side by side on the distilled student:
#             quickstart/compare/report/report.md with PTQ int8 static, int8
#             dynamic, QAT int8, one-shot Wanda 50% + recovery, gradual
#             magnitude 50% (same steps as the recovery), low-rank factors
#             at half the linear parameters + recovery, 16-entry codebook
# Environment: QS (output folder, default quickstart); RETORT_BIN (the
# binary, default build/trainer/retort); QS_TINY=1 shrinks
# every model and run to seconds (what tests/quickstart_tiny.sh checks);
# QS_TINY_STEPS (default 40) sets the tiny runs' steps (the later stages
# run half as many).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
QS=${QS:-quickstart}
R=${RETORT_BIN:-$root/build/trainer/retort}
cfg=$root/launch/configs
cores=$(nproc 2>/dev/null || echo 2)
all=(setup prepare teacher distill scratch qat prune export report)
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=("${all[@]}")
t_start=$SECONDS
summary=()

say() { printf '\n== %s\n' "$*" >&2; }
# done_ok FILE: FILE exists and every checksum in it verifies
done_ok() { [ -f "$1" ] && "$R" info --verify "$1" >/dev/null 2>&1; }
# with QS != quickstart, configs point into $QS too
sets() { printf -- '--set\ndata.train=%s/data/train.h5\n--set\ndata.val=%s/data/val.h5\n--set\ndata.tokenizer=%s/data/\n' "$QS" "$QS" "$QS"; }
mapfile -t DATA_SETS < <(sets)
TEACHER_SETS=() STUDENT_SETS=() vocab=4096 stage_steps=150
if [ "${QS_TINY:-0}" = 1 ]; then
  n=${QS_TINY_STEPS:-40}
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 20 ] ||
    { echo "quickstart: QS_TINY_STEPS=$n: need a whole number >= 20" >&2; exit 2; }
  small=(--set model.seq_len=32 --set train.steps=$n --set train.eval_every=$((n / 2))
         --set train.eval_tokens=4096 --set train.checkpoint_every=$((n / 2)) --set train.warmup=5)
  TEACHER_SETS=("${small[@]}" --set model.n_layer=2 --set model.d_model=64 --set model.d_ff=128
                --set train.precision=f32)
  STUDENT_SETS=("${small[@]}" --set model.n_layer=1 --set model.d_model=32 --set model.d_ff=64)
  vocab=512 stage_steps=$((n / 2))
fi

# train_stage NAME RUN_DIR NP THREADS CONFIG [--set ...]: runs (or resumes)
# a training run unless RUN_DIR/final.h5 is already complete.
train_stage() {
  local name=$1 run=$2 np=$3 threads=$4 conf=$5
  shift 5
  if done_ok "$run/final.h5"; then say "$name: reusing $run/final.h5"; return; fi
  local resume=()
  [ -f "$run/latest" ] && resume=(--resume latest) && say "$name: resuming $run"
  say "$name: $conf -> $run ($np rank(s) x $threads thread(s))"
  local t0=$SECONDS
  if [ "$np" -gt 1 ]; then
    mpirun -np "$np" -x OMP_NUM_THREADS="$threads" "$R" train --config "$conf" \
      "${DATA_SETS[@]}" --set "train.run_dir=$run" "$@" "${resume[@]}"
  else
    OMP_NUM_THREADS=$threads "$R" train --config "$conf" "${DATA_SETS[@]}" \
      --set "train.run_dir=$run" "$@" "${resume[@]}"
  fi
  summary+=("$name: $((SECONDS - t0)) s")
}

per_rank=$(( cores / 2 > 0 ? cores / 2 : 1 ))
for stage in "${stages[@]}"; do
  case $stage in
  setup)
    bash "$root/launch/setup.sh" ;;
  prepare)
    if [ -f "$QS/data/train.h5" ] && [ -f "$QS/data/val.h5" ] && [ -f "$QS/data/merges.txt" ]; then
      say "prepare: reusing $QS/data"
    else
      say "prepare: /usr/share/games/fortunes -> $QS/data"
      "$R" prepare --input /usr/share/games/fortunes --out "$QS/data" --vocab-size "$vocab"
    fi ;;
  teacher)
    train_stage teacher "$QS/teacher" 1 "$cores" "$cfg/teacher.ini" "${TEACHER_SETS[@]}" ;;
  distill)
    train_stage distill "$QS/distill" 2 "$per_rank" "$cfg/distill.ini" "${STUDENT_SETS[@]}" \
      --set "distill.teacher=$QS/teacher/final.h5" ;;
  scratch)
    train_stage scratch "$QS/scratch" 1 "$cores" "$cfg/student.ini" "${STUDENT_SETS[@]}" ;;
  qat)
    train_stage qat "$QS/qat" 2 "$per_rank" "$cfg/distill.ini" "${STUDENT_SETS[@]}" \
      --set "distill.teacher=$QS/teacher/final.h5" --set "train.init=$QS/distill/final.h5" \
      --set qat.enabled=true --set train.steps=$stage_steps --set train.lr=3e-4 --set train.warmup=10 \
      --set train.eval_every=50 ;;
  prune)
    if done_ok "$QS/pruned.h5"; then say "prune: reusing $QS/pruned.h5"; else
      say "prune: wanda 50% of $QS/distill/final.h5"
      "$R" prune --model "$QS/distill/final.h5" --method wanda --sparsity 0.5 \
        --calib "$QS/data/train.h5" --out "$QS/pruned.h5"
    fi
    train_stage recover "$QS/recover" 2 "$per_rank" "$cfg/distill.ini" "${STUDENT_SETS[@]}" \
      --set "distill.teacher=$QS/teacher/final.h5" --set "train.init=$QS/pruned.h5" \
      --set qat.enabled=true --set train.steps=$stage_steps --set train.lr=5e-4 --set train.warmup=10 \
      --set train.eval_every=50 ;;
  export)
    mkdir -p "$QS/deploy"
    for m in teacher scratch distill qat recover; do
      done_ok "$QS/deploy/$m.f32.h5" ||
        "$R" export --model "$QS/$m/final.h5" --format deploy --out "$QS/deploy/$m.f32.h5"
    done
    for m in qat recover; do
      done_ok "$QS/deploy/$m.int8.h5" ||
        "$R" export --model "$QS/$m/final.h5" --format deploy --int8 --out "$QS/deploy/$m.int8.h5"
    done
    done_ok "$QS/deploy/distill.ptq.int8.h5" ||
      "$R" export --model "$QS/distill/final.h5" --format deploy --int8 \
        --calib "$QS/data/train.h5" --out "$QS/deploy/distill.ptq.int8.h5" ;;
  report)
    newer=1
    for f in "$QS"/deploy/*.h5; do [ "$QS/report/report.md" -nt "$f" ] || newer=0; done
    if [ -f "$QS/report/report.md" ] && [ $newer = 1 ]; then
      say "report: reusing $QS/report/report.md (newer than every deploy file)"
      continue
    fi
    say "report: $QS/report"
    OMP_NUM_THREADS=$cores "$R" report --out "$QS/report" --data "$QS/data/val.h5" \
      --teacher "$QS/teacher/final.h5" \
      --model "teacher=$QS/deploy/teacher.f32.h5" \
      --model "student (scratch)=$QS/deploy/scratch.f32.h5" \
      --model "student (distilled)=$QS/deploy/distill.f32.h5" \
      --model "distilled + PTQ int8=$QS/deploy/distill.ptq.int8.h5" \
      --model "distilled + QAT int8=$QS/deploy/qat.int8.h5" \
      --model "+ wanda 50% + QAT int8=$QS/deploy/recover.int8.h5" \
      --curve "teacher=$QS/teacher" --curve "student (scratch)=$QS/scratch" \
      --curve "student (distilled)=$QS/distill"
    echo "report: $QS/report/report.md" >&2 ;;
  compare)
    cmp=$QS/compare
    mkdir -p "$cmp/deploy"
    kd=(--set "distill.teacher=$QS/teacher/final.h5" --set train.steps=$stage_steps
        --set train.lr=5e-4 --set train.warmup=10 --set train.eval_every=50)
    done_ok "$cmp/wanda.h5" ||
      "$R" prune --model "$QS/distill/final.h5" --method wanda --sparsity 0.5 \
        --calib "$QS/data/train.h5" --out "$cmp/wanda.h5"
    train_stage "compare: wanda recovery" "$cmp/wanda_recover" 2 "$per_rank" "$cfg/distill.ini" \
      "${STUDENT_SETS[@]}" "${kd[@]}" --set "train.init=$cmp/wanda.h5"
    # the same steps, pruning as it goes: 0 -> 50% over the first two thirds
    train_stage "compare: gradual magnitude" "$cmp/gradual" 2 "$per_rank" "$cfg/distill.ini" \
      "${STUDENT_SETS[@]}" "${kd[@]}" --set "train.init=$QS/distill/final.h5" \
      --set prune.method=magnitude --set prune.schedule=gradual --set prune.sparsity=0.5 \
      --set prune.start_step=0 --set prune.end_step=$((stage_steps * 2 / 3)) \
      --set prune.every=$((stage_steps / 10))
    # low-rank: factors holding half of each linear's parameters, then
    # the same recovery distillation as Wanda's
    done_ok "$cmp/lowrank.h5" ||
      "$R" prune --model "$QS/distill/final.h5" --method lowrank --param-ratio 0.5 \
        --out "$cmp/lowrank.h5"
    train_stage "compare: lowrank recovery" "$cmp/lowrank_recover" 2 "$per_rank" "$cfg/distill.ini" \
      "${STUDENT_SETS[@]}" "${kd[@]}" --set "train.init=$cmp/lowrank.h5"
    d=$cmp/deploy
    ex() { local out=$1; shift; done_ok "$out" || "$R" export --format deploy --out "$out" "$@"; }
    ex "$d/distill.f32.h5" --model "$QS/distill/final.h5"
    ex "$d/ptq.int8.h5" --model "$QS/distill/final.h5" --int8 --calib "$QS/data/train.h5"
    ex "$d/dynamic.int8.h5" --model "$QS/distill/final.h5" --int8 --act dynamic
    ex "$d/qat.int8.h5" --model "$QS/qat/final.h5" --int8
    ex "$d/wanda.f32.h5" --model "$cmp/wanda_recover/final.h5"
    ex "$d/gradual.f32.h5" --model "$cmp/gradual/final.h5"
    ex "$d/codebook16.h5" --model "$QS/distill/final.h5" --codebook 16
    ex "$d/lowrank.f32.h5" --model "$cmp/lowrank_recover/final.h5"
    say "compare: $cmp/report"
    OMP_NUM_THREADS=$cores "$R" report --out "$cmp/report" --data "$QS/data/val.h5" \
      --teacher "$QS/teacher/final.h5" \
      --model "distilled (f32)=$d/distill.f32.h5" \
      --model "PTQ int8 static=$d/ptq.int8.h5" \
      --model "int8 dynamic=$d/dynamic.int8.h5" \
      --model "QAT int8=$d/qat.int8.h5" \
      --model "wanda 50% + recovery=$d/wanda.f32.h5" \
      --model "gradual magnitude 50%=$d/gradual.f32.h5" \
      --model "codebook 16=$d/codebook16.h5" \
      --model "low-rank 50% + recovery=$d/lowrank.f32.h5"
    echo "compare: $cmp/report/report.md" >&2 ;;
  *)
    echo "quickstart: unknown stage '$stage' (stages: ${all[*]} compare)" >&2; exit 2 ;;
  esac
done
say "quickstart: done in $((SECONDS - t_start)) s"
for l in "${summary[@]}"; do echo "  $l" >&2; done
