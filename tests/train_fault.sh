#!/usr/bin/env bash
# A rank that dies mid-run (SIGKILL) must not leave the others hanging: the
# job exits non-zero within 60 s, the output names the dead rank, and the
# last checkpoint stays complete and readable. Once for the teacher rank,
# once for a student rank of a 2-student run.
source "$(dirname "$0")/train_lib.sh"
rt_prepare
rt_config teacher.ini runs/teacher
"$RETORT" train --config teacher.ini 2>/dev/null || fail "teacher training failed"

# kill_rank RANK NP: start a long distillation, kill world rank RANK after
# its first checkpoint, check how the job ends.
kill_rank() {
  local victim=$1 np=$2 run=runs/fault$1
  rt_config f.ini "$run" steps=100000 checkpoint_every=20 eval_every=0 -- \
    "[distill]" "teachers = 1" "teacher = runs/teacher/final.h5" "labels = topk" "topk = 8" "timeout = 10"
  mpirun -np "$np" "$RETORT" train --config f.ini >"f$victim.log" 2>&1 &
  local job=$! pid=""
  for _ in $(seq 1000); do [ -f "$run/latest" ] && break; sleep 0.02; done
  [ -f "$run/latest" ] || fail "no checkpoint appeared"
  for p in $(pgrep -f "retort train --config f.ini"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$victim"; then pid=$p; fi
  done
  [ -n "$pid" ] || fail "rank $victim not found"
  local t0=$SECONDS
  kill -9 "$pid"
  local rc=0
  wait "$job" || rc=$?
  local dt=$((SECONDS - t0))
  [ $rc -ne 0 ] || fail "the job exited 0 after rank $victim died"
  [ $dt -le 60 ] || fail "the survivors took $dt s to exit"
  grep -qi "rank $victim" "f$victim.log" || { cat "f$victim.log"; fail "no message names rank $victim"; }
  pkill -9 -f "retort train --config f.ini" || true
  local last
  last=$(cat "$run/latest")
  # (a resume without the teacher is refused since resume checks the
  # teacher's CRC, so the newest checkpoint is checked by info --verify)
  "$RETORT" info --verify "$run/$last" >"check$victim.log" 2>&1 ||
    { cat "check$victim.log"; fail "$last is not readable"; }
  echo "rank $victim killed: job ended in ${dt} s (rc $rc); $last intact"
}
kill_rank 0 2
kill_rank 2 3
echo "train_fault: ok"
