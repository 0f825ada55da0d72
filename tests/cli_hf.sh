#!/usr/bin/env bash
# Hugging Face GPT-2 folders through the retort binary (fixtures: tests/
# fixtures/hf, written by gen_hf_fixture.py with PyTorch, committed):
#   - `retort eval` on the F32, F16 (names without "transformer.", old
#     attn.bias buffers) and BF16 (sharded) folders matches PyTorch's loss on
#     the same windows within 1e-5 relative (the reference uses the weights
#     as stored, so the bound is the same for every dtype);
#   - info / info --verify, generate, prune, eval --teacher, report and
#     train.init read a folder;
#   - a short distillation with a folder as the teacher (48 positions, the
#     student 16) runs, and so does one from an int8 deploy file exported
#     from that folder;
#   - `export --format hf` of a bf16 copy, an f16 folder and a head-pruned
#     model (heads padded back as zeros) is read by PyTorch with its own
#     safetensors reader (gen_hf_fixture.py --check-export, losses
#     committed in export_losses.txt): retort eval on each export matches
#     within 1e-5 relative, and the padded export computes exactly the loss
#     of the pruned model;
#   - every broken input gives one line on stderr naming the file, non-zero
#     exit: truncated safetensors, a header length past the file, data
#     offsets outside the data block, overlapping tensors, an unknown dtype,
#     a shape config.json disagrees with, a missing tensor, malformed
#     config.json, a missing tokenizer file, unsupported config keys.
# Usage: cli_hf.sh RETORT
set -u
bin=${1:?usage: cli_hf.sh path/to/retort}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fx=$here/fixtures/hf
. "$here/cli_lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
json_num() { grep -o "\"$1\": *[-0-9.eE+]*" "$tmp/out" | head -1 | sed 's/.*: *//'; }
# eval_vs_ref MODEL KEY REFS WHAT: `retort eval` of MODEL on val.h5 gives
# the loss that the PyTorch reference file REFS lists under KEY (1e-5 relative)
eval_vs_ref() {
  run eval --model "$1" --data "$fx/val.h5" --json
  check '[ $rc -eq 0 ]' "eval of $4 exits 0"
  got=$(json_num loss) want=$(awk -v k="$2" '$1 == k { print $2 }' "$3")
  echo "$4: retort $got, PyTorch $want"
  check 'awk -v g="$got" -v w="$want" "BEGIN { d = (g - w) / w; exit !(g != \"\" && d < 1e-5 && d > -1e-5) }"' \
        "$4: loss $got vs PyTorch $want (1e-5 relative)"
}

# --- eval matches PyTorch -------------------------------------------------
for d in f32 f16_bare bf16_sharded; do
  eval_vs_ref "$fx/$d" "$d" "$fx/losses.txt" "the $d folder"
done

run info "$fx/bf16_sharded"
check '[ $rc -eq 0 ] && grep -q "2 safetensors files, BF16" "$tmp/out"' "info on a sharded folder"
run info --verify "$fx/f16_bare"
check '[ $rc -eq 0 ] && grep -q "safetensors has no checksums" "$tmp/out"' "info --verify on a folder says what it checked"

# --- every command that takes a model takes a folder --------------------------
run generate --model "$fx/f32" --tokenizer "$fx/f32" --prompt "It was" --max-new-tokens 4 --temperature 0
check '[ $rc -eq 0 ] && grep -q "^It was" "$tmp/out"' "generate from a folder (tokenizer from the folder)"
run prune --model "$fx/f32" --method magnitude --sparsity 0.5 --out "$tmp/pruned.h5"
check '[ $rc -eq 0 ] && grep -q "file size *176816 ->" "$tmp/out"' "prune a folder (its size is config.json + safetensors)"
run eval --model "$tmp/pruned.h5" --teacher "$fx/f32" --data "$fx/val.h5" --json
check '[ $rc -eq 0 ] && grep -q "\"agreement\"" "$tmp/out"' "eval with a folder as --teacher"
run report --out "$tmp/rep" --data "$fx/val.h5" --model "a=$fx/f16_bare" --teacher "$fx/f32" --no-bench
check '[ $rc -eq 0 ] && grep -q "f16_bare" "$tmp/rep/report.md"' "report on folders"

# --- distillation from folders -----------------------------------------------
cat >"$tmp/d.ini" <<EOF
[model]
n_layer = 1
n_head = 2
d_model = 16
d_ff = 32
seq_len = 16
[data]
train = $fx/val.h5
val = $fx/val.h5
tokenizer = $fx/f32
[train]
run_dir = $tmp/run
steps = 3
batch = 2
lr = 1e-3
warmup = 1
eval_every = 3
eval_tokens = 64
checkpoint_every = 3
log_every = 1
[distill]
teachers = 1
teacher = $fx/bf16_sharded
labels = topk
topk = 8
feature_map = 1:2
EOF
OMP_NUM_THREADS=1 mpiexec -n 2 "$bin" train --config "$tmp/d.ini" >"$tmp/out" 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && [ -f "$tmp/run/final.h5" ]' "distill from a sharded BF16 folder (48 positions, student 16)"

