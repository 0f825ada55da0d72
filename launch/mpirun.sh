#!/usr/bin/env bash
# Launch `retort train` under Open MPI with explicit rank layout.
#
#   launch/mpirun.sh [-n RANKS] [-t TEACHERS] [-p RANKS_PER_NODE] [-T THREADS]
#                    [-H HOSTFILE] [-b BINDING] [-m MCA=VALUE]... -- --config FILE [--set k=v]...
#
#   -n RANKS           total MPI ranks (teachers + students), default 2
#   -t TEACHERS        teacher ranks (sets distill.teachers), default: from config
#   -p RANKS_PER_NODE  ranks placed per node (ppr:N:node), default: let mpirun decide
#   -T THREADS         OpenMP threads per rank (OMP_NUM_THREADS), default cores/ranks-per-node
#   -H HOSTFILE        Open MPI hostfile for multi-node runs
#   -b BINDING         --bind-to value: core | socket | none (default none when
#                      oversubscribed, core otherwise)
#   -m MCA=VALUE       an Open MPI MCA parameter (repeatable), e.g. the
#                      inter-node path alone, without shared memory:
#                      -m pml=ob1 -m btl=tcp,self
#
# Teachers are the first world ranks; students follow. Each rank gets THREADS
# OpenMP threads, so set RANKS_PER_NODE * THREADS to the cores of a node;
# when they exceed it, the ranks get OMP_WAIT_POLICY=passive unless the
# caller set a policy.
#
# SIGTERM or SIGINT to this script (Ctrl-C, a scheduler's warning) is passed
# to mpirun as SIGUSR1, which mpirun forwards to every rank: the run saves a
# checkpoint at the next step boundary and exits 3 (mpirun itself would turn
# SIGTERM/SIGINT into a kill of the job within seconds).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${RETORT_BIN:-$root/build/trainer/retort}
n=2 t="" ppn="" threads="" hostfile="" bind="" mca=()
while getopts "n:t:p:T:H:b:m:h" o; do
  case $o in
    n) n=$OPTARG ;; t) t=$OPTARG ;; p) ppn=$OPTARG ;; T) threads=$OPTARG ;;
    H) hostfile=$OPTARG ;; b) bind=$OPTARG ;;
    m) [[ $OPTARG == ?*=* ]] || { echo "mpirun.sh: -m $OPTARG: expected NAME=VALUE" >&2; exit 2; }
       mca+=(--mca "${OPTARG%%=*}" "${OPTARG#*=}") ;;
    h) sed -n '2,26p' "$0"; exit 0 ;;
    *) sed -n '2,26p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
[ -x "$bin" ] || { echo "mpirun.sh: $bin not built; run launch/setup.sh" >&2; exit 1; }
cores=$(nproc)
per_node=${ppn:-$n}
[ -n "$threads" ] || threads=$(( cores / per_node > 0 ? cores / per_node : 1 ))
args=(--allow-run-as-root -np "$n" -x OMP_NUM_THREADS="$threads")
if [ -z "$bind" ]; then
  if [ $((per_node * threads)) -gt "$cores" ]; then bind=none; else bind=core; fi
fi
[ "$bind" = none ] && args+=(--oversubscribe)
# More threads than cores: an OpenMP thread waiting at a barrier must not
# spin on a core the thread it waits for needs (libgomp's default spins;
# measured on 2 cores with one taken: generation 50x slower). A policy the
# caller set is passed on as it is.
if [ -n "${OMP_WAIT_POLICY:-}" ]; then
  args+=(-x OMP_WAIT_POLICY)
elif [ $((per_node * threads)) -gt "$cores" ]; then
  args+=(-x OMP_WAIT_POLICY=passive)
fi
args+=(--bind-to "$bind")
[ "$bind" = core ] && args+=(--map-by "ppr:${per_node}:node:PE=${threads}")
[ -n "$hostfile" ] && args+=(--hostfile "$hostfile")
args+=("${mca[@]}")
extra=()
[ -n "$t" ] && extra+=(--set "distill.teachers=$t")
# its own process group (setsid), so that a Ctrl-C in the terminal reaches
# it only through the trap below
setsid mpirun "${args[@]}" "$bin" train "$@" "${extra[@]}" &
job=$!
trap 'kill -USR1 "$job" 2>/dev/null || true' TERM INT
# wait returns early (> 128) when a trapped signal arrives: wait again
# while mpirun lives, then once more for its exit status
while kill -0 "$job" 2>/dev/null; do wait "$job" || true; done
rc=0
wait "$job" || rc=$?
exit "$rc"
