#!/usr/bin/env bash
# Pruned weights stay zero through recovery training: a model is pruned
# (magnitude 50% and 2:4), fine-tuned from the pruned checkpoint with
# train.init (plain and with a teacher rank), and every weight whose mask
# is 0 must still be exactly 0 while the kept weights have moved. The
# masks must also be saved again in the fine-tuned checkpoints.
source "$(dirname "$0")/train_lib.sh"
rt_prepare
rt_config base.ini runs/base
"$RETORT" train --config base.ini 2>/dev/null || fail "base training failed"

# values of one dataset, one per line (h5dump -y: no indices, -A 0: no attributes)
values() { h5dump -A 0 -y -w 0 -d "$2" "$1" | sed -n '/DATA {/,/}/p' | sed '1d;$d' | tr ', ' '\n\n' | grep -v '^$'; }
check() { # check PRUNED TUNED TENSOR
  local t=$3
  paste <(values "$1" "/prune/mask/$t") <(values "$1" "/model/$t") <(values "$2" "/model/$t") >cmp.txt
  awk '{ if ($1 == 0) { m++; if ($3 + 0 != 0) bad++ } else if ($2 != $3) moved++ }
       END { printf "  %s: %d masked, %d of them non-zero after training, %d kept weights moved\n", t, m, bad, moved;
             exit !(m > 0 && bad == 0 && moved > 0) }' t="$t" cmp.txt
}
for method in magnitude 2:4; do
  "$RETORT" prune --model runs/base/final.h5 --method "$method" --sparsity 0.5 --out pruned.h5 >/dev/null
  rt_config tune.ini runs/tune steps=10 lr=1e-2 warmup=0
  "$RETORT" train --config tune.ini --set train.init=pruned.h5 2>/dev/null || fail "plain recovery failed"
  for t in transformer.h.0.attn.c_attn.weight transformer.h.1.mlp.c_proj.weight; do
    check pruned.h5 runs/tune/final.h5 "$t" || fail "$method: masked weights moved in $t"
  done
  h5dump -H -d "/prune/mask/transformer.h.0.attn.c_attn.weight" runs/tune/final.h5 >/dev/null ||
    fail "$method: the fine-tuned checkpoint lost its masks"
  rt_config kd.ini runs/kd steps=10 lr=1e-2 warmup=0 -- "[distill]" "teachers = 1" \
    "teacher = runs/base/final.h5" "labels = topk" "topk = 8"
  mpirun -np 2 "$RETORT" train --config kd.ini --set train.init=pruned.h5 2>/dev/null ||
    fail "recovery distillation failed"
  check pruned.h5 runs/kd/final.h5 transformer.h.1.mlp.c_fc.weight || fail "$method: masked weights moved under distillation"
  rm -rf runs/tune runs/kd
done
echo "train_prune_recovery: ok"
