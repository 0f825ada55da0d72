# Shared set-up of the `retort train` shell tests: a small prepared corpus
# (fortune cookies, installed by launch/setup.sh) and tiny configs, in a
# temporary folder that is removed on exit. Source it with the retort
# binary as $1.
set -euo pipefail
RETORT=${1:?usage: $0 path/to/retort}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

fail() { echo "FAIL: $*" >&2; exit 1; }

# data/ with a 512-token vocabulary
rt_prepare() {
  "$RETORT" prepare --input /usr/share/games/fortunes --out data --vocab-size 512 --quiet
}

# rt_config FILE RUN_DIR [train_key=value ...] [-- raw INI lines...]:
# a 2-layer, 32-wide model; key=value pairs override the [train] defaults,
# lines after -- are appended as they are (e.g. a [distill] section).
rt_config() {
  local f=$1 run=$2
  shift 2
  local -A tr=([run_dir]=$run [steps]=30 [batch]=4 [lr]=3e-3 [warmup]=3 [eval_every]=10
               [eval_tokens]=2048 [checkpoint_every]=10 [log_every]=5)
  while [ $# -gt 0 ] && [ "$1" != -- ]; do tr[${1%%=*}]=${1#*=}; shift; done
  [ $# -gt 0 ] && shift
  {
    printf '[model]\nn_layer = 2\nn_head = 2\nd_model = 32\nd_ff = 64\nseq_len = 32\n[train]\n'
    for k in "${!tr[@]}"; do printf '%s = %s\n' "$k" "${tr[$k]}"; done
    for l in "$@"; do printf '%s\n' "$l"; done
  } >"$f"
}

# The "loss" values of a metrics.jsonl, one per line.
rt_losses() { grep -o '"loss":[-0-9.e]*' "$1" | cut -d: -f2; }

# rt_model_close A B TOL: every /model dataset of A and B agrees within an
# absolute TOL (h5diff -d; its attribute lines -- the per-dataset checksums,
# which differ whenever any bit does -- are ignored).
rt_model_close() {
  { h5diff -v -d "$3" "$1" "$2" /model || true; } | awk '
    /^dataset:/ { d = 1 } /^attribute:/ { d = 0 }
    /differences found/ { if (d && $1 + 0 > 0) bad = 1 }
    /^dataset:/ { n++ }
    END { exit bad || n == 0 }'
}
