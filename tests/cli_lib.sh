# Shared by the command-line tests (tests/cli_export.sh, cli_eval.sh,
# cli_hf.sh): a scratch folder removed at exit, counted checks, and the
# project's error convention. Source it after setting `bin` (the retort
# binary):
#   . "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
#   run ARGS...              retort ARGS, stdout in $tmp/out, stderr in $tmp/err, status in $rc
#   check 'CONDITION' WHAT   one counted check (CONDITION is eval'd)
#   expect_error WANT WHAT   the last run failed as every error must: exit status
#                            in 1..127 (not a crash), exactly one line on stderr,
#                            naming WANT (and starting with $cli_error_prefix
#                            when the script sets it)
#   cli_finish NAME          prints the tally; the script's status is 0 only
#                            when no check failed
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 checks=0 rc=0
fail() { echo "FAIL: $*"; echo "  rc=$rc stderr: $(head -c 600 "$tmp/err")"; fails=$((fails + 1)); }
check() { checks=$((checks + 1)); if ! eval "$1"; then fail "$2"; fi; }
run() { "$bin" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }
expect_error() {
  local want=$1 what=$2
  check '[ $rc -ne 0 ] && [ $rc -lt 128 ]' "$what: exits non-zero (not a crash)"
  check '[ "$(wc -l <"$tmp/err")" -eq 1 ]' "$what: exactly one line on stderr"
  [ -z "${cli_error_prefix:-}" ] ||
    check '[ "$(head -c ${#cli_error_prefix} "$tmp/err")" = "$cli_error_prefix" ]' \
      "$what: the line starts with '$cli_error_prefix'"
  check 'grep -qF -- "$want" "$tmp/err"' "$what: the message names '$want'"
}
cli_finish() {
  echo "$1: $checks checks, $fails failures"
  [ "$fails" -eq 0 ]
}
