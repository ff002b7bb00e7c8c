#!/usr/bin/env bash
# vicreg_train killed with SIGKILL at random steps and resumed from its checkpoints ends with
# the same weights, bit for bit, as an uninterrupted run, and logs the same losses at every
# step.
#   resume.sh TRAIN single: one process, killed twice, then resumed to the end; a checkpoint of
#                           other settings is refused; a torn newest checkpoint falls back on
#                           the previous one.
#   resume.sh TRAIN ranks:  two ranks on 127.0.0.1; one of them (chosen at random) is killed,
#                           the other must exit with an error naming it; the killed rank's
#                           newest checkpoint is damaged; both are relaunched with --resume.
# Skips (exit 77) without the dataset.
set -euo pipefail
train="$1"
mode="$2"
source "$(dirname "$0")/dataset.sh"
out=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$out"
}
trap cleanup EXIT
args=(--train-subset 512 --test-subset 64 --batch-size 32 --epochs 2 --encoder-widths 16,32
      --proj-dims 256,256 --curve-every 16 --few-label-k 0 --probe-iters 5 --threads 1
      --checkpoint-every 3)
total=32  # 512 / 32 x 2 epochs

fail() {
  echo "FAIL: $*"
  for f in "$out"/*.log; do echo "== $f"; tail -5 "$f"; done
  exit 1
}

steps_in() {  # the steps logged in a run directory's metrics.csv
  if [ -f "$1/metrics.csv" ]; then echo $(($(wc -l < "$1/metrics.csv") - 1)); else echo 0; fi
}

# Starts rank $1 of $2 (world 1: no --distributed) into directory $3 in the background, with
# --resume when the directory exists (a restart with the same command line: one killed before
# its first checkpoint starts at step 0); its pid goes into $started.
start() {
  local rank=$1 world=$2 dir=$3 extra=()
  [ -d "$dir" ] && extra=(--resume "$dir")
  if [ "$world" -gt 1 ]; then
    RANK=$rank WORLD_SIZE=$world MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "$train" --distributed "${args[@]}" --out-dir "$dir" "${extra[@]}" \
      >> "$dir.log" 2>&1 &
  else
    "$train" "${args[@]}" --out-dir "$dir" "${extra[@]}" >> "$dir.log" 2>&1 &
  fi
  started=$!
  pids+=("$started")
}

# Waits until directory $1 has logged at least $2 steps or process $3 has exited.
wait_for_step() {
  while [ "$(steps_in "$1")" -lt "$2" ] && kill -0 "$3" 2>/dev/null; do sleep 0.01; done
}

digests() { grep -h "parameter digest" "$@" | tail -n 1; }

# Every step's logged values (step, epoch, loss and its three terms; not the timings) and the
# saved weights agree with the uninterrupted run's.
same_run() {
  local a=$1 b=$2
  diff <(cut -d, -f1-6 "$a/metrics.csv") <(cut -d, -f1-6 "$b/metrics.csv") > /dev/null ||
    fail "$b/metrics.csv differs from $a/metrics.csv"
}

port=$((20000 + RANDOM % 20000))
if [ "$mode" = single ]; then
  "$train" "${args[@]}" --out-dir "$out/full" > "$out/full.log" 2>&1 || fail "uninterrupted run"
  kills=""
  for attempt in 1 2; do
    start 0 1 "$out/cut"
    k=$(( $(steps_in "$out/cut") + 1 + RANDOM % 12 ))
    wait_for_step "$out/cut" "$k" "$started"
    kill -9 "$started" 2>/dev/null || true
    wait "$started" || true
    kills+=" $(steps_in "$out/cut")"
  done
  cp -r "$out/cut" "$out/torn"
  start 0 1 "$out/cut"
  wait "$started" || fail "the resumed run"
  for f in encoder.pt projector.pt; do
    cmp -s "$out/full/$f" "$out/cut/$f" || fail "$f differs after the kills at steps$kills"
  done
  [ "$(digests "$out/full.log")" = "$(digests "$out/cut.log")" ] || fail "digests differ"
  same_run "$out/full" "$out/cut"
  full_curve=$(grep "^learning curve" "$out/full.log" | sed 's/ ([0-9]* s)$//')
  cut_curve=$(grep "^learning curve" "$out/cut.log" | tail -n 1 | sed 's/ ([0-9]* s)$//')
  [ "$full_curve" = "$cut_curve" ] || fail "learning curves differ: $full_curve / $cut_curve"

  # The newest checkpoint torn in half by a crash of the disk, not of the writer: the
  # previous one takes over, and the result is still the uninterrupted run's. (A kill between
  # the writer's two renames leaves checkpoint.prev.pt without checkpoint.pt: nothing to tear.)
  if [ -f "$out/torn/checkpoint.prev.pt" ] && [ -f "$out/torn/checkpoint.pt" ]; then
    size=$(stat -c %s "$out/torn/checkpoint.pt")
    truncate -s $((size / 2)) "$out/torn/checkpoint.pt"
    start 0 1 "$out/torn"
    wait "$started" || fail "the run resumed from a torn checkpoint"
    grep -q "checkpoint.prev.pt after step" "$out/torn.log" || fail "no fallback to the previous"
    cmp -s "$out/full/encoder.pt" "$out/torn/encoder.pt" || fail "torn: encoder.pt differs"
  fi

  # A checkpoint of other settings is refused before anything is loaded or written.
  before=$(md5sum < "$out/cut/checkpoint.pt")
  if "$train" "${args[@]/256,256/128,128}" --resume "$out/cut" > "$out/foreign.log" 2>&1; then
    fail "a checkpoint of --proj-dims 256,256 was loaded by a run with 128,128"
  fi
  grep -q -- "other settings, refused; --proj-dims 256,256 there, 128,128 here" \
    "$out/foreign.log" || fail "the refusal does not name --proj-dims"
  [ "$before" = "$(md5sum < "$out/cut/checkpoint.pt")" ] || fail "the refused run wrote"
  echo "killed at steps$kills of $total and resumed: weights, losses and learning curve equal" \
       "to the uninterrupted run's; torn checkpoint recovered; other settings refused"
  exit 0
fi

# Two ranks.
for r in 0 1; do start "$r" 2 "$out/full$r"; done
for p in "${pids[@]}"; do wait "$p" || fail "uninterrupted two-rank run"; done
pids=()
port=$((port + 1))
victim=$((RANDOM % 2))
other=$((1 - victim))
k=$((1 + RANDOM % (total - 1)))
for r in 0 1; do start "$r" 2 "$out/cut$r"; eval "pid$r=$started"; done
victim_pid=$(eval echo "\$pid$victim")
other_pid=$(eval echo "\$pid$other")
wait_for_step "$out/cut$victim" "$k" "$victim_pid"
kill -9 "$victim_pid" 2>/dev/null || true
killed_at=$(steps_in "$out/cut$victim")
t0=$(date +%s)
wait "$victim_pid" || true
if wait "$other_pid"; then
  # Only when the kill landed after the victim's part in the last step's collectives: then
  # the other rank trained every step (and, as rank 1, had nothing more to do).
  [ "$(steps_in "$out/cut$other")" -eq "$total" ] ||
    fail "rank $other succeeded although rank $victim was killed at step $killed_at"
else
  elapsed=$(( $(date +%s) - t0 ))
  [ "$elapsed" -le 60 ] || fail "rank $other took $elapsed s to notice the lost rank"
  grep -q "lost rank: $victim" "$out/cut$other.log" || fail "rank $other does not name rank $victim"
fi
pids=()
port=$((port + 1))
# Where the killed rank has two checkpoints, its newest is damaged too (4 KiB of random bytes):
# the ranks agree on an older step (or on step 0) and still end as the uninterrupted run.
damaged=""
if [ -f "$out/cut$victim/checkpoint.prev.pt" ] && [ -f "$out/cut$victim/checkpoint.pt" ]; then
  f="$out/cut$victim/checkpoint.pt"
  dd if=/dev/urandom of="$f" bs=1 count=4096 seek=$(( $(stat -c %s "$f") / 3 )) conv=notrunc \
    status=none
  damaged="; its newest checkpoint damaged"
fi
for r in 0 1; do start "$r" 2 "$out/cut$r"; done
for p in "${pids[@]}"; do wait "$p" || fail "the resumed two-rank run"; done
if [ -n "$damaged" ]; then
  grep -q "checkpoint.pt is damaged" "$out/cut$victim.log" || fail "the damage was not reported"
fi
for r in 0 1; do
  [ "$(digests "$out/full$r.log")" = "$(digests "$out/cut$r.log")" ] ||
    fail "rank $r: digests differ"
  same_run "$out/full$r" "$out/cut$r"
done
cmp -s "$out/full0/encoder.pt" "$out/cut0/encoder.pt" || fail "encoder.pt differs"
echo "rank $victim killed at step $killed_at of $total$damaged, rank $other named it and exited;" \
     "both resumed: digests, losses and rank 0's weights equal to the uninterrupted run's"
