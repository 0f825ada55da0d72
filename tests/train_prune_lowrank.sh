#!/usr/bin/env bash
# Low-rank factorization end to end (issue 11 item 2): a trained tiny model
# is factored (`retort prune --method lowrank`), the factors are stored
# under their own names with the ranks in /config, recovery training from
# it (train.init) moves the factors and keeps the shape (and resumes bit
# for bit), the deploy export
# evaluates to the checkpoint's loss, and the Hugging Face export (factors
# multiplied back) evaluates to the factored model's loss within 1e-5
# relative; int8 deploy files (static and dynamic) stay within 1e-2 of its
# loss. Bad ranks and energies are one-line errors naming the option.
source "$(dirname "$0")/train_lib.sh"
rt_prepare
rt_config base.ini runs/base steps=60
"$RETORT" train --config base.ini 2>/dev/null || fail "base training failed"

loss() { "$RETORT" eval --model "$1" --data data/val.h5 --json 2>/dev/null |
         python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["loss"]))'; }
close() { python3 -c "import sys; a, b, t = map(float, sys.argv[1:]); sys.exit(abs(a - b) > t * abs(b))" "$@"; }

"$RETORT" prune --model runs/base/final.h5 --method lowrank --rank-ratio 0.25 --out lr.h5 >prune.txt ||
  fail "prune --method lowrank failed"
grep -q "parameter count" prune.txt || fail "no parameter count in the report"
# d_model 32, d_ff 64: rank 8 for every linear
for k in attn.c_attn attn.c_proj mlp.c_fc mlp.c_proj; do
  h5dump -a "/config/rank.$k" lr.h5 | grep -q "(0): 8" || fail "/config rank.$k is not 8"
done
h5dump -H -d /model/transformer.h.1.mlp.c_fc.weight_a lr.h5 | grep -q "( 32, 8 )" ||
  fail "mlp.c_fc.weight_a is not [32, 8]"
h5dump -H -d /model/transformer.h.1.mlp.c_fc.weight_b lr.h5 | grep -q "( 8, 64 )" ||
  fail "mlp.c_fc.weight_b is not [8, 64]"
# --json: one object whose counts and sizes agree with the files (the
# report's end is shared with the mask methods: magnitude checked too)
for m in "lowrank --rank-ratio 0.25" "magnitude --sparsity 0.5"; do
  "$RETORT" prune --model runs/base/final.h5 --method $m --out j_${m%% *}.h5 --json 2>/dev/null \
    >j_${m%% *}.json || fail "prune --method $m --json failed"
  m=${m%% *}
  python3 -c 'import json, os, sys
j = json.load(open(sys.argv[1]))
ok = j["file_bytes"] == os.path.getsize(sys.argv[2]) and j["file_bytes_before"] == os.path.getsize(sys.argv[3])
ok = ok and 0 < j["params_after"] <= j["params_before"] and (sys.argv[4] == "magnitude") == ("input_has_optimizer" in j)
sys.exit(not ok)' j_$m.json j_$m.h5 runs/base/final.h5 $m || { cat j_$m.json; fail "prune --method $m --json report"; }
done
# retort info shows the ranks, as text and as JSON
"$RETORT" info lr.h5 | grep -q "^low-rank .*rank.attn.c_attn=8 rank.attn.c_proj=8 rank.mlp.c_fc=8 rank.mlp.c_proj=8" ||
  fail "retort info does not show the ranks"
"$RETORT" info lr.h5 --json | python3 -c 'import json,sys; r = json.load(sys.stdin)["model"]["rank"]; sys.exit(r != {"attn.c_attn": 8, "attn.c_proj": 8, "mlp.c_fc": 8, "mlp.c_proj": 8})' ||
  fail "retort info --json does not show the ranks"
! "$RETORT" info runs/base/final.h5 | grep -q "^low-rank" || fail "retort info shows ranks for a dense model"
[ "$(stat -c %s lr.h5)" -lt "$(stat -c %s runs/base/final.h5)" ] || fail "the factored file is not smaller"

# activation-weighted (--calib): other factors of the same shape
"$RETORT" prune --model runs/base/final.h5 --method lowrank --rank-ratio 0.25 --calib data/train.h5 \
  --calib-tokens 4096 --out lr_act.h5 >/dev/null 2>&1 || fail "prune lowrank --calib failed"
! h5diff -q lr.h5 lr_act.h5 /model/transformer.h.0.mlp.c_fc.weight_a \
  /model/transformer.h.0.mlp.c_fc.weight_a >/dev/null || fail "--calib changed nothing"
