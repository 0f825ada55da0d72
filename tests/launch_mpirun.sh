#!/usr/bin/env bash
# launch/mpirun.sh's thread settings, through Open MPI with a stand-in for
# retort that prints what each rank was given: OMP_NUM_THREADS = -T, and
# OMP_WAIT_POLICY = passive exactly when ranks x threads exceed the cores
# (spinning waiters starve the threads they wait for), a policy the caller
# set passed on as it is, and none otherwise.
# Usage: launch_mpirun.sh   (no arguments; needs mpirun)
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rt_launch_XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cat >"$tmp/fake" <<'SH'
#!/usr/bin/env bash
echo "rank ${OMPI_COMM_WORLD_RANK:-?} threads=${OMP_NUM_THREADS:-unset} wait=${OMP_WAIT_POLICY:-unset} args=$*"
SH
chmod +x "$tmp/fake"
cores=$(nproc)
# $1: expected wait policy; the rest: the environment and launcher arguments
expect() {
  local want=$1; shift
  env "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  [ $rc -eq 0 ] || { cat "$tmp/err"; fail "$*: exit $rc"; return; }
  local n; n=$(grep -c "^rank " "$tmp/out")
  [ "$n" -ge 1 ] || { cat "$tmp/out" "$tmp/err"; fail "$*: no rank ran"; return; }
  grep "^rank " "$tmp/out" | grep -qv "wait=$want " &&
    { cat "$tmp/out"; fail "$*: a rank's OMP_WAIT_POLICY is not $want"; }
  grep -q "args=train --config x.ini" "$tmp/out" || { cat "$tmp/out"; fail "$*: arguments not passed"; }
}
run=(RETORT_BIN="$tmp/fake" bash "$here/../launch/mpirun.sh")
# oversubscribed: ranks x threads > cores
expect passive -u OMP_WAIT_POLICY "${run[@]}" -n 2 -T "$cores" -- --config x.ini
grep -q "threads=$cores " "$tmp/out" || fail "-T $cores: OMP_NUM_THREADS not $cores"
# the caller's policy wins, oversubscribed or not
expect active OMP_WAIT_POLICY=active "${run[@]}" -n 2 -T "$cores" -- --config x.ini
# one rank, one thread: nothing is set
expect unset -u OMP_WAIT_POLICY "${run[@]}" -n 1 -T 1 -- --config x.ini
echo "launch_mpirun: $fails failure(s)"
[ $fails -eq 0 ]
