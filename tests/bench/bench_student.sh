#!/usr/bin/env bash
# retort vs PyTorch on the same distillation step, side by side.
#
#   tests/bench/bench_student.sh path/to/retort [extra bench flags...]
#
# Runs `retort bench student` and tests/bench/bench_student_torch.py with
# the same shape, alternating (retort f32, torch f32, retort bf16, torch
# bf16, ROUNDS times), so load from other processes hits both alike. Prints
# every JSON line, then per precision the best tokens/s of each and the
# ratio, and retort's fraction of the matmul peak measured in its own run
# (`retort bench peak`). Environment: ROUNDS (default 2), OMP_NUM_THREADS (default 2),
# SHAPE (default the 4-layer 256-wide, 8192-vocab model below).
set -euo pipefail
retort=${1:?usage: bench_student.sh path/to/retort [extra bench flags...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
rounds=${ROUNDS:-2}
shape=${SHAPE:---layers 4 --dim 256 --heads 4 --ff 1024 --vocab 8192 --seq 256 --batch 8 --steps 10 --warmup 2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for r in $(seq "$rounds"); do
  for prec in f32 bf16; do
    flag=""
    [ "$prec" = bf16 ] && flag=--bf16
    # shellcheck disable=SC2086
    "$retort" bench student $shape $flag --json "$@" | tee -a "$tmp/retort_$prec"
    # shellcheck disable=SC2086
    /usr/bin/python3 "$here/bench_student_torch.py" $shape $flag --json | tee -a "$tmp/torch_$prec"
  done
done

/usr/bin/python3 - "$tmp" <<'EOF'
import json, sys, os
tmp = sys.argv[1]
print("\nprecision  retort tok/s  torch tok/s  ratio   retort step ms (fwd/loss/bwd/opt)   torch step ms   retort % of peak")
for prec in ("f32", "bf16"):
    best = {}
    for impl in ("retort", "torch"):
        rows = [json.loads(l) for l in open(os.path.join(tmp, f"{impl}_{prec}")) if l.strip()]
        best[impl] = max(rows, key=lambda r: r["tokens_per_s"])
    r, t = best["retort"], best["torch"]
    ph = "/".join(f"{r['phase_ms'][k]:.0f}" for k in ("forward", "loss", "backward", "optimizer"))
    print(f"{prec:<9} {r['tokens_per_s']:>12.0f} {t['tokens_per_s']:>12.0f} {r['tokens_per_s'] / t['tokens_per_s']:>6.2f}x"
          f"   {r['step_ms']:>7.1f} ({ph})   {t['step_ms']:>10.1f}   {100 * r['fraction_of_peak']:>5.1f}%"
          f" of {r['peak_gflop_per_s']:.0f}")
EOF
