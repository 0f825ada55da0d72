#!/usr/bin/env bash
# launch/slurm.sbatch under a real Slurm (issue 15 items 1 and 2). Starts
# munge, slurmctld and slurmd on localhost from a configuration written into
# the test's temporary folder (one node with this machine's CPUs,
# select/cons_tres, proctrack/linuxproc: no cgroups, no systemd), then:
#  - srun --mpi=list offers pmix and srun --mpi=pmix starts a 2-rank job;
#  - sbatch runs launch/slurm.sbatch with 1 teacher + 1 student on one node;
#    the job is stopped twice, first as at its time limit (SIGTERM to the
#    batch shell only, what --signal=B:TERM@N sends: the script forwards it,
#    the ranks save and exit 3, the script requeues the job), then as a
#    pre-emption (scontrol requeue: Slurm signals every process of the job);
#  - the requeued job resumes from the newest checkpoint each time and its
#    final.h5 is bit-identical (h5diff /model, /optimizer) to an
#    uninterrupted mpirun run of the same layout.
# Everything is torn down on exit. Exit 77 (skipped) only when the Slurm
# or munge programs are missing or the daemons cannot start, with the reason.
SBATCH_SCRIPT=$(cd "$(dirname "$0")/.." && pwd)/launch/slurm.sbatch
source "$(dirname "$0")/train_lib.sh"
skip() { echo "SKIP: $*" >&2; exit 77; }
for p in munged slurmctld slurmd; do
  [ -x "/usr/sbin/$p" ] || skip "/usr/sbin/$p is missing (apt-get install slurm-wlm munge)"
done
for p in sbatch srun squeue scontrol scancel sinfo; do
  command -v $p >/dev/null || skip "$p is missing (apt-get install slurm-client)"
done
[ "$(id -u)" -eq 0 ] || skip "slurmd must run as root to start jobs (running as uid $(id -u))"