echo "  val loss after factoring at rank 8: plain $(loss lr.h5), activation-weighted $(loss lr_act.h5), dense $(loss runs/base/final.h5)"

# recovery: the factors train, the shape stays
rt_config tune.ini runs/tune steps=10 lr=1e-2 warmup=0
"$RETORT" train --config tune.ini --set train.init=lr.h5 2>/dev/null || fail "recovery training failed"
h5dump -a /config/rank.mlp.c_proj runs/tune/final.h5 | grep -q "(0): 8" || fail "recovery lost the ranks"
for t in transformer.h.0.attn.c_attn.weight_a transformer.h.1.mlp.c_proj.weight_b; do
  ! h5diff -q -d 0 lr.h5 runs/tune/final.h5 "/model/$t" "/model/$t" >/dev/null ||
    fail "$t did not move in recovery training"
done
# a low-rank run resumes bit for bit (the shape comes from the checkpoint)
rt_config res.ini runs/res steps=20 lr=1e-2 warmup=0 checkpoint_every=10 keep_checkpoints=5
"$RETORT" train --config res.ini --set train.init=lr.h5 2>/dev/null || fail "low-rank run failed"
cp runs/res/final.h5 res_ref.h5
"$RETORT" train --config res.ini --set train.init=lr.h5 --resume runs/res/step_00000010.h5 2>/dev/null ||
  fail "low-rank resume failed"
for g in /model /optimizer; do
  h5diff res_ref.h5 runs/res/final.h5 "$g" || fail "resumed low-rank $g differs"
done
M=runs/tune/final.h5
l_ckpt=$(loss $M)

# deploy f32: the same model, the same loss
"$RETORT" export --model $M --format deploy --out lr.f32.h5 2>/dev/null || fail "deploy export failed"
close "$(loss lr.f32.h5)" "$l_ckpt" 1e-6 || fail "deploy f32 loss differs from the checkpoint's"
# Hugging Face: dense weights W_a W_b (float32 products), loss within 1e-5
"$RETORT" export --model $M --format hf --out lr_hf 2>/dev/null || fail "hf export failed"
l_hf=$(loss lr_hf)
close "$l_hf" "$l_ckpt" 1e-5 || fail "hf export loss $l_hf vs factored $l_ckpt"
# int8 (static from calibration, and dynamic): two int8 matmuls per
# linear, the inner rows quantized per token; activation rounding only
"$RETORT" export --model $M --format deploy --int8 --calib data/train.h5 --out lr.int8.h5 2>/dev/null ||
  fail "int8 export failed"
"$RETORT" export --model $M --format deploy --int8 --act dynamic --out lr.dyn.h5 2>/dev/null ||
  fail "dynamic int8 export failed"
h5dump -H -d /model/transformer.h.0.mlp.c_fc.weight_b lr.int8.h5 | grep -q "H5T_STD_I8" ||
  fail "the int8 file does not hold int8 second factors"
l_int8=$(loss lr.int8.h5) l_dyn=$(loss lr.dyn.h5)
close "$l_int8" "$l_ckpt" 1e-2 || fail "int8 loss $l_int8 vs f32 $l_ckpt"
close "$l_dyn" "$l_ckpt" 1e-2 || fail "dynamic int8 loss $l_dyn vs f32 $l_ckpt"
"$RETORT" generate --model lr.int8.h5 --prompt "The" --max-new-tokens 8 --seed 1 >/dev/null 2>&1 ||
  fail "generate from the int8 factored file failed"
echo "  loss: factored $l_ckpt, deploy f32 $(loss lr.f32.h5), hf (multiplied back) $l_hf, int8 $l_int8, int8 dynamic $l_dyn"

# bad input: one line naming the option, non-zero exit
bad() {
  local want=$1 model=runs/base/final.h5; shift
  [ "$1" = --model ] && { model=$2; shift 2; }
  if "$RETORT" prune --model "$model" --method lowrank --out bad.h5 "$@" 2>err.txt >/dev/null; then
    fail "prune $* succeeded"
  fi
  [ "$(wc -l <err.txt)" -eq 1 ] && grep -q -- "$want" err.txt || { cat err.txt; fail "prune $*: no one-line error naming $want"; }
}
bad "--rank 40 is above min(in, out)" --rank 40
bad "--energy" --energy 1.5
bad "--energy" --energy 0
bad "--rank-ratio" --rank-ratio 2
bad "exactly one of" --rank 4 --energy 0.9
bad "--param-ratio" --param-ratio 1.5
bad "low-rank already" --model lr.h5 --rank 4
bad -- "--linears" --rank 4 --linears mlp.c_fx
echo "train_prune_lowrank: ok"
