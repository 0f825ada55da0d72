# Shared set-up of the deploy-file benchmarks (bench_int8_act.sh,
# bench_lowrank.sh): a temporary folder with the fortune-cookie corpus and
# one model trained on it, plus the JSON-field and median helpers. Source it
# after setting R (the retort binary); the folder is removed on exit.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$out"

# bench_train_model "L C F T V" "TRAIN LINES": data/ with a V-token vocabulary
# and run/final.h5, an L-layer model (d_model C, d_ff F, seq_len T, 4 heads)
# trained with the given [train] lines (steps, batch, ...).
bench_train_model() {
  local L C F T V
  read -r L C F T V <<<"$1"
  "$R" prepare --input /usr/share/games/fortunes --out data --vocab-size "$V" --quiet
  printf '[model]\nn_layer = %s\nn_head = 4\nd_model = %s\nd_ff = %s\nseq_len = %s\n[train]\nrun_dir = run\neval_every = 0\ncheckpoint_every = 0\n%b' \
    "$L" "$C" "$F" "$T" "$2" >m.ini
  "$R" train --config m.ini >/dev/null 2>&1
}
# field FILE KEY: a number of a JSON file
field() { grep -o "\"$2\": *[0-9.]*" "$1" | grep -o '[0-9.]*$'; }
# median of the numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