S=$WORK/slurm
mkdir -p "$S"/{state,spool,log,tmp}
chmod 700 "$S"
export SLURM_CONF=$S/slurm.conf
teardown() {
  set +e
  [ -f "$S/slurm.conf" ] && scancel --quiet --full "--user=$(id -un)" 2>/dev/null
  local pids=()
  for f in slurmd slurmctld munged; do
    [ -f "$S/$f.pid" ] && pids+=("$(cat "$S/$f.pid")")
  done
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$WORK"
}
trap teardown EXIT
daemon_logs() { tail -n 20 "$S"/log/*.log >&2 2>/dev/null || true; }

# ---- munge with a key of its own, on a private socket
dd if=/dev/urandom of="$S/munge.key" bs=1024 count=1 status=none
chmod 600 "$S/munge.key"
/usr/sbin/munged --force --key-file "$S/munge.key" --socket "$S/munge.sock" \
  --pid-file "$S/munged.pid" --log-file "$S/log/munged.log" --seed-file "$S/munge.seed" ||
  { daemon_logs; skip "munged does not start"; }

# ---- slurmctld + slurmd on localhost, ports chosen free
host=$(hostname -s)
ports=($(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' 2>/dev/null || echo $((20000 + RANDOM % 20000)) $((40000 + RANDOM % 20000))))
cat >"$S/slurm.conf" <<C
ClusterName=retorttest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=${ports[0]}
SlurmdPort=${ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$S/munge.sock
CredType=cred/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
PlugStackConfig=$S/plugstack.conf
TmpFS=$S/tmp
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=30
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(getconf _NPROCESSORS_ONLN) State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
C
: >"$S/plugstack.conf"
# the pmix plugin's per-step folders (default /tmp/spmix_appdir_UID_JOB.STEP)
# would collide with those of an earlier test's Slurm, whose job ids also
# started at 1
echo "PMIxCliTmpDirBase=$S/tmp" >"$S/mpi.conf"
/usr/sbin/slurmctld -f "$S/slurm.conf" -i || { daemon_logs; skip "slurmctld does not start"; }
/usr/sbin/slurmd -f "$S/slurm.conf" || { daemon_logs; skip "slurmd does not start"; }
for _ in $(seq 100); do sinfo -h -o %T 2>/dev/null | grep -qx idle && break; sleep 0.2; done
sinfo -h -o %T | grep -qx idle || { sinfo; daemon_logs; skip "the node did not come up idle"; }
echo "slurm: $(sinfo -h -o '%P %D node(s) %c CPUs %T') on ports ${ports[*]}"

# ---- the MPI plugin: pmix is there and launches Open MPI ranks
srun --mpi=list 2>&1 | grep -qw pmix || { srun --mpi=list; fail "srun offers no pmix plugin"; }
rt_prepare
rt_config teacher.ini runs/teacher steps=200
"$RETORT" train --config teacher.ini 2>/dev/null || fail "teacher training failed"
dist=("[distill]" "teacher = runs/teacher/final.h5" "topk = 8")
rt_config probe.ini runs/probe steps=2 eval_every=0 -- "${dist[@]}" "teachers = 1"
timeout 120 srun -n 2 --mpi=pmix "$RETORT" train --config probe.ini >probe.log 2>&1 ||
  { cat probe.log; fail "srun --mpi=pmix could not start a 1 teacher + 1 student run"; }
grep -q "1 student rank(s) x 4 rows, 1 teacher rank(s)" probe.log ||
  { cat probe.log; fail "srun --mpi=pmix did not give one world of 2 ranks"; }

# ---- reference: the same layout without Slurm
extra=(steps=600 checkpoint_every=50 eval_every=0 log_every=100 -- "${dist[@]}")
rt_config ref.ini runs/ref "${extra[@]}"
rt_config job.ini runs/job "${extra[@]}"
mpirun -np 2 "$RETORT" train --config ref.ini --set distill.teachers=1 2>ref.log ||
  { cat ref.log; fail "reference run failed"; }

# job_state ID: its state (PENDING, RUNNING, COMPLETED, ...)
job_state() { scontrol -o show job "$1" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
# wait_for ID STATE... (120 s at most)
wait_for() {
  local id=$1 st
  shift
  for _ in $(seq 600); do
    st=$(job_state "$id")
    for want in "$@"; do [ "$st" = "$want" ] && return 0; done
    sleep 0.2
  done
  cat slurm-job.out 2>/dev/null; daemon_logs
  fail "job $id is $st, expected $*"
}
# wait_step_past N: until runs/job/latest names a step above N
wait_step_past() {
  for _ in $(seq 1200); do
    s=$(sed -n 's/^step_0*\([0-9]*\)\.h5$/\1/p' runs/job/latest 2>/dev/null || true)
    [ -n "$s" ] && [ "$s" -gt "$1" ] && return 0
    case $(job_state "$id") in PENDING|RUNNING|REQUEUED|REQUEUE_FED|REQUEUE_HOLD) ;; *) break ;; esac
    sleep 0.1
  done
  cat slurm-job.out; fail "the job wrote no checkpoint past step $1"
}

id=$(RETORT_BIN=$RETORT sbatch --parsable -N1 -n2 --ntasks-per-node=2 -c1 -o slurm-job.out \
     "$SBATCH_SCRIPT" job.ini) || fail "sbatch refused launch/slurm.sbatch"
echo "slurm: job $id submitted"
wait_for "$id" RUNNING
wait_step_past 0
# restarted N: the requeued job (pending with BeginTime two minutes ahead,
# Slurm's delay for requeued jobs) is released 3 s after it became pending
# (slurmd refuses a credential issued within a second of the revocation of
# the job's previous one) and runs restart N
restarted() {
  local pending=0
  for _ in $(seq 600); do
    case $(job_state "$id") in
      PENDING)
        pending=$((pending + 1))
        [ $pending -eq 15 ] && scontrol update "JobId=$id" StartTime=now ;;
      RUNNING) grep -q "(restart $1)" slurm-job.out && return 0 ;;
      COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;;
    esac
    sleep 0.2
  done
  cat slurm-job.out; daemon_logs
  fail "job $id did not run again as restart $1 (state $(job_state "$id"))"
}

# 1. as at the time limit: SIGTERM to the batch shell only
scancel --batch --signal=TERM "$id"
restarted 1
grep -q "requeueing job $id" slurm-job.out || { cat slurm-job.out; fail "the script did not requeue after SIGTERM"; }
stop1=$(grep -o 'stopped at step [0-9]*' slurm-job.out | tail -1)
echo "slurm: SIGTERM to the batch shell: $stop1 on SIGUSR1 from the script, requeued, resumed"
# 2. pre-emption: Slurm signals every process of the job, then requeues it
wait_step_past "${stop1##* }"
scontrol requeue "$id"
restarted 2
stop2=$(grep -o 'stopped at step [0-9]*' slurm-job.out | tail -1)
[ "$stop2" != "$stop1" ] || { cat slurm-job.out; fail "scontrol requeue: the ranks did not stop with a checkpoint"; }
echo "slurm: scontrol requeue: $stop2 on SIGTERM from Slurm, requeued, resumed"
# RUNNING, then COMPLETING while Slurm ends the step, then COMPLETED
for _ in $(seq 1200); do
  case $(job_state "$id") in RUNNING|COMPLETING) sleep 0.1 ;; *) break ;; esac
done
[ "$(job_state "$id")" = COMPLETED ] || { cat slurm-job.out; daemon_logs; fail "job $id ended $(job_state "$id")"; }
grep -q "resumed from runs/job/step_" slurm-job.out || { cat slurm-job.out; fail "no resume note"; }
h5diff runs/ref/final.h5 runs/job/final.h5 /model || fail "/model after two requeues differs from the uninterrupted run"
h5diff runs/ref/final.h5 runs/job/final.h5 /optimizer || fail "/optimizer after two requeues differs"
echo "slurm: job $id completed after 2 requeues; final.h5 bit-identical to the uninterrupted run"
echo "slurm: ok"
