#!/usr/bin/env bash
# Checks the `retort` command line through the binary: --help of the
# program and of every command, usage errors (exit 2, one line naming the
# culprit), not-implemented commands (non-zero). Usage: cli_errors.sh RETORT
set -u
bin=${1:?usage: cli_errors.sh path/to/retort}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 checks=0

# run ARGS...: runs retort, leaving exit code in $rc, stdout/stderr in files.
run() { "$bin" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }
fail() { echo "FAIL: $*"; echo "  stdout: $(head -c 400 "$tmp/out")"; echo "  stderr: $(head -c 400 "$tmp/err")"; fails=$((fails + 1)); }
# expect CODE WHERE(out|err) TEXT DESC: checks the last run.
expect() {
  checks=$((checks + 1))
  local code=$1 where=$2 text=$3 desc=$4
  if [ "$code" = nonzero ]; then
    [ "$rc" -ne 0 ] || { fail "$desc: exit $rc, wanted non-zero"; return; }
  elif [ "$rc" -ne "$code" ]; then
    fail "$desc: exit $rc, wanted $code"; return
  fi
  if [ -n "$text" ] && ! grep -qF -- "$text" "$tmp/$where"; then
    fail "$desc: std$where lacks '$text'"; return
  fi
}
# one_line: usage errors are one line on stderr.
one_line() {
  checks=$((checks + 1))
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$1: stderr is not one line"
}

commands="prepare train label eval generate prune export info bench report"

run --help;        expect 0 out "usage: retort" "retort --help"
for c in $commands; do
  grep -qE "^  $c " "$tmp/out" || { fail "retort --help does not list $c"; }
done
run -h;            expect 0 out "usage: retort" "retort -h"
run;               expect 2 err "usage: retort" "retort without arguments"
run --version;     expect 0 out "retort " "retort --version"
run help eval;     expect 0 out "usage: retort eval" "retort help eval"

for c in $commands; do
  run "$c" --help
  expect 0 out "usage: retort $c" "retort $c --help"
  run "$c" -h;     expect 0 out "usage: retort $c" "retort $c -h"
done

# Every flag of a command appears in its help (checked against the synopsis).
run prepare --help
for f in --input --out --vocab-size --val-fraction --tokenizer --quiet; do
  grep -qF -- "$f" "$tmp/out" || fail "prepare --help lacks $f"
done
run train --help
for k in n_layer seq_len run_dir micro_batch feature_map teacher_precision freeze_scales nm labels samples labels_dir; do
  grep -qE "^  $k = " "$tmp/out" || fail "train --help lacks config key $k"
done

# bench peak: a tiny shape runs every type; a bad type is a one-line usage error.
run bench peak --m 64 --k 64 --n 64 --reps 1 --json
expect 0 out '"u8s8_gop_per_s"' "bench peak --json"
run bench peak --type f16; expect 2 err "--type 'f16'" "bench peak bad type"; one_line "bench peak bad type"
for t in student infer; do
  run bench "$t" --help; expect 0 out "--peak" "bench $t --help lists --peak"
done

# bench data: a small shard written, kept with --out, and read back in
# windows; a shard shorter than a window and an unwritable --out are
# one-line errors naming the file.
run bench data --tokens 20000 --seq 16 --batch 4 --steps 50 --out "$tmp/bd.h5" --json
expect 0 out '"peak_rss_mb"' "bench data --json"
checks=$((checks + 1)); [ -f "$tmp/bd.h5" ] || fail "bench data --out did not keep $tmp/bd.h5"
run bench data --tokens 10 --seq 16 --out "$tmp/short.h5"
expect nonzero err "short.h5" "bench data: shard shorter than a window"; one_line "bench data short shard"
run bench data --tokens 100 --out "$tmp/no_such_dir/x.h5"
expect nonzero err "no_such_dir/x.h5" "bench data: unwritable --out"; one_line "bench data unwritable out"

