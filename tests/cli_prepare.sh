#!/usr/bin/env bash
# `retort prepare` through the binary: a small corpus end to end (files
# written, vocabulary size honoured, --quiet silent, --tokenizer reuses a
# tokenizer) and its error paths (missing input, unwritable output, bad
# tokenizer folder), each non-zero with a message naming the path.
# Usage: cli_prepare.sh RETORT
set -u
bin=${1:?usage: cli_prepare.sh path/to/retort}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 checks=0
fail() { echo "FAIL: $*"; echo "  stderr: $(head -c 600 "$tmp/err")"; fails=$((fails + 1)); }
check() { checks=$((checks + 1)); if ! eval "$1"; then fail "$2"; fi; }
run() { "$bin" prepare "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }

# A corpus in two files, one in fortune format ("%" lines end documents).
mkdir -p "$tmp/corpus/sub"
for i in $(seq 1 40); do
  echo "The quick brown fox $i jumps over the lazy dog, again and again."
  echo "%"
done >"$tmp/corpus/fortunes"
for i in $(seq 1 30); do echo "Sphinx of black quartz, judge my vow number $i."; done \
  >"$tmp/corpus/sub/plain.txt"

run --input "$tmp/corpus" --out "$tmp/data" --vocab-size 300 --val-fraction 0.1
check '[ $rc -eq 0 ]' "prepare on a small corpus exits 0 (got $rc)"
for f in vocab.json merges.txt train.h5 val.h5; do
  check '[ -s "$tmp/data/$f" ]' "prepare wrote $f"
done
check 'grep -q "vocab 300" "$tmp/err"' "the summary reports the vocabulary size asked for"
check '[ ! -s "$tmp/out" ]' "prepare prints nothing on stdout"
# vocab.json holds exactly --vocab-size entries.
if command -v python3 >/dev/null; then
  n_vocab=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$tmp/data/vocab.json")
  check '[ "$n_vocab" -eq 300 ]' "vocab.json has 300 entries (got $n_vocab)"
fi
if command -v h5dump >/dev/null; then
  n_train=$(h5dump -H -d /tokens "$tmp/data/train.h5" | grep -o 'DATASPACE  SIMPLE { ( [0-9]*' | grep -o '[0-9]*$')
  check '[ "${n_train:-0}" -gt 100 ]' "train.h5 /tokens holds the corpus (got ${n_train:-none} tokens)"
fi

run --input "$tmp/corpus/sub/plain.txt" --out "$tmp/data2" --tokenizer "$tmp/data" --quiet
check '[ $rc -eq 0 ]' "prepare --tokenizer exits 0 (got $rc)"
check '[ ! -s "$tmp/err" ]' "--quiet prints nothing on stderr"
check 'cmp -s "$tmp/data/vocab.json" "$tmp/data2/vocab.json"' "--tokenizer reuses the vocabulary"

# Several paths after one --input, and --input repeated, read the same files.
run --input "$tmp/corpus/fortunes" "$tmp/corpus/sub/plain.txt" --out "$tmp/d3" --vocab-size 300 --quiet
check '[ $rc -eq 0 ]' "--input with two paths exits 0"
run --input "$tmp/corpus/fortunes" --input "$tmp/corpus/sub/plain.txt" --out "$tmp/d4" --vocab-size 300 --quiet
check '[ $rc -eq 0 ]' "--input repeated exits 0"
check 'cmp -s "$tmp/d3/vocab.json" "$tmp/d4/vocab.json"' "both --input forms give the same tokenizer"

# Error paths.
run --input "$tmp/no/such/file.txt" --out "$tmp/e1" --quiet
check '[ $rc -ne 0 ]' "missing input exits non-zero"
check 'grep -qF "$tmp/no/such/file.txt" "$tmp/err"' "the message names the missing input"
check '[ ! -e "$tmp/e1/train.h5" ]' "no shard written for a missing input"

# An output folder under a regular file cannot be created (root can write
# anywhere, so permissions would not test this).
run --input "$tmp/corpus" --out "$tmp/corpus/fortunes/out" --quiet
check '[ $rc -ne 0 ]' "unwritable output folder exits non-zero"
check 'grep -qF "$tmp/corpus/fortunes" "$tmp/err"' "the message names the output folder"

run --input "$tmp/corpus" --out "$tmp/e3" --tokenizer "$tmp/nope" --quiet
check '[ $rc -ne 0 ]' "missing tokenizer folder exits non-zero"
check 'grep -qF "$tmp/nope" "$tmp/err"' "the message names the tokenizer folder"

mkdir -p "$tmp/empty"
run --input "$tmp/empty" --out "$tmp/e4" --quiet
check '[ $rc -ne 0 ]' "a folder without text exits non-zero"

echo "cli_prepare: $checks checks, $fails failures"
[ "$fails" -eq 0 ]
