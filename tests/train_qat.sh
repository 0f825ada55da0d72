#!/usr/bin/env bash
# QAT calibration (issue 16 item 5) counts steps and sees only training
# micro-batches: with 2 micro-batches a step and calib_steps = 3,
# metrics.jsonl shows calibration on for steps 1-2 and off from step 3, and
# a run that evaluates after every step ends with the same /qat/state and
# weights, bit for bit, as one that evaluates only at the end.
source "$(dirname "$0")/train_lib.sh"
rt_prepare
for ev in 1 0; do
  rt_config q$ev.ini runs/q$ev "steps=6" "micro_batch=2" "log_every=1" "eval_every=$ev" \
    "checkpoint_every=0" -- "[qat]" "enabled = true" "calib_steps = 3"
  "$RETORT" train --config q$ev.ini 2>q$ev.log || { cat q$ev.log; fail "QAT run (eval_every=$ev) failed"; }
done
cal=$(grep -o '"qat_calibrating":[0-9]*' runs/q0/metrics.jsonl | cut -d: -f2 | tr '\n' ' ')
[ "$cal" = "1 1 0 0 0 0 " ] || fail "qat_calibrating per step is '$cal', expected '1 1 0 0 0 0 '"
seen=$(h5dump -d /qat/state -s 0 -c 1 runs/q0/final.h5 | awk '/\(0\)/ { print $2; exit }')
[ "$seen" = 3 ] || fail "/qat/state counts $seen calibration steps, expected 3"
h5diff runs/q0/final.h5 runs/q1/final.h5 /qat/state >/dev/null ||
  fail "evaluation forwards moved the QAT ranges (h5diff /qat/state)"
h5diff runs/q0/final.h5 runs/q1/final.h5 /model >/dev/null || fail "evaluation changed the weights"
echo "train_qat: ok"
