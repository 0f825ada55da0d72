#!/usr/bin/env bash
# train.recompute = true (activation recomputation per block) trains to the
# same checkpoint, bit for bit (h5diff with no tolerance), as keeping every
# layer's activations: f32 with gradient accumulation (2 micro-batches) and
# evaluation, bf16, QAT, and distillation from a teacher rank with a
# feature-map loss (which reads the student's hidden states); and the
# recomputing model holds less activation memory (train.c notes it). 3
# layers, so that the backward recomputes two blocks.
source "$(dirname "$0")/train_lib.sh"
rt_prepare
# same_run NAME [train_key=value ...] [-- raw INI lines...]: trains NAME
# without and with recompute and compares the final checkpoints
same_run() {
  local name=$1
  shift
  for rc in false true; do
    rt_config $name.$rc.ini runs/$name.$rc "steps=6" "micro_batch=2" "eval_every=3" \
      "checkpoint_every=0" "recompute=$rc" "$@"
    sed -i 's/^n_layer = 2/n_layer = 3/' $name.$rc.ini
    local np=1
    grep -q '^teachers = 1' $name.$rc.ini && np=2
    mpirun -np $np "$RETORT" train --config $name.$rc.ini 2>$name.$rc.log ||
      { cat $name.$rc.log; fail "$name run (recompute = $rc) failed"; }
  done
  # the option reaches the model: less activation memory, as train.c notes it
  local mib_false mib_true
  mib_false=$(sed -n 's/.*student activations: \([0-9.]*\) MiB.*/\1/p' $name.false.log)
  mib_true=$(sed -n 's/.*student activations: \([0-9.]*\) MiB.*/\1/p' $name.true.log)
  awk -v a="$mib_false" -v b="$mib_true" 'BEGIN { exit !(a != "" && b != "" && b < a) }' ||
    fail "$name: activations $mib_true MiB with recompute, $mib_false MiB without"
  local groups=$(h5ls runs/$name.false/final.h5 | awk '$1 != "meta" { print "/" $1 }')
  for g in $groups; do
    h5diff runs/$name.false/final.h5 runs/$name.true/final.h5 $g >$name.diff ||
      { head -20 $name.diff; fail "$name: $g differs with train.recompute = true"; }
  done
  echo "$name: $(echo $groups) equal; activations $mib_false -> $mib_true MiB"
}
same_run f32
same_run bf16 "precision=bf16"
same_run qat -- "[qat]" "enabled = true" "calib_steps = 2"
rt_config teacher.ini runs/teacher "steps=4" "checkpoint_every=0"
"$RETORT" train --config teacher.ini 2>teacher.log || { cat teacher.log; fail "teacher run failed"; }
same_run distill -- "[distill]" "teachers = 1" "teacher = runs/teacher/final.h5" \
  "labels = topk" "topk = 16" "beta = 0.5" "feature_map = 1:2,3:1"
grep -q '"feat"' runs/distill.true/metrics.jsonl || fail "distill: no feature loss in metrics.jsonl"
echo "train_recompute: ok"
