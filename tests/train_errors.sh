#!/usr/bin/env bash
# Bad input to `retort train` gets one clear line naming the file or key and
# a non-zero exit (never a crash: exit codes >= 128 fail), before any
# training: bad config keys, and truncated, bit-flipped, empty, non-HDF5,
# wrong-shape and missing files given to --resume, train.init and
# distill.teacher, plus teachers whose vocabulary or seq_len differ; bad
# run_dirs and a second run on a locked run_dir.
source "$(dirname "$0")/train_lib.sh"
rt_prepare
rt_config ok.ini runs/ok
"$RETORT" train --config ok.ini 2>/dev/null || fail "the reference run failed"
good=runs/ok/final.h5

# expect_err CODE PATTERN CMD...: exit code CODE (or any 1..127 when CODE is
# "nz"), stderr matching PATTERN, a single "retort:" line.
expect_err() {
  local want=$1 pat=$2
  shift 2
  set +e
  timeout 60 "$@" >out.txt 2>err.txt
  local rc=$?
  set -e
  if [ "$want" = nz ]; then
    [ $rc -ge 1 ] && [ $rc -lt 124 ] || { cat err.txt; fail "'$*' exited $rc"; }
  else
    [ $rc -eq "$want" ] || { cat err.txt; fail "'$*' exited $rc, expected $want"; }
  fi
  grep -q -- "$pat" err.txt || { cat err.txt; fail "'$*': stderr lacks '$pat'"; }
  [ "$(grep -c '^retort' err.txt)" -ge 1 ] || { cat err.txt; fail "'$*': no retort: line"; }
}

expect_err nz "nope.ini" "$RETORT" train --config nope.ini
expect_err 2 "train.stepz" "$RETORT" train --config ok.ini --set train.stepz=3
expect_err 2 "train.lr" "$RETORT" train --config ok.ini --set train.lr=fast
expect_err 2 "distill.teacher" "$RETORT" train --config ok.ini --set distill.teachers=1

# broken checkpoints
cp "$good" trunc.h5 && truncate -s $(($(stat -c %s "$good") / 2)) trunc.h5
: >empty.h5
echo "not a checkpoint" >text.h5
cp "$good" flip.h5
addr=$(h5ls -va "$good/model/transformer.wte.weight" | awk '/Address:/ { print $2; exit }')
[ -n "$addr" ] || fail "could not locate a dataset in $good"
byte=$(od -An -tu1 -j $((addr + 100)) -N1 flip.h5 | tr -d ' ')
printf "$(printf '\\%03o' $((byte ^ 16)))" | dd of=flip.h5 bs=1 seek=$((addr + 100)) conv=notrunc 2>/dev/null
rt_config wide.ini runs/wide
sed -i 's/^d_model = 32/d_model = 48/' wide.ini
"$RETORT" train --config wide.ini --set train.steps=1 2>/dev/null || fail "wide model failed"

for f in trunc.h5 empty.h5 text.h5 flip.h5 missing.h5; do
  expect_err nz "$f" "$RETORT" train --config ok.ini --resume "$f"
  expect_err nz "$f" "$RETORT" train --config ok.ini --set "train.init=$f"
  expect_err nz "$f" mpirun -np 2 "$RETORT" train --config ok.ini --set distill.teachers=1 \
    --set "distill.teacher=$f"
done
expect_err nz "d_model" "$RETORT" train --config ok.ini --resume runs/wide/final.h5
expect_err nz "missing.h5" "$RETORT" train --config ok.ini --resume runs/ok/missing.h5
# a bare --resume (latest) on a run with no checkpoint yet starts fresh and
# says so (what a requeued batch job wants); a given PATH must exist
"$RETORT" train --config ok.ini --set train.run_dir=runs/fresh --set train.steps=2 --resume \
  2>fresh.log || { cat fresh.log; fail "--resume on an empty run_dir failed"; }
grep -q "no checkpoint in runs/fresh yet" fresh.log || fail "no note about the fresh start"

# mismatched teachers: another vocabulary, another seq_len
"$RETORT" prepare --input /usr/share/games/fortunes --out data300 --vocab-size 300 --quiet
rt_config v300.ini runs/v300 "steps=2"
sed -i 's|^\[train\]|[data]\ntrain = data300/train.h5\nval = data300/val.h5\n[train]|' v300.ini
"$RETORT" train --config v300.ini 2>/dev/null || fail "vocab-300 teacher failed"
expect_err nz "vocabulary" mpirun -np 2 "$RETORT" train --config ok.ini --set distill.teachers=1 \
  --set distill.teacher=runs/v300/final.h5
"$RETORT" train --config ok.ini --set train.run_dir=runs/s16 --set model.seq_len=16 \
  --set train.steps=2 2>/dev/null || fail "seq-16 teacher failed"
expect_err nz "seq_len" mpirun -np 2 "$RETORT" train --config ok.ini --set distill.teachers=1 \
  --set distill.teacher=runs/s16/final.h5
# QAT on a bf16 student is refused before the first step, not at
# qat.start_step (where it used to die, the steps before it lost)
expect_err 2 "train.precision = f32" "$RETORT" train --config ok.ini --set train.run_dir=runs/qbf \
  --set train.precision=bf16 --set qat.enabled=true --set qat.start_step=5
[ ! -e runs/qbf/metrics.jsonl ] || fail "QAT + bf16 trained steps before refusing"
# ... and so is a bf16 run started from a checkpoint that carries QAT state
"$RETORT" train --config ok.ini --set train.run_dir=runs/qat --set train.steps=2 \
  --set qat.enabled=true 2>/dev/null || fail "QAT run failed"
