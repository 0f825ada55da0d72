#!/usr/bin/env bash
# Offline label caches (`retort label`, distill.labels_dir):
#   - training from a cache gives bit-identical weights and optimizer state
#     (h5diff, no tolerance) to online distillation with one teacher rank
#     and one student, with sampled (topk+sample) labels;
#   - two students read their rows of the same cache (within float
#     reduction order of the one-student run);
#   - `retort label` killed with SIGKILL and run again keeps the chunks it
#     finished and ends with chunk files byte-identical to an uninterrupted
#     run's;
#   - refusals, one line naming the cause: a cache from another seed,
#     seq_len or teacher, another config resumed into a cache, an
#     incomplete cache, truncated and bit-flipped chunks;
#   - hidden-state labels (distill.labels = hidden, a teacher 48 wide for a
#     student 32 wide): online and from a cache bit-identical, int8 and
#     bf16, and a resume from a checkpoint bit-identical too; their soft-label loss close to dense labels' (the rebuilt
#     logits are the teacher's up to int8 rounding); a cache of the other
#     encoding, or a run without the teacher's file, refused.
source "$(dirname "$0")/train_lib.sh"
rt_prepare
rt_config teacher.ini runs/teacher steps=30 checkpoint_every=15
# a teacher wider (hidden states of another width) and longer (its first 32
# positions serve the student's windows) than the student
sed -i -e 's/^d_model = 32$/d_model = 48/' -e 's/^seq_len = 32$/seq_len = 48/' teacher.ini
"$RETORT" train --config teacher.ini 2>/dev/null || fail "teacher training failed"
D=("[distill]" "teacher = runs/teacher/final.h5" "labels = topk+sample" "topk = 8" "samples = 8")
rt_config on.ini runs/on steps=40 -- "${D[@]}" "teachers = 1"
rt_config off.ini runs/off steps=40 -- "${D[@]}" "teachers = 0" "labels_dir = labels"

mpirun -np 2 "$RETORT" train --config on.ini 2>on.log || { cat on.log; fail "online distillation failed"; }
"$RETORT" label --config on.ini --out labels --chunk-steps 7 2>label.log ||
  { cat label.log; fail "retort label failed"; }
grep -q "6 chunks computed, 0 kept" label.log || { cat label.log; fail "unexpected label summary"; }
"$RETORT" train --config off.ini 2>off.log || { cat off.log; fail "training from the cache failed"; }
h5diff runs/on/final.h5 runs/off/final.h5 /model || fail "cache-trained /model differs from online"
h5diff runs/on/final.h5 runs/off/final.h5 /optimizer || fail "cache-trained /optimizer differs"
grep -q '"disk_bytes_per_token"' runs/off/metrics.jsonl || fail "no disk_bytes_per_token metric"
grep -q '"dense_bytes_per_token":2048' runs/off/metrics.jsonl || fail "no dense_bytes_per_token"

# two students, each reading its rows of the cache
mpirun -np 2 "$RETORT" train --config off.ini --set train.run_dir=runs/off2 2>off2.log ||
  { cat off2.log; fail "two students from the cache failed"; }
rt_model_close runs/off/final.h5 runs/off2/final.h5 1e-4 || fail "2-student cache run drifted"

# kill -9 and resume of `retort label`: 2 ranks, 60 chunks of 5 steps
rt_config long.ini runs/long steps=300 -- "${D[@]}" "teachers = 1"
"$RETORT" label --config long.ini --out ref_labels --chunk-steps 5 2>/dev/null ||
  fail "uninterrupted label run failed"
mpirun -np 2 "$RETORT" label --config long.ini --out cut_labels --chunk-steps 5 2>cut.log &
pid=$!
for _ in $(seq 1000); do [ -f cut_labels/chunk_000003.bin ] && break; sleep 0.01; done
pkill -9 -f "retort label --config long.ini --out cut_labels" || true
wait "$pid" 2>/dev/null || true
[ -f cut_labels/chunk_000059.bin ] && fail "the label run finished before it was killed"
n_before=$(ls cut_labels | grep -c '^chunk_.*\.bin$' || true)
mpirun -np 2 "$RETORT" label --config long.ini --out cut_labels --chunk-steps 5 2>resume.log ||
  { cat resume.log; fail "resumed label run failed"; }
kept=$(grep -o '[0-9]* kept' resume.log | grep -o '[0-9]*')
echo "killed with $n_before chunk files on disk; the rerun kept $kept"
[ "$kept" -ge 1 ] || fail "the rerun kept no finished chunk"
for f in ref_labels/chunk_*.bin; do
  cmp -s "$f" "cut_labels/$(basename "$f")" || fail "$(basename "$f") differs after the resume"
done
[ -z "$(ls cut_labels | grep -v -e '^chunk_[0-9]*\.bin$' -e '^index\.json$')" ] ||
  fail "stray files in cut_labels: $(ls cut_labels)"

# refusals
expect_err() {
  local pat=$1
  shift
  set +e
  timeout 60 "$@" >out.txt 2>err.txt
  local rc=$?
  set -e
  [ $rc -ge 1 ] && [ $rc -lt 124 ] || { cat err.txt; fail "'$*' exited $rc"; }
  grep -q -- "$pat" err.txt || { cat err.txt; fail "'$*': stderr lacks '$pat'"; }
  echo "refused: $(grep -m1 '^retort' err.txt)"
}
expect_err "train.seed = 1234, this run has 7" "$RETORT" train --config off.ini --set train.seed=7
rt_config noteacher.ini runs/nt steps=40 -- "[distill]" "labels = topk+sample" "topk = 8" \
  "samples = 8" "labels_dir = labels"
