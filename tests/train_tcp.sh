#!/usr/bin/env bash
# The inter-node path (issue 15 item 3): the distillation layouts of the
# other tests (1 teacher + 2 students, 2 teachers + 2 students) run through
# launch/mpirun.sh with a hostfile and TCP only (-m pml=ob1 -m btl=tcp,self,
# over the loopback interface: no shared memory between the ranks), and give
# the same losses (every logged value of metrics.jsonl) and a bit-identical
# final.h5 (h5diff /model, /optimizer) as over shared memory (btl vader).
# The teacher's own count of the record bytes it sent (RETORT_TEACHER_STATS)
# must match what the run's network note reports per step.
MPIRUN_SH=$(cd "$(dirname "$0")/.." && pwd)/launch/mpirun.sh
source "$(dirname "$0")/train_lib.sh"
rt_prepare
rt_config teacher.ini runs/teacher steps=200
"$RETORT" train --config teacher.ini 2>/dev/null || fail "teacher training failed"
printf 'localhost slots=4\n' >hosts
for layout in "1 2" "2 2"; do
  read -r nt ns <<<"$layout"
  n=$((nt + ns))
  dist=("[distill]" "teachers = $nt" "teacher = runs/teacher/final.h5" "topk = 8")
  rt_config "shm$nt$ns.ini" "runs/shm$nt$ns" steps=60 eval_every=30 log_every=10 -- "${dist[@]}"
  rt_config "tcp$nt$ns.ini" "runs/tcp$nt$ns" steps=60 eval_every=30 log_every=10 -- "${dist[@]}"
  mpirun -np $n --mca pml ob1 --mca btl vader,self "$RETORT" train --config "shm$nt$ns.ini" \
    2>"shm$nt$ns.log" || { cat "shm$nt$ns.log"; fail "$nt+$ns over shared memory failed"; }
  RETORT_TEACHER_STATS=1 RETORT_BIN="$RETORT" bash "$MPIRUN_SH" -n $n -H hosts \
    -m pml=ob1 -m btl=tcp,self -m btl_tcp_if_include=lo -- --config "tcp$nt$ns.ini" \
    >"tcp$nt$ns.log" 2>&1 || { cat "tcp$nt$ns.log"; fail "$nt+$ns over TCP failed"; }
  diff <(rt_losses "runs/shm$nt$ns/metrics.jsonl") <(rt_losses "runs/tcp$nt$ns/metrics.jsonl") ||
    fail "$nt teacher(s) + $ns students: losses over TCP differ from shared memory"
  [ "$(rt_losses "runs/tcp$nt$ns/metrics.jsonl" | wc -l)" -ge 6 ] || fail "too few logged losses"
  for g in /model /optimizer; do
    h5diff "runs/shm$nt$ns/final.h5" "runs/tcp$nt$ns/final.h5" $g ||
      fail "$nt teacher(s) + $ns students: $g over TCP differs from shared memory"
  done
  note=$(grep "network per step" "tcp$nt$ns.log") || { cat "tcp$nt$ns.log"; fail "no network note"; }
  echo "$nt teacher(s) + $ns students over TCP: same losses and weights as shared memory; $note"
  # the teacher serving student 0 counted its wire bytes itself: per step
  # they must be what the note says it sent (60 steps, its students' share)
  sent=$(sed -n 's/.*its teacher (serving \([0-9]*\) student(s)) sent about \([0-9]*\) B.*/\1 \2/p' \
         "tcp$nt$ns.log")
  [ -n "$sent" ] || fail "network note lacks the teacher's bytes"
  read -r served per_step <<<"$sent"
  t0=$(grep -m1 "^teacher rank 0:" "tcp$nt$ns.log") || { cat "tcp$nt$ns.log"; fail "no teacher stats"; }
  # "teacher rank 0: N records, X raw / Y wire bytes per token, ..."
  own=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "wire") print $(i - 1) }' <<<"$t0")
  tokens_per_step=$((4 * 32 * served / ns))
  awk -v own="$own" -v tps="$tokens_per_step" -v note="$per_step" 'BEGIN {
    got = own * tps
    if (got < note * 0.9 || got > note * 1.1) {
      printf "teacher counted %.0f B per step, the note says %d\n", got, note; exit 1 } }' ||
    fail "$nt+$ns: the teacher's own byte count disagrees with the network note"
done
echo "train_tcp: ok"
