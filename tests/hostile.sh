#!/usr/bin/env bash
# The hostile-input test (issue 16): crafted files fed to every command
# that takes them. Each bad file must give a non-zero exit below 128 (no
# crash, no abort) and exactly one line on stderr, "retort: ...", naming
# the file; a command the file does not concern may succeed, but never
# crash. Files are crafted at test time by hostile_gen (raw HDF5 edits of
# good fixtures from test_eval --make-fixtures), so CI needs no Python.
# A full disk during saves (item 10) is simulated with a file size limit
# (RLIMIT_FSIZE, what `ulimit -f` sets), and also on a small tmpfs when
# this machine lets the test mount one.
#   hostile.sh RETORT TEST_EVAL HOSTILE_GEN
# Run it with a sanitize build's binaries (RETORT_SANITIZE=ON) to have
# ASan and UBSan watch every case as well.
set -u
bin=${1:?usage: hostile.sh RETORT TEST_EVAL HOSTILE_GEN}
maker=${2:?usage}
gen=${3:?usage}
tmp=$(mktemp -d)
mnt=""
cleanup() { [ -n "$mnt" ] && umount "$mnt" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fails=0 checks=0 cases=0
fail() { echo "FAIL: $*"; echo "  rc=$rc stderr: $(head -c 600 "$tmp/err")"; fails=$((fails + 1)); }
check() { checks=$((checks + 1)); if ! eval "$1"; then fail "$2"; fi; }
run() { "$bin" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; cases=$((cases + 1)); }
# Never a crash; when it fails, the error is one line, "retort: ...", the
# last on stderr, naming $1 (lines before it are progress: "training: ...").
clean_or_error() {
  local want=$1 what=$2
  check '[ $rc -lt 128 ]' "$what: no crash (rc < 128)"
  if [ $rc -ne 0 ]; then
    check '[ "$(grep -c "^retort: " "$tmp/err")" -eq 1 ]' "$what: exactly one error line"
    check 'tail -n 1 "$tmp/err" | grep -q "^retort: "' "$what: the error line is the last"
    check 'grep "^retort: " "$tmp/err" | grep -qF -- "$want"' "$what: the error names '$want'"
  fi
}
must_fail() {
  check '[ $rc -ne 0 ]' "$2: exits non-zero"
  clean_or_error "$1" "$2"
}

fx=$tmp/fx
mkdir -p "$fx"
"$maker" --make-fixtures "$fx" >/dev/null || { echo "FAIL: test_eval --make-fixtures"; exit 1; }
m=$fx/model.h5 val=$fx/val.h5 tok=$fx/tok
"$bin" export --model "$m" --format deploy --int8 --calib "$val" --out "$fx/int8.h5" >/dev/null 2>&1 ||
  { echo "FAIL: exporting the int8 fixture"; exit 1; }
cat >"$fx/tiny.ini" <<EOF
[model]
n_layer = 1
n_head = 2
d_model = 8
d_ff = 16
seq_len = 8
[data]
train = $val
val = $val
tokenizer = $tok
[train]
run_dir = $tmp/run
steps = 2
batch = 2
eval_every = 2
eval_tokens = 64
checkpoint_every = 1
EOF
run train --config "$fx/tiny.ini"
check '[ $rc -eq 0 ]' "the tiny training run works (so its failures below are the files')"
rm -rf "$tmp/run"

# ---------------------------------------------------------- checkpoints
# (setattr drops /config's checksum, as a file of another tool lacks it, so
# the bounds are what stop it; layers_edit keeps it: a valid shape, edited)
c=$tmp/ckpt
mkdir -p "$c"
craft() { # NAME BASE OP ARGS...: copy BASE to $c/NAME.h5 and edit it
  local name=$1 base=$2
  shift 2
  cp "$base" "$c/$name.h5"
  "$gen" "$1" "$c/$name.h5" "${@:2}" || { echo "FAIL: crafting $name"; fails=$((fails + 1)); }
}
wte=/model/transformer.wte.weight fc=/model/transformer.h.0.mlp.c_fc.weight
craft layers_1e5   "$m" setattr /config n_layer 100000
craft dmodel_0     "$m" setattr /config d_model 0
craft dmodel_2e31  "$m" setattr /config d_model 2147483648
craft heads_3      "$m" setattr /config n_head 3
craft vocab_2e31   "$m" setattr /config vocab_size 2147483648
craft vocab_max    "$m" setattr /config vocab_size 16777216
craft seq_huge     "$m" setattr /config seq_len 1073741824
craft seq_max      "$m" setattr /config seq_len 65536
craft layers_edit  "$m" edit /config n_layer 1
# low-rank ranks: out of int, above min(in, out), and claimed over dense tensors
craft rank_2e31    "$m" setattr /config rank.mlp.c_fc 2147483648
craft rank_above   "$m" setattr /config rank.mlp.c_fc 100000
craft rank_dense   "$m" setattr /config rank.attn.c_proj 4
craft wte_f64      "$m" retype "$wte"
craft wte_empty    "$m" empty "$wte"
craft wte_forged   "$m" forge "$wte" 1099511627776 16
craft fc_nan       "$m" poke "$fc" 7 nan
craft fc_inf       "$m" poke "$fc" 7 inf
craft fc_no_crc    "$m" rmattr "$fc" checksum
craft s8_tiny      "$fx/int8.h5" poke "${fc}_scale" 0 1e-45
craft s8_huge      "$fx/int8.h5" poke "${fc}_scale" 0 1e30
craft s8_zero      "$fx/int8.h5" poke /model/transformer.wte.weight_scale 3 0
craft s8_in_nan    "$fx/int8.h5" poke /model/transformer.h.0.attn.c_attn.input_scale 0 nan
printf 'not HDF5\n' >"$c/text.h5"
: >"$c/empty.h5"
head -c 3000 "$m" >"$c/trunc.h5"
for f in "$c"/*.h5; do
  n=$(basename "$f" .h5)
  # every command that loads a model must refuse it (a tensor without a
  # checksum still loads, as files of other tools do; --verify refuses it)
  load=must_fail
  [ "$n" = fc_no_crc ] && load=clean_or_error
  run eval --model "$f" --data "$val";                        $load "$f" "eval --model $n"
  run eval --model "$m" --data "$val" --teacher "$f";         $load "$f" "eval --teacher $n"
  run generate --model "$f" --tokenizer "$tok" --prompt the --max-new-tokens 2
  $load "$f" "generate --model $n"
  run export --model "$f" --format deploy --out "$tmp/x.h5";  $load "$f" "export --model $n"
  run prune --model "$f" --method magnitude --sparsity 0.5 --out "$tmp/x.h5"
  $load "$f" "prune --model $n"
  run train --config "$fx/tiny.ini" --set "train.init=$f" --set "train.run_dir=$tmp/run"
  $load "$f" "train with train.init = $n"
  rm -rf "$tmp/run" "$tmp/x.h5"
  # info reads metadata only: it may succeed, never crash; --verify must
  # not call a bad file OK
  run info "$f";                                              clean_or_error "$f" "info $n"
  run info "$f" --verify
  case $n in
    wte_f64) clean_or_error "$f" "info --verify $n" ;; # a well-formed float64 tensor
    *) must_fail "$f" "info --verify $n" ;;
  esac
done

# finite weights that overflow float32 in the forward pass: eval printed
# "loss nan" and exited 0
cp "$m" "$tmp/huge.h5" && "$gen" poke "$tmp/huge.h5" /model/transformer.ln_f.weight 0 3e38
run eval --model "$tmp/huge.h5" --data "$val";              must_fail "$tmp/huge.h5" "eval on overflowing weights"
check 'grep -q "non-finite loss" "$tmp/err"' "eval on overflowing weights says the loss is not finite"
run eval --model "$tmp/huge.h5" --data "$val" --json;       must_fail "$tmp/huge.h5" "eval --json on overflowing weights"
run generate --model "$tmp/huge.h5" --tokenizer "$tok" --prompt the --max-new-tokens 2
clean_or_error "$tmp/huge.h5" "generate on overflowing weights"

# --------------------------------------------------------------- shards
s=$tmp/shard
mkdir -p "$s"
"$gen" shard "$s/ids_ge_vocab.h5" 300 $(seq 1 40) 300 $(seq 1 40)
"$gen" shard "$s/ids_negative.h5" 300 $(seq 1 40) -1 $(seq 1 40)
"$gen" shard "$s/empty.h5" 300
"$gen" shard "$s/one_token.h5" 300 5
"$gen" shard "$s/vocab_0.h5" 0 $(seq 1 40)
"$gen" forgeshard "$s/forged_2e62.h5" 4611686018427387904
"$gen" forgeshard "$s/forged_1e9.h5" 1000000000
"$gen" floatshard "$s/float.h5"
cp "$m" "$s/a_checkpoint.h5"
for f in "$s"/*.h5; do
  n=$(basename "$f" .h5)
  run eval --model "$m" --data "$f";                          must_fail "$f" "eval --data $n"
  run export --model "$m" --format deploy --int8 --calib "$f" --out "$tmp/x.h5"
  must_fail "$f" "export --calib $n"
  run prune --model "$m" --method wanda --sparsity 0.5 --calib "$f" --out "$tmp/x.h5"
  must_fail "$f" "prune --calib $n"
  # a whole epoch (10 windows of 8, 2 per step): training reads only the
  # windows it draws, so a bad id is found once its window comes up
  run train --config "$fx/tiny.ini" --set "data.train=$f" --set "train.run_dir=$tmp/run" \
    --set train.steps=5
  must_fail "$f" "train with data.train = $n"
  run train --config "$fx/tiny.ini" --set "data.val=$f" --set "train.run_dir=$tmp/run"
  must_fail "$f" "train with data.val = $n"
  rm -rf "$tmp/run" "$tmp/x.h5"
done

# ----------------------------------------------------------- tokenizers
t=$tmp/tok
for which in vocab.json merges.txt; do
  rm -rf "$t" && cp -r "$tok" "$t" && rm "$t/$which" && ln -s /dev/zero "$t/$which"
  run generate --model "$m" --tokenizer "$t" --prompt the --max-new-tokens 2
  must_fail "$t/$which" "generate with $which -> /dev/zero"
done
rm -rf "$t" && cp -r "$tok" "$t" && printf '{"a": 0, ' >"$t/vocab.json"
run generate --model "$m" --tokenizer "$t" --prompt the;     must_fail "$t/vocab.json" "generate with a cut vocab.json"

# ------------------------------------------------------- full disk (10)
# Every save under a file size limit: one line naming the file, exit 1,
# no crash at exit (HDF5's atexit handler crashed on the file left open),
# no temporary left. (`train` is not run under a limit: MPI's own shared
# memory files hit it first; it runs on the tmpfs below.)
limited() { ( trap '' XFSZ; ulimit -f "$1"; shift; "$bin" "$@" ) >"$tmp/out" 2>"$tmp/err"; rc=$?; cases=$((cases + 1)); }
d=$tmp/full
mkdir -p "$d"
for kb in 4 16 40; do
  limited $kb export --model "$m" --format deploy --out "$d/deploy.h5"
  must_fail "$d/deploy.h5" "export under a ${kb} KB file size limit"
  limited $kb export --model "$m" --format deploy --int8 --calib "$val" --out "$d/int8.h5"
  must_fail "$d/int8.h5" "export --int8 under a ${kb} KB file size limit"
  limited $kb prune --model "$m" --method magnitude --sparsity 0.5 --out "$d/pruned.h5"
  must_fail "$d/pruned.h5" "prune under a ${kb} KB file size limit"
  [ -r /usr/share/games/fortunes ] && {
    limited $kb prepare --input /usr/share/games/fortunes --out "$d/data" --vocab-size 300 --quiet
    must_fail "$d/data" "prepare under a ${kb} KB file size limit"
  }
  check '[ -z "$(find "$d" -name "*.tmp.*")" ]' "no temporary file left under a ${kb} KB limit"
  rm -rf "$d/run"
done
# On a real full file system, when this machine lets us mount a small tmpfs.
if mkdir -p "$tmp/mnt" && mount -t tmpfs -o size=300k tmpfs "$tmp/mnt" 2>/dev/null; then
  mnt=$tmp/mnt
  head -c 280000 /dev/zero >"$mnt/fill" 2>/dev/null
  run export --model "$m" --format deploy --out "$mnt/deploy.h5"
  must_fail "$mnt/deploy.h5" "export onto a full tmpfs"
  run prune --model "$m" --method magnitude --sparsity 0.5 --out "$mnt/pruned.h5"
  must_fail "$mnt/pruned.h5" "prune onto a full tmpfs"
  run train --config "$fx/tiny.ini" --set "train.run_dir=$mnt/run"
  must_fail "$mnt/run" "train onto a full tmpfs"
  if [ -r /usr/share/games/fortunes ]; then
    run prepare --input /usr/share/games/fortunes --out "$mnt/data" --vocab-size 300 --quiet
    must_fail "$mnt/data" "prepare onto a full tmpfs"
  fi
  check '[ -z "$(find "$mnt" -name "*.tmp.*")" ]' "no temporary file left on the full tmpfs"
  echo "hostile: full-disk cases also ran on a 300 KB tmpfs"
else
  echo "hostile: cannot mount a tmpfs here; full disk simulated with file size limits only"
fi

echo "hostile: $cases runs, $checks checks, $fails failures"
[ $fails -eq 0 ]