expect_err 2 "runs/qat/final.h5 carries QAT state" "$RETORT" train --config ok.ini \
  --set train.run_dir=runs/qbf2 --set train.precision=bf16 --set train.init=runs/qat/final.h5
# a val shard of no more than seq_len tokens holds no window of the
# evaluation protocol: refused before training (it used to read past the
# shard's end and print a val_loss); seq_len + 1 tokens make one window
mkdir -p short
head -c 20000 /usr/share/games/fortunes/fortunes >short/long.txt
printf 'hi\n' >short/short.txt
"$RETORT" prepare --input short/long.txt short/short.txt --out short --tokenizer data \
  --val-fraction 0.0001 --quiet
n=$(h5ls -S short/val.h5/tokens | grep -o '{[0-9]*' | tr -d '{')
[ -n "$n" ] && [ "$n" -ge 2 ] && [ "$n" -le 32 ] || fail "short/val.h5 has '$n' tokens, not 2..32"
expect_err nz "short/val.h5: $n tokens are fewer than one window" "$RETORT" train --config ok.ini \
  --set train.run_dir=runs/short --set data.val=short/val.h5 --set train.steps=2
"$RETORT" train --config ok.ini --set train.run_dir=runs/short1 --set data.val=short/val.h5 \
  --set train.steps=2 --set model.seq_len=$((n - 1)) 2>short.log ||
  { cat short.log; fail "a val shard of exactly one window (seq_len $((n - 1))) failed"; }
grep -q '"val_loss"' runs/short1/metrics.jsonl || fail "no val_loss from the one-window val shard"
# sampled soft labels that leave no tail to sample, an unknown scheme
expect_err nz "distill.samples" mpirun -np 2 "$RETORT" train --config ok.ini \
  --set distill.teachers=1 --set distill.teacher=$good --set distill.labels=sample \
  --set distill.samples=512
expect_err 2 "distill.labels" "$RETORT" train --config ok.ini --set distill.labels=tokp
# issue 16 item 15: a resumed distillation keeps its teacher, by content
# (CRC-32C in the provenance), not by path: another file is refused, a
# copy of the same file under another name is fine
mpirun -np 2 "$RETORT" train --config ok.ini --set distill.teachers=1 \
  --set distill.teacher=runs/ok/final.h5 --set train.run_dir=runs/dt --set train.steps=2 \
  2>/dev/null || fail "the distillation run for the teacher check failed"
expect_err nz "runs/wide/final.h5 (distill.teacher)" mpirun -np 2 "$RETORT" train --config ok.ini \
  --set distill.teachers=1 --set distill.teacher=runs/wide/final.h5 --set train.run_dir=runs/dt \
  --set train.steps=3 --resume latest
grep -q "was trained with runs/ok/final.h5" err.txt || { cat err.txt; fail "the recorded teacher is not named"; }
expect_err nz "was trained with the teacher runs/ok/final.h5" "$RETORT" train --config ok.ini \
  --set train.run_dir=runs/dt --set train.steps=3 --resume latest
cp runs/ok/final.h5 same_teacher.h5
mpirun -np 2 "$RETORT" train --config ok.ini --set distill.teachers=1 \
  --set distill.teacher=same_teacher.h5 --set train.run_dir=runs/dt --set train.steps=3 \
  --resume latest 2>err.txt || { cat err.txt; fail "resume with a copy of the same teacher failed"; }

# bad launches (issue 15): more teachers than the world leaves room for, a
# batch that does not divide over the students
expect_err nz "leaves no student rank among 2 MPI ranks" mpirun -np 2 "$RETORT" train \
  --config ok.ini --set distill.teachers=2 --set "distill.teacher=$good"
expect_err nz "train.batch = 5 cannot be split evenly over 2 student ranks" mpirun -np 2 \
  "$RETORT" train --config ok.ini --set train.batch=5

# run_dir: "" and "/" are refused by name; one run per run_dir (issue 16
# item 13): a second run, and a --resume of the first, are refused naming
# the holder's pid and host while the first runs; once it is gone (kill -9:
# the kernel drops the flock) the folder is free again.
expect_err 2 "train.run_dir" "$RETORT" train --config ok.ini --set train.run_dir=
expect_err 2 "root folder" "$RETORT" train --config ok.ini --set train.run_dir=/
expect_err 2 "root folder" "$RETORT" train --config ok.ini --set train.run_dir=//
rt_config lock.ini runs/lock steps=100000 checkpoint_every=0 eval_every=0 log_every=1
"$RETORT" train --config lock.ini 2>lock1.log &
holder=$!
for _ in $(seq 500); do [ -s runs/lock/metrics.jsonl ] && break; sleep 0.02; done
[ -s runs/lock/metrics.jsonl ] || { kill -9 $holder; fail "the lock holder did not start"; }
expect_err nz "pid $holder on host $(hostname)" "$RETORT" train --config lock.ini
expect_err nz "in use by another run" "$RETORT" train --config lock.ini --resume latest
kill -0 $holder || fail "the lock holder died while a second run was refused"
kill -9 $holder
wait $holder 2>/dev/null || true
"$RETORT" train --config lock.ini --set train.steps=2 2>lock2.log ||
  { cat lock2.log; fail "run_dir still locked after its holder was killed"; }
[ ! -e runs/ok/metrics.jsonl.tmp ] || fail "stray files"
echo "train_errors: ok"
