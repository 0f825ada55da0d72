#!/usr/bin/env bash
# Runs one fault scenario of test_comm_fault under mpiexec and checks that
# the job fails (non-zero exit), within BOUND seconds, with output matching
# REGEX (the message naming the dead or stalled rank).
#
#   comm_fault.sh BOUND REGEX mpiexec [args...]
#
# A hard `timeout` at 3x the bound turns a hang into a failure instead of a
# stuck ctest run.
set -u
bound=$1 regex=$2
shift 2
start=$(date +%s.%N)
out=$(timeout -s KILL $((bound * 3)) "$@" 2>&1)
rc=$?
end=$(date +%s.%N)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
printf '%s\n' "$out"
echo "comm_fault.sh: exit status $rc after ${elapsed} s (bound ${bound} s)"
fail=0
if [ "$rc" -eq 0 ]; then
  echo "comm_fault.sh: FAIL: the job exited 0, the fault went unnoticed"; fail=1
fi
if awk -v e="$elapsed" -v b="$bound" 'BEGIN { exit !(e > b) }'; then
  echo "comm_fault.sh: FAIL: took ${elapsed} s, more than ${bound} s"; fail=1
fi
if ! printf '%s\n' "$out" | grep -Eq -- "$regex"; then
  echo "comm_fault.sh: FAIL: no line matches: $regex"; fail=1
fi
[ "$fail" -eq 0 ] && echo "comm_fault.sh: PASS"
exit "$fail"