OMP_NUM_THREADS=1 mpiexec -n 1 "$bin" train --config "$tmp/d.ini" --set "train.run_dir=$tmp/runi" \
  --set "train.init=$fx/f16_bare" --set distill.teachers=0 >"$tmp/out" 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && [ -f "$tmp/runi/final.h5" ]' "train.init from a folder"

run export --model "$fx/f32" --format deploy --int8 --calib "$fx/val.h5" --out "$tmp/t8.h5"
check '[ $rc -eq 0 ]' "export an int8 deploy file from a folder"
OMP_NUM_THREADS=1 mpiexec -n 2 "$bin" train --config "$tmp/d.ini" --set "train.run_dir=$tmp/run8" \
  --set "distill.teacher=$tmp/t8.h5" >"$tmp/out" 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && [ -f "$tmp/run8/final.h5" ]' "distill from an int8 deploy teacher"

# --- export --format hf, read back by PyTorch --------------------------------------
# export_losses.txt: gen_hf_fixture.py --check-export read these same exports
# with its own safetensors reader (not retort's) and computed the loss.
"$bin" export --model "$fx/f32" --format hf --dtype bf16 --out "$tmp/ex_bf16" 2>"$tmp/err"
"$bin" prune --model "$fx/f32" --method heads --sparsity 0.5 --out "$tmp/heads.h5" >/dev/null 2>&1
"$bin" export --model "$tmp/heads.h5" --format hf --tokenizer "$fx/f32" --out "$tmp/ex_heads" 2>"$tmp/err"
check 'grep -q "padded back as zeros" "$tmp/err"' "export of a head-pruned model says it pads"
"$bin" export --model "$fx/f16_bare" --format hf --dtype f16 --out "$tmp/ex_f16" 2>"$tmp/err"
for d in bf16 heads f16; do
  eval_vs_ref "$tmp/ex_$d" "$d" "$fx/export_losses.txt" "the hf export $d"
done
run eval --model "$tmp/heads.h5" --data "$fx/val.h5" --json
pruned=$(json_num loss)
run eval --model "$tmp/ex_heads" --data "$fx/val.h5" --json
check '[ -n "$pruned" ] && [ "$(json_num loss)" = "$pruned" ]' \
  "the padded export computes exactly what the head-pruned model computes"
for f in config.json generation_config.json model.safetensors vocab.json merges.txt \
         tokenizer_config.json special_tokens_map.json; do
  check '[ -s "$tmp/ex_bf16/$f" ]' "hf export writes $f"
done
check 'grep -q "\"torch_dtype\": \"bfloat16\"" "$tmp/ex_bf16/config.json"' "config.json torch_dtype bfloat16"
run export --model "$tmp/heads.h5" --format hf --out "$tmp/ex_notok"
expect_error "records no tokenizer folder; pass --tokenizer" "hf export without a tokenizer"
run export --model "$fx/f32" --format gguf --int8 --out "$tmp/x.gguf"
expect_error "--int8 and --calib are for --format deploy" "gguf export with --int8"

