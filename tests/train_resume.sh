#!/usr/bin/env bash
# Exact resume. A run is killed with SIGKILL at a random moment after its
# first checkpoint (checkpoints every 25 steps, about half of the time is spent writing them),
# resumed with --resume, and its final /model and /optimizer must be
# bit-identical (h5diff, no tolerance) to an uninterrupted run. MODE=distill
# does the same with a teacher rank (the whole job is killed, as when a node
# is lost) sending topk+sample soft labels, whose draws are seeded from
# (seed, step, window, position), so the resumed run must draw the same
# tokens (the plain top-k path is covered by train_dp). Then elastic
# resume: a 2-student checkpoint resumed by 1 student
# (same global batch) finishes within float reduction order of an
# uninterrupted 1-student run.
source "$(dirname "$0")/train_lib.sh"
MODE=${2:-plain}
rt_prepare
extra=(steps=2000 checkpoint_every=25 eval_every=1000 log_every=100 --)
launch=("$RETORT")
if [ "$MODE" = distill ]; then
  rt_config teacher.ini runs/teacher
  "$RETORT" train --config teacher.ini 2>/dev/null || fail "teacher training failed"
  extra+=("[distill]" "teachers = 1" "teacher = runs/teacher/final.h5" "labels = topk+sample" "topk = 8" "samples = 8")
  launch=(mpirun -np 2 "$RETORT")
fi
rt_config ref.ini runs/ref "${extra[@]}"
rt_config cut.ini runs/cut "${extra[@]}"
t0=$(date +%s%N)
"${launch[@]}" train --config ref.ini 2>ref.log || { cat ref.log; fail "reference run failed"; }
ref_ms=$((($(date +%s%N) - t0) / 1000000))

"${launch[@]}" train --config cut.ini 2>cut.log &
pid=$!
# The kill point is chosen by progress, not by time (a timed kill let the run
# finish first when the machine's load changed between the two runs): wait
# until the newest checkpoint is at or past a random step in [25, 1500], then
# kill after a further random 0-199 ms, somewhere between two checkpoints.
target=$((25 + RANDOM % 1476))
reached=0
for _ in $(seq 30000); do
  if [ -f runs/cut/latest ]; then
    s=$(sed 's/[^0-9]//g' runs/cut/latest)
    [ -n "$s" ] && [ $((10#$s)) -ge "$target" ] && { reached=1; break; }
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.01
done
[ "$reached" = 1 ] || { cat cut.log; fail "no checkpoint at or past step $target appeared"; }
delay_ms=$((RANDOM % 200))
sleep "0.$(printf %03d "$delay_ms")"
# the run and, under mpirun, its ranks, by pid (a pattern would also hit the
# runs of other tests that ctest runs beside this one)
kill -9 $(pgrep -P "$pid") "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
echo "killed ${delay_ms} ms after the checkpoint of step >= ${target} (reference run: ${ref_ms} ms); latest: $(cat runs/cut/latest)"
grep -q 'step_00002000' runs/cut/latest && fail "the run finished before it was killed"
"${launch[@]}" train --config cut.ini --resume 2>resume.log || { cat resume.log; fail "resume failed"; }
h5diff runs/ref/final.h5 runs/cut/final.h5 /model || fail "resumed /model differs from the uninterrupted run"
h5diff runs/ref/final.h5 runs/cut/final.h5 /optimizer || fail "resumed /optimizer differs"
# killed after its last step checkpoint but before final.h5: a resume at the
# last step writes final.h5 from that checkpoint
rm runs/cut/final.h5
"${launch[@]}" train --config cut.ini --resume latest 2>last.log || { cat last.log; fail "resume at the last step failed"; }
[ -f runs/cut/final.h5 ] || { cat last.log; fail "a resume at the last step wrote no final.h5"; }
for g in /model /optimizer; do
  h5diff runs/ref/final.h5 runs/cut/final.h5 $g || fail "final.h5 written at the last step: $g differs"
done

if [ "$MODE" = plain ]; then
  rt_config e1.ini runs/e1 steps=40 batch=8
  rt_config e2.ini runs/e2 steps=40 batch=8
  "$RETORT" train --config e1.ini 2>/dev/null || fail "1-student reference failed"
  mpirun -np 2 "$RETORT" train --config e2.ini 2>/dev/null || fail "2-student run failed"
  "$RETORT" train --config e2.ini --resume runs/e2/step_00000020.h5 2>elastic.log ||
    { cat elastic.log; fail "elastic resume failed"; }
  rt_model_close runs/e1/final.h5 runs/e2/final.h5 1e-4 || fail "elastic resume drifted from the 1-student run"
  rt_model_close runs/e1/final.h5 runs/ref/final.h5 1e-4 && fail "rt_model_close cannot tell different models apart"
fi
echo "train_resume ($MODE): ok"