run frobnicate;    expect 2 err "'frobnicate'" "unknown command"; one_line "unknown command"
run trian;         expect 2 err "did you mean 'train'" "misspelled command"
run --frob;        expect 2 err "'--frob'" "unknown program option"

# Unknown flags: exit 2, one line naming the flag, for every command with a table.
for c in prepare train label eval generate prune export info report; do
  run "$c" --no-such-flag
  expect 2 err "'--no-such-flag'" "$c unknown flag"; one_line "$c unknown flag"
done
run prepare --input a --out b --vocab_size 5
expect 2 err "did you mean --vocab-size" "misspelled flag"

# Missing required flags / arguments: exit 2 naming what is missing.
run prepare --out d;                  expect 2 err "--input" "prepare without --input"
run prepare --input x;                expect 2 err "--out" "prepare without --out"
run train;                            expect 2 err "--config" "train without --config"
run label --config x.ini;             expect 2 err "--out" "label without --out"
run eval --model m.h5;                expect 2 err "--data" "eval without --data"
run generate --prompt hi;             expect 2 err "--model" "generate without --model"
run prune --model m --out o;          expect 2 err "--method" "prune without --method"
run export --model m --out o;         expect 2 err "--format" "export without --format"
run info;                             expect 2 err "CKPT" "info without CKPT"

# Bad values: exit 2 naming the flag and the value.
run prepare --input a --out b --vocab-size abc; expect 2 err "--vocab-size" "non-integer"
run prepare --input a --out b --vocab-size 10;  expect 2 err "[257, 1048576]" "out of range"
run prepare --input a --out b --val-fraction 1; expect 2 err "--val-fraction" "fraction 1"
run prune --model m --method 4:2 --out o;       expect 2 err "4:2" "bad N:M"
run prune --model m --method lottery --out o;   expect 2 err "lottery" "bad method"
run export --model m --format onnx --out o;     expect 2 err "onnx" "bad format"
run generate --model m --prompt --json;         expect 2 err "--prompt" "value that is a flag"
run info a.h5 b.h5;                             expect 2 err "'b.h5'" "extra positional"
run prepare --input a --out b --quiet=yes;      expect 2 err "--quiet" "flag with a value"
run eval --model a --model b --data d;          expect 2 err "twice" "flag given twice"

# Well-formed commands whose model does not exist fail with the missing
# file named: non-zero, never 0.
missing="$tmp/does-not-exist.h5"
run train --config "$tmp/none.ini";                         expect nonzero err "none.ini" "train"
run eval --model "$missing" --data "$missing" --json;       expect nonzero err "does-not-exist" "eval"
run generate --model "$missing" --prompt hi;                expect nonzero err "does-not-exist" "generate"
run prune --model "$missing" --method 2:4 --out "$tmp/o.h5"; expect nonzero err "does-not-exist" "prune"
run export --model "$missing" --format deploy --int8 --out "$tmp/o.h5"; expect nonzero err "does-not-exist" "export"
run info "$missing";                                        expect nonzero err "does-not-exist" "info"
[ ! -e "$tmp/o.h5" ] || fail "a failed command left $tmp/o.h5 behind"

# docs/CONFIG.md holds the config-key list of `retort train --help` verbatim
# (its fenced block after "regenerate with"): a key added without its doc fails here.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
checks=$((checks + 1))
run train --help
sed -n '/^config keys/,$p' "$tmp/out" >"$tmp/keys.help"
awk '/regenerate/ { r = 1 } r && /^```$/ { n++; next } r && n == 1' "$here/../docs/CONFIG.md" >"$tmp/keys.doc"
[ -s "$tmp/keys.help" ] && cmp -s "$tmp/keys.help" "$tmp/keys.doc" ||
  fail "docs/CONFIG.md's key list differs from 'retort train --help' (regenerate it as the doc says): $(diff "$tmp/keys.doc" "$tmp/keys.help" | head -5 | tr '\n' ' ')"

echo "cli_errors: $checks checks, $fails failures"
[ "$fails" -eq 0 ]
