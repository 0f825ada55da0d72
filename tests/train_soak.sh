#!/usr/bin/env bash
# Kill -9 soak (issue 16): 20 random kill points, 10 over a plain run and 10
# over a 1 teacher + 1 student run. Each run is started, SIGKILLed (every
# rank and mpirun, as when a node dies) at a random moment (after the life's
# first save, within about 30 steps' time), resumed with
# --resume latest, killed again, ... and finally resumed to the end; its
# final.h5 must be bit-identical (h5diff /model, /optimizer) to an
# uninterrupted run. Checkpoints every 3 steps, so many kills land inside a
# save. After every kill, `latest` (when present) must name a checkpoint
# that `retort info --verify` accepts; no temporary file may survive the
# final run. The seed is printed; RETORT_SOAK_SEED=N replays a failure.
source "$(dirname "$0")/train_lib.sh"
SEED=${RETORT_SOAK_SEED:-$(( $(date +%s%N) % 32768 ))}
RANDOM=$SEED
echo "train_soak: seed $SEED (replay: RETORT_SOAK_SEED=$SEED ctest -R train_soak)"
KILLS=10
rt_prepare
rt_config teacher.ini runs/teacher steps=100
"$RETORT" train --config teacher.ini 2>/dev/null || fail "teacher training failed"

# kill_tree PID: SIGKILL PID and its children (mpirun and its ranks)
kill_tree() {
  local kids
  kids=$(pgrep -P "$1" || true)
  kill -9 "$1" $kids 2>/dev/null || true
}

for mode in plain distill; do
  extra=(steps=300 checkpoint_every=3 eval_every=0 log_every=100)
  launch=("$RETORT")
  if [ $mode = distill ]; then
    extra+=(-- "[distill]" "teachers = 1" "teacher = runs/teacher/final.h5" "topk = 8")
    launch=(mpirun -np 2 "$RETORT")
  fi
  rt_config "ref$mode.ini" "runs/ref$mode" "${extra[@]}"
  rt_config "cut$mode.ini" "runs/cut$mode" "${extra[@]}"
  t0=$(date +%s%N)
  "${launch[@]}" train --config "ref$mode.ini" 2>"ref$mode.log" ||
    { cat "ref$mode.log"; fail "$mode: reference run failed"; }
  ref_ms=$((($(date +%s%N) - t0) / 1000000))
  points=()
  for i in $(seq $KILLS); do
    # once this life has saved a checkpoint of its own (so every life moves
    # the run on), a random moment within the time of about 30 steps
    before=$(cat "runs/cut$mode/latest" 2>/dev/null || echo -)
    "${launch[@]}" train --config "cut$mode.ini" --resume latest >"cut$mode.$i.log" 2>&1 &
    pid=$!
    for _ in $(seq 3000); do
      [ "$(cat "runs/cut$mode/latest" 2>/dev/null || echo -)" != "$before" ] && break
      kill -0 $pid 2>/dev/null || break
      sleep 0.01
    done
    delay_ms=$((RANDOM * (ref_ms * 30 / 300 + 1) / 32768))
    sleep "$((delay_ms / 1000)).$(printf %03d $((delay_ms % 1000)))"
    kill_tree $pid
    wait $pid 2>/dev/null || true
    latest=-
    if [ -f "runs/cut$mode/latest" ]; then
      latest=$(cat "runs/cut$mode/latest")
      "$RETORT" info --verify "runs/cut$mode/$latest" >/dev/null 2>"verify.log" ||
        { cat verify.log; fail "$mode, kill $i at ${delay_ms} ms: latest names a bad file ($latest)"; }
    fi
    points+=("${delay_ms}ms:${latest#step_}")
  done
  echo "$mode: $KILLS kills (ms after the life's first save : latest after the kill): ${points[*]}"
  "${launch[@]}" train --config "cut$mode.ini" --resume latest 2>"res$mode.log" ||
    { cat "res$mode.log"; fail "$mode: final resume failed"; }
  for g in /model /optimizer; do
    h5diff "runs/ref$mode/final.h5" "runs/cut$mode/final.h5" $g ||
      fail "$mode: $g after $KILLS kills differs from the uninterrupted run (seed $SEED)"
  done
  if ls -a "runs/cut$mode" | grep -q '\.tmp\.'; then
    fail "$mode: temporary files survived: $(ls -a "runs/cut$mode" | grep '\.tmp\.')"
  fi
done
echo "train_soak: ok"
