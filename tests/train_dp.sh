#!/usr/bin/env bash
# (Two student ranks also verify bit-identical weights at every checkpoint:
# train.c verify_replicas fails the run otherwise.)
# Data-parallel training gives the same loss curve on 1 and 2 student
# ranks with the same global batch (up to float reduction order: 1e-4
# relative), and a distillation run with a teacher rank trains, reports its
# distillation metrics and ends with a final checkpoint.
source "$(dirname "$0")/train_lib.sh"
rt_prepare
rt_config one.ini runs/one
rt_config two.ini runs/two
"$RETORT" train --config one.ini 2>one.log || { cat one.log; fail "1-rank training failed"; }
mpirun -np 2 "$RETORT" train --config two.ini 2>two.log || { cat two.log; fail "2-rank training failed"; }
paste <(rt_losses runs/one/metrics.jsonl) <(rt_losses runs/two/metrics.jsonl) >pairs
[ "$(wc -l <pairs)" -ge 6 ] || fail "expected at least 6 logged steps, got $(wc -l <pairs)"
awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-4 * $1) { print "step " NR ": " $1 " vs " $2; bad = 1 } }
     END { exit bad }' pairs || fail "1-rank and 2-rank losses differ"
first=$(rt_losses runs/one/metrics.jsonl | head -1); last=$(rt_losses runs/one/metrics.jsonl | tail -1)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.3) }' || fail "loss did not fall: $first -> $last"
grep -q '"val_loss"' runs/one/metrics.jsonl || fail "no val_loss in metrics.jsonl"

# distillation: teacher = the model just trained, a smaller student
rt_config dist.ini runs/dist -- "[distill]" "teachers = 1" "teacher = runs/one/final.h5" \
  "labels = topk" "topk = 16" "beta = 0.5" "feature_map = 1:2"
sed -i 's/^d_model = 32/d_model = 16/; s/^n_layer = 2/n_layer = 1/' dist.ini
mpirun -np 3 "$RETORT" train --config dist.ini 2>dist.log || { cat dist.log; fail "distillation failed"; }
for k in kd ce feat agree stall wire_bytes_per_token raw_bytes_per_token; do
  grep -q "\"$k\"" runs/dist/metrics.jsonl || fail "metrics.jsonl lacks $k"
done
[ -f runs/dist/final.h5 ] || fail "no final.h5 after distillation"
h5dump -H -d /distill/projection runs/dist/final.h5 >/dev/null || fail "no feature projection saved"
echo "train_dp: ok"
