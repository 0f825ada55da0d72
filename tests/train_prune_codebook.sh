#!/usr/bin/env bash
# Fine-tuning with shared weights (issue 11 item 3): a model exported with
# a 16-entry codebook per tensor is fine-tuned with train.shared_weights,
# each cluster's members moved by the sum of their gradients. Every linear
# weight of the result still holds at most 16 distinct values (without
# sharing they spread to thousands: the control), the values moved, and
# exporting the result with --codebook 16 again is lossless: it evaluates
# to the fine-tuned checkpoint's loss within 1e-6 relative.
source "$(dirname "$0")/train_lib.sh"
rt_prepare
rt_config base.ini runs/base steps=60
"$RETORT" train --config base.ini 2>/dev/null || fail "base training failed"
"$RETORT" export --model runs/base/final.h5 --format deploy --codebook 16 --out cb.h5 2>/dev/null ||
  fail "codebook export failed"

loss() { "$RETORT" eval --model "$1" --data data/val.h5 --json 2>/dev/null |
         python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["loss"]))'; }
# the most distinct values over the linear weights of an f32 checkpoint
distinct() {
  python3 - "$1" <<'PY'
import subprocess, sys
worst = 0
for l in range(2):
    for t in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
        out = subprocess.run(["h5dump", "-A", "0", "-y", "-w", "0", "-d",
                              "/model/transformer.h.%d.%s.weight" % (l, t), sys.argv[1]],
                             capture_output=True, text=True, check=True).stdout
        body = out[out.index("DATA {") + 6: out.rindex("}")]
        worst = max(worst, len(set(body.replace(",", " ").replace("}", " ").split())))
print(worst)
PY
}
rt_config s.ini runs/s steps=40 lr=1e-3 warmup=0
"$RETORT" train --config s.ini --set train.init=cb.h5 --set train.shared_weights=true 2>/dev/null ||
  fail "shared-weight fine-tuning failed"
rt_config u.ini runs/u steps=40 lr=1e-3 warmup=0
"$RETORT" train --config u.ini --set train.init=cb.h5 2>/dev/null || fail "plain fine-tuning failed"
ds=$(distinct runs/s/final.h5) du=$(distinct runs/u/final.h5)
echo "  most distinct values per linear weight: shared $ds, not shared $du"
[ "$ds" -le 16 ] || fail "shared fine-tuning left $ds distinct values in a tensor"
[ "$du" -gt 16 ] || fail "the control (no sharing) kept $du values: the check cannot fail"
"$RETORT" export --model cb.h5 --format deploy --out cb.f32.h5 2>/dev/null
! h5diff -q cb.f32.h5 runs/s/final.h5 /model/transformer.h.0.mlp.c_fc.weight \
  /model/transformer.h.0.mlp.c_fc.weight >/dev/null || fail "the shared weights did not move"
"$RETORT" export --model runs/s/final.h5 --format deploy --codebook 16 --out s.cb.h5 2>/dev/null
l_cb=$(loss cb.h5) l_s=$(loss runs/s/final.h5) l_re=$(loss s.cb.h5) l_u=$(loss runs/u/final.h5)
echo "  val loss: codebook 16 $l_cb, shared fine-tuned $l_s, re-exported codebook $l_re, unshared $l_u"
python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 1e-6 * abs(b))" "$l_re" "$l_s" ||
  fail "the re-exported codebook ($l_re) is not the fine-tuned model ($l_s)"
# sharing and pruning masks exclude each other
rt_config b.ini runs/b steps=30 -- "[prune]" "method = magnitude" "schedule = gradual" "end_step = 20"
if "$RETORT" train --config b.ini --set train.shared_weights=true --set train.init=cb.h5 2>b.err; then
  fail "shared weights with gradual pruning accepted"
fi
grep -q "train.shared_weights" b.err && [ "$(wc -l <b.err)" -eq 1 ] || { cat b.err; fail "no one-line error"; }
echo "train_prune_codebook: ok"
