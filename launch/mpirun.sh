#!/usr/bin/env bash
# Launch `retort train` under Open MPI with explicit rank layout.
#
#   launch/mpirun.sh [-n RANKS] [-t TEACHERS] [-p RANKS_PER_NODE] [-T THREADS]
#                    [-H HOSTFILE] [-b BINDING] -- --config FILE [--set k=v]...
#
#   -n RANKS           total MPI ranks (teachers + students), default 2
#   -t TEACHERS        teacher ranks (sets distill.teachers), default: from config
#   -p RANKS_PER_NODE  ranks placed per node (ppr:N:node), default: let mpirun decide
#   -T THREADS         OpenMP threads per rank (OMP_NUM_THREADS), default cores/ranks-per-node
#   -H HOSTFILE        Open MPI hostfile for multi-node runs
#   -b BINDING         --bind-to value: core | socket | none (default none when
#                      oversubscribed, core otherwise)
#
# Teachers are the first world ranks; students follow. Each rank gets THREADS
# OpenMP threads, so set RANKS_PER_NODE * THREADS to the cores of a node.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${RETORT_BIN:-$root/build/trainer/retort}
n=2 t="" ppn="" threads="" hostfile="" bind=""
while getopts "n:t:p:T:H:b:h" o; do
  case $o in
    n) n=$OPTARG ;; t) t=$OPTARG ;; p) ppn=$OPTARG ;; T) threads=$OPTARG ;;
    H) hostfile=$OPTARG ;; b) bind=$OPTARG ;;
    h) sed -n '2,17p' "$0"; exit 0 ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
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
args+=(--bind-to "$bind")
[ "$bind" = core ] && args+=(--map-by "ppr:${per_node}:node:PE=${threads}")
[ -n "$hostfile" ] && args+=(--hostfile "$hostfile")
extra=()
[ -n "$t" ] && extra+=(--set "distill.teachers=$t")
exec mpirun "${args[@]}" "$bin" train "$@" "${extra[@]}"