# --- broken inputs -----------------------------------------------------------
# st_write FILE JSON DATA_BYTES: a safetensors file with that header.
st_write() {
  local n=${#2}
  printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x\\x00\\x00\\x00\\x00' $((n & 255)) \
    $(((n >> 8) & 255)) $(((n >> 16) & 255)) $(((n >> 24) & 255)))" >"$1"
  printf '%s' "$2" >>"$1"
  head -c "$3" /dev/zero >>"$1"
}
# fresh NAME: a copy of the F32 folder at $tmp/NAME
fresh() { rm -rf "${tmp:?}/$1"; cp -r "$fx/f32" "$tmp/$1"; d=$tmp/$1 st=$tmp/$1/model.safetensors; }
size=$(stat -c %s "$fx/f32/model.safetensors")

fresh trunc; head -c 5 "$fx/f32/model.safetensors" >"$st"
run eval --model "$d" --data "$fx/val.h5"; expect_error "$st: truncated" "5-byte safetensors"
fresh hdr; head -c 1000 "$fx/f32/model.safetensors" >"$st"
run eval --model "$d" --data "$fx/val.h5"; expect_error "$st: header length" "header length past the file"
fresh data; head -c $((size - 64)) "$fx/f32/model.safetensors" >"$st"
run eval --model "$d" --data "$fx/val.h5"; expect_error "lie outside" "data offsets past the data block"
check 'grep -qF "$st" "$tmp/err"' "data offsets past the data block: names the file"
fresh overlap
st_write "$st" '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}' 12
run eval --model "$d" --data "$fx/val.h5"; expect_error "$st: tensors a and b overlap" "overlapping tensors"
fresh dtype
st_write "$st" '{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}' 4
run eval --model "$d" --data "$fx/val.h5"; expect_error "$st: tensor a has an unknown dtype" "unknown dtype"
fresh i64
st_write "$st" '{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}' 8
run eval --model "$d" --data "$fx/val.h5"; expect_error "$st: tensor a is I64" "unsupported dtype"
fresh json; st_write "$st" '{"a":{"dtype":' 0
run eval --model "$d" --data "$fx/val.h5"; expect_error "$st: header is not valid JSON" "bad JSON header"
fresh shape; sed -i 's/"n_inner": null/"n_inner": 64/' "$d/config.json"
run eval --model "$d" --data "$fx/val.h5"
expect_error "$st: transformer.h.0.mlp.c_fc.weight has shape [32, 128], config.json says [32, 64]" \
  "shape disagrees with config.json"
fresh missing; sed -i 's/"n_layer": 2/"n_layer": 3/' "$d/config.json"
run eval --model "$d" --data "$fx/val.h5"; expect_error "transformer.h.2.ln_1.weight (or h.2.ln_1.weight) is missing" "missing tensor"
check 'grep -qF "$st" "$tmp/err"' "missing tensor: names the file"
fresh badcfg; printf '{"n_layer": 2,' >"$d/config.json"
run eval --model "$d" --data "$fx/val.h5"; expect_error "$d/config.json: malformed JSON" "malformed config.json"
fresh nokey; sed -i '/"n_head"/d' "$d/config.json"
run eval --model "$d" --data "$fx/val.h5"; expect_error "$d/config.json: key n_head is missing" "config.json without n_head"
fresh act; sed -i 's/"gelu_new"/"relu"/' "$d/config.json"
run eval --model "$d" --data "$fx/val.h5"; expect_error "$d/config.json: activation_function" "activation relu"
fresh eps; sed -i 's/"layer_norm_epsilon": 1e-05/"layer_norm_epsilon": 1e-06/' "$d/config.json"
run eval --model "$d" --data "$fx/val.h5"; expect_error "$d/config.json: layer_norm_epsilon" "layer_norm_epsilon 1e-6"
fresh inv; sed -i 's/"n_layer": 2,/"n_layer": 2, "scale_attn_by_inverse_layer_idx": true,/' "$d/config.json"
run eval --model "$d" --data "$fx/val.h5"; expect_error "$d/config.json: scale_attn_by_inverse_layer_idx" "scale_attn_by_inverse_layer_idx"
fresh reorder; sed -i 's/"n_layer": 2,/"n_layer": 2, "reorder_and_upcast_attn": true,/' "$d/config.json"
run eval --model "$d" --data "$fx/val.h5"; expect_error "$d/config.json: reorder_and_upcast_attn" "reorder_and_upcast_attn"
fresh huge; sed -i 's/"n_layer": 2/"n_layer": 100000/' "$d/config.json"
run eval --model "$d" --data "$fx/val.h5"; expect_error "$d/config.json: n_layer must be" "100000 layers"
fresh notok; rm "$d/merges.txt"
run eval --model "$d" --data "$fx/val.h5"; expect_error "$d/merges.txt: missing tokenizer file" "missing merges.txt"
fresh noweights; rm "$st"
run eval --model "$d" --data "$fx/val.h5"; expect_error "$d: has neither model.safetensors" "no weights"
rm -rf "$tmp/shard"; cp -r "$fx/bf16_sharded" "$tmp/shard"
sed -i 's/model-00002-of-00002/..\/evil/' "$tmp/shard/model.safetensors.index.json"
run eval --model "$tmp/shard" --data "$fx/val.h5"
expect_error "$tmp/shard/model.safetensors.index.json: weight_map entry" "index naming a file outside the folder"
# a teacher with fewer positions than the student's seq_len
OMP_NUM_THREADS=1 mpiexec -n 2 "$bin" train --config "$tmp/d.ini" --set "train.run_dir=$tmp/run_s" \
  --set model.seq_len=64 >"$tmp/out" 2>"$tmp/err"
rc=$?
check '[ $rc -ne 0 ] && grep -qF "$fx/bf16_sharded: teacher has 48 positions, fewer than the student" "$tmp/err"' \
  "a teacher with 48 positions for a student of 64 is refused"

cli_finish cli_hf
