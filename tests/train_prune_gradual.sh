#!/usr/bin/env bash
# Gradual pruning during training (prune.schedule = gradual; magnitude,
# and wanda and N:M below):
# the sparsity logged at each mask update equals the cubic schedule of Zhu
# & Gupta computed here in Python, the final checkpoint holds the target
# sparsity with every masked weight exactly 0, and a run resumed from a
# checkpoint in the middle of the schedule ends bit-identical (/model,
# /optimizer, /prune) to the uninterrupted run. Bad schedules are errors.
source "$(dirname "$0")/train_lib.sh"
rt_prepare
gradual=("[prune]" "method = magnitude" "sparsity = 0.5" "schedule = gradual"
         "start_step = 4" "end_step = 24" "every = 6")
rt_config g.ini runs/g steps=30 checkpoint_every=10 keep_checkpoints=5 -- "${gradual[@]}"
"$RETORT" train --config g.ini 2>g.log || { cat g.log; fail "gradual run failed"; }
grep -o 'step [0-9]*: gradual pruning to sparsity [0-9.]*' g.log >updates.txt
python3 - updates.txt <<'PY' || fail "logged sparsities differ from the cubic schedule"
import sys
got = [(int(l.split()[1].rstrip(':')), float(l.split()[-1])) for l in open(sys.argv[1])]
start, end, every, final = 4, 24, 6, 0.5
steps = [t for t in range(start, end + 1) if (t - start) % every == 0 or t == end]
want = [(t, final * (1 - (1 - (t - start) / (end - start)) ** 3)) for t in steps]
print("  updates (step, sparsity):", got)
assert [t for t, _ in got] == steps, (got, steps)
assert all(abs(a - b) < 1e-6 for (_, a), (_, b) in zip(got, want)), (got, want)
PY
values() { h5dump -A 0 -y -w 0 -d "$2" "$1" | sed -n '/DATA {/,/}/p' | sed '1d;$d' | tr ', ' '\n\n' | grep -v '^$'; }
achieved=$(values runs/g/final.h5 /prune/sparsity_achieved)
python3 -c "import sys; assert abs(float(sys.argv[1]) - 0.5) < 1e-3, sys.argv[1]" "$achieved" ||
  fail "final sparsity $achieved, want 0.5"
for t in transformer.h.0.attn.c_attn.weight transformer.h.1.mlp.c_proj.weight; do
  paste <(values runs/g/final.h5 "/prune/mask/$t") <(values runs/g/final.h5 "/model/$t") |
    awk '{ if ($1 == 0) { m++; if ($2 + 0 != 0) bad++ } } END { exit !(m > 0 && bad == 0) }' ||
    fail "masked weights of $t are not zero"
done
cp runs/g/final.h5 ref.h5
# step 10: after the updates at 4 and 10, before those at 16, 22 and 24
"$RETORT" train --config g.ini --resume runs/g/step_00000010.h5 2>resume.log ||
  { cat resume.log; fail "resume mid-schedule failed"; }
for g in /model /optimizer /prune; do
  h5diff ref.h5 runs/g/final.h5 "$g" || fail "resumed $g differs from the uninterrupted run"
done

# wanda and N:M along the same schedule: the final sparsity is reached,
# N:M's pattern holds in every group of M inputs, masked weights are 0, and
# a resume mid-schedule is bit-identical (wanda's masks come from the
# step's own forward, which the resumed run computes again)
for m in wanda nm; do
  rm -rf runs/g
  sed -e "s/method = magnitude/method = $m/" g.ini >"g_$m.ini"
  [ $m = nm ] && printf 'nm = 2:4\n' >>"g_$m.ini"
  "$RETORT" train --config "g_$m.ini" 2>"g_$m.log" || { cat "g_$m.log"; fail "gradual $m run failed"; }
  achieved=$(values runs/g/final.h5 /prune/sparsity_achieved)
  python3 -c "import sys; assert abs(float(sys.argv[1]) - 0.5) < 1e-3, sys.argv[1]" "$achieved" ||
    fail "$m: final sparsity $achieved, want 0.5"
  t=transformer.h.1.mlp.c_proj.weight
  paste <(values runs/g/final.h5 "/prune/mask/$t") <(values runs/g/final.h5 "/model/$t") >mv.txt
  awk '{ if ($1 == 0) { m++; if ($2 + 0 != 0) bad++ } } END { exit !(m > 0 && bad == 0) }' mv.txt ||
    fail "$m: masked weights of $t are not zero"
  if [ $m = nm ]; then # [64, 32]: every group of 4 rows of a column keeps exactly 2
    python3 - mv.txt <<'PY' || fail "nm: the 2:4 pattern does not hold in $t"
import sys
mask = [int(l.split()[0]) for l in open(sys.argv[1])]
rows, cols = 64, 32
assert len(mask) == rows * cols, len(mask)
bad = [(g, j) for j in range(cols) for g in range(rows // 4)
       if sum(mask[(4 * g + i) * cols + j] for i in range(4)) != 2]
assert not bad, bad[:5]
PY
  fi
  cp runs/g/final.h5 "ref_$m.h5"
  "$RETORT" train --config "g_$m.ini" --resume runs/g/step_00000010.h5 2>"resume_$m.log" ||
    { cat "resume_$m.log"; fail "$m: resume mid-schedule failed"; }
  for g in /model /optimizer /prune; do
    h5diff "ref_$m.h5" runs/g/final.h5 "$g" || fail "$m: resumed $g differs from the uninterrupted run"
  done
done

# bad schedules: one line naming the key
bad() { # bad WANT LINES...
  local want=$1; shift
  rt_config b.ini runs/b steps=30 -- "$@"
  if "$RETORT" train --config b.ini 2>b.err; then fail "accepted: $*"; fi
  grep -qF -- "$want" b.err || { cat b.err; fail "error does not name $want"; }
  [ "$(wc -l <b.err)" -eq 1 ] || { cat b.err; fail "more than one line for: $*"; }
}
bad "prune.end_step" "[prune]" "method = magnitude" "schedule = gradual" "start_step = 10" "end_step = 10"
bad "prune.end_step" "[prune]" "method = magnitude" "schedule = gradual" "start_step = 0" "end_step = 31"
bad "prune.method = magnitude, wanda or nm" "[prune]" "method = heads" "schedule = gradual" "end_step = 20"
bad "train.precision = f32" "precision = bf16" "[prune]" "method = wanda" "schedule = gradual" "end_step = 20"
bad "not a multiple of M = 3" "[prune]" "method = nm" "nm = 1:3" "schedule = gradual" "end_step = 20"
bad "prune.schedule = gradual" "[prune]" "method = magnitude"
echo "train_prune_gradual: ok"
