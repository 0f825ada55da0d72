#!/usr/bin/env bash
# The provenance a checkpoint records is valid JSON whatever the paths hold:
# a data folder named q"d\x (a quote and a backslash) must come back from
# `retort info --json` as a JSON object with the names escaped (info embeds
# the provenance as an object only when it parses, else as a plain string).
source "$(dirname "$0")/train_lib.sh"
rt_prepare
dir='q"d\x'
mkdir -p "$dir" && cp data/train.h5 data/val.h5 "$dir/"
rt_config p.ini runs/p "steps=2" "eval_tokens=256" "checkpoint_every=0"
"$RETORT" train --config p.ini --set "data.train=$dir/train.h5" --set "data.val=$dir/val.h5" \
  2>train.log || { cat train.log; fail "training on $dir failed"; }
"$RETORT" info --json runs/p/final.h5 >info.json || fail "retort info --json failed"
grep -qF '"provenance":{' info.json || { cat info.json; fail "provenance is not a JSON object"; }
grep -qF '"train_shard":"q\"d\\x/train.h5"' info.json || { cat info.json; fail "train_shard not escaped"; }
grep -qF '"val_shard":"q\"d\\x/val.h5"' info.json || { cat info.json; fail "val_shard not escaped"; }
echo "train_provenance: ok"
