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
#     incomplete cache, truncated and bit-flipped chunks.
source "$(dirname "$0")/train_lib.sh"
rt_prepare
rt_config teacher.ini runs/teacher steps=30 checkpoint_every=15
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
echo "train_labels: ok"
