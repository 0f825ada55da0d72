#!/usr/bin/env bash
# The quickstart pipeline end to end on tiny models (QS_TINY=1): every
# stage runs, the report's table has a row per model with every column a
# number, the numbers agree with `retort eval` on the same files, the
# compare stage gives its 8 rows, and a second run reuses every stage.
set -euo pipefail
RETORT=${1:?usage: $0 path/to/retort}
root=$(cd "$(dirname "$0")/.." && pwd)
export QS_TINY=1 QS RETORT_BIN=$RETORT
QS=$(mktemp -d)
trap 'rm -rf "$QS"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
stages=(prepare teacher distill scratch qat prune export report)
bash "$root/launch/quickstart.sh" "${stages[@]}" >"$QS/run1.log" 2>&1 ||
  { tail -30 "$QS/run1.log"; fail "the pipeline failed"; }
md=$QS/report/report.md
[ -f "$md" ] && [ -f "$QS/report/val_loss.svg" ] && [ -f "$QS/report/size_ppl.svg" ] ||
  fail "report.md or its plots are missing"
# model rows: | name | `file` | params | size | loss | ppl | agreement | ECE | tok/s |
awk -F'|' '/^\| model \|/ { on = 1; next } on && /^$/ { on = 0 }
           on && /^\| .* \| `/ { n++; for (i = 4; i <= 10; i++) { c = $i; gsub(/[ ,]|KiB|MiB|B$/, "", c);
             if (c !~ /^[0-9.]+$/) { print "row " n " column " i - 1 ": \"" $i "\""; bad = 1 } } }
           END { if (n != 6) { print n " model rows, expected 6"; bad = 1 } exit bad }' "$md" ||
  fail "the report table is not complete"
want=$("$RETORT" eval --model "$QS/deploy/distill.f32.h5" --data "$QS/data/val.h5" --json |
       grep -o '"loss": *[0-9.]*' | grep -o '[0-9.]*$')
got=$(awk -F'|' '/^\| student \(distilled\) \|/ { gsub(/ /, "", $6); print $6 }' "$md")
awk -v a="$want" -v b="$got" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-3) }' ||
  fail "report says val loss $got for the distilled student, retort eval says $want"
# the compression toolbox side by side: one row per method, every column a number
bash "$root/launch/quickstart.sh" compare >"$QS/compare.log" 2>&1 ||
  { tail -30 "$QS/compare.log"; fail "the compare stage failed"; }
awk -F'|' '/^\| model \|/ { on = 1; next } on && /^$/ { on = 0 }
           on && /^\| .* \| `/ { n++; for (i = 4; i <= 10; i++) { c = $i; gsub(/[ ,]|KiB|MiB|B$/, "", c);
             if (c !~ /^[0-9.]+$/) { print "row " n " column " i - 1 ": \"" $i "\""; bad = 1 } } }
           END { if (n != 8) { print n " compare rows, expected 8"; bad = 1 } exit bad }' \
  "$QS/compare/report/report.md" || fail "the compare table is not complete"
python3 "$root/tests/check_size_plot.py" "$QS/compare/report" "$QS/compare/report/report.json" 2 ||
  fail "the compare size plot: labels overlap or leave it, or the Pareto front is wrong"
grep -q "step 13: gradual pruning to sparsity 0.500000" "$QS/compare.log" ||
  fail "the gradual run did not reach 50% at its end_step"
t0=$SECONDS
bash "$root/launch/quickstart.sh" "${stages[@]}" >"$QS/run2.log" 2>&1 || fail "the rerun failed"
n_reused=$(grep -c "reusing" "$QS/run2.log" || true)
[ "$n_reused" -ge 7 ] || { cat "$QS/run2.log"; fail "the rerun reused $n_reused stages, expected >= 7"; }
if grep -q "^training:\|^distilling:" "$QS/run2.log"; then fail "the rerun trained again"; fi
echo "quickstart_tiny: ok (rerun $((SECONDS - t0)) s, $n_reused stages reused)"