expect_err "model.seq_len = 32, this run has 16" "$RETORT" train --config noteacher.ini \
  --set model.seq_len=16
expect_err "distill.teacher (its CRC-32C)" "$RETORT" train --config off.ini \
  --set distill.teacher=runs/teacher/step_00000015.h5
expect_err "distill.samples = 8, this run has 4" "$RETORT" train --config off.ini \
  --set distill.samples=4
expect_err "train.steps = 40, this run has 41 (it holds too few steps)" "$RETORT" train \
  --config off.ini --set train.steps=41
expect_err "distill.temperature" "$RETORT" label --config on.ini --out labels \
  --set distill.temperature=3
expect_err "distill.teachers = 0" "$RETORT" train --config off.ini --set distill.teachers=1
cp -r labels broken
sed -i 's/"complete": true/"complete": false/' broken/index.json
expect_err "incomplete" "$RETORT" train --config off.ini --set distill.labels_dir=broken
rm -rf broken && cp -r labels broken
truncate -s -100 broken/chunk_000002.bin
expect_err "chunk_000002.bin: size mismatch" "$RETORT" train --config off.ini \
  --set distill.labels_dir=broken
rm -rf broken && cp -r labels broken
size=$(stat -c %s broken/chunk_000004.bin)
byte=$(od -An -tu1 -j $((size / 2)) -N1 broken/chunk_000004.bin | tr -d ' ')
printf "$(printf '\\%03o' $((byte ^ 4)))" |
  dd of=broken/chunk_000004.bin bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
expect_err "chunk_000004.bin: payload checksum mismatch" "$RETORT" train --config off.ini \
  --set distill.labels_dir=broken
# hidden-state labels: the teacher's final hidden states, int8 and bf16,
# online (1 teacher rank + 1 student) and through a cache: bit-identical
H=("[distill]" "teacher = runs/teacher/final.h5" "labels = hidden")
for enc in int8 bf16; do
  rt_config "h$enc.ini" "runs/h$enc" steps=20 -- "${H[@]}" "hidden = $enc" "teachers = 1"
  mpirun -np 2 "$RETORT" train --config "h$enc.ini" 2>"h$enc.log" ||
    { cat "h$enc.log"; fail "online hidden-state distillation ($enc) failed"; }
  "$RETORT" label --config "h$enc.ini" --out "hl_$enc" --chunk-steps 7 2>"hl_$enc.log" ||
    { cat "hl_$enc.log"; fail "retort label with hidden states ($enc) failed"; }
  grep -q "hidden labels of width 48" "hl_$enc.log" || { cat "hl_$enc.log"; fail "label summary"; }
  "$RETORT" train --config "h$enc.ini" --set distill.teachers=0 --set "distill.labels_dir=hl_$enc" \
    --set "train.run_dir=runs/hc$enc" 2>"hc$enc.log" ||
    { cat "hc$enc.log"; fail "training from a hidden-state cache ($enc) failed"; }
  h5diff "runs/h$enc/final.h5" "runs/hc$enc/final.h5" /model ||
    fail "hidden ($enc): cache-trained /model differs from online"
  h5diff "runs/h$enc/final.h5" "runs/hc$enc/final.h5" /optimizer ||
    fail "hidden ($enc): cache-trained /optimizer differs from online"
done
# a resume of the cache-trained hidden-state run from its step-10 checkpoint
"$RETORT" train --config hint8.ini --set distill.teachers=0 --set distill.labels_dir=hl_int8 \
  --set train.run_dir=runs/hr --resume runs/hcint8/step_00000010.h5 2>hr.log ||
  { cat hr.log; fail "resuming a hidden-state run failed"; }
h5diff runs/hcint8/final.h5 runs/hr/final.h5 /model || fail "hidden: resumed /model differs"
h5diff runs/hcint8/final.h5 runs/hr/final.h5 /optimizer || fail "hidden: resumed /optimizer differs"
# the same run with dense labels: the KD terms agree to int8 rounding
rt_config hdense.ini runs/hdense steps=20 -- "[distill]" "teacher = runs/teacher/final.h5" \
  "labels = topk" "topk = 512" "teachers = 1"
mpirun -np 2 "$RETORT" train --config hdense.ini 2>hdense.log || { cat hdense.log; fail "dense run"; }
kd() { grep -o '"kd":[0-9.e-]*' "$1" | tail -1 | cut -d: -f2; }
awk -v a="$(kd runs/hint8/metrics.jsonl)" -v b="$(kd runs/hdense/metrics.jsonl)" \
  'BEGIN { d = (a - b) / b; if (d < 0) d = -d; printf "kd at step 20: hidden int8 %s, dense %s (rel %.1e, tol 1e-2)\n", a, b, d; exit d > 1e-2 }' ||
  fail "hidden-state KD differs from dense KD beyond int8 rounding"
grep -q '"wire_bytes_per_token"' runs/hint8/metrics.jsonl || fail "no wire bytes for hidden states"
expect_err "distill.hidden (1 int8, 2 bf16) = 1, this run has 2" "$RETORT" train --config hint8.ini \
  --set distill.teachers=0 --set distill.labels_dir=hl_int8 --set distill.hidden=bf16 \
  --set train.run_dir=runs/hx
expect_err "distill.labels = hidden needs distill.teacher" "$RETORT" train --config hint8.ini \
  --set distill.teachers=0 --set distill.labels_dir=hl_int8 --set distill.teacher= \
  --set train.run_dir=runs/hx
echo "train_labels: ok"
