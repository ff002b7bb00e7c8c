#!/usr/bin/env bash
# Runs a test command N times in a row with one core kept busy beside it (a `yes` process),
# counting passes, failures and skips (exit 77); keeps the log of every failure and, in
# LOGDIR/runs, one line per run done (run number, exit code), to follow a long repetition. For
# the tests that use threads, processes or sockets, whose flakiness only shows under load.
#   bash tests/repeat.sh N LOGDIR COMMAND [ARGS...]
# e.g. bash tests/repeat.sh 200 /tmp/rep bash tests/resume.sh build/src/apps/vicreg_train ranks
set -uo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 N LOGDIR COMMAND [ARGS...]" >&2
  exit 2
fi
n=$1
logs=$2
shift 2
mkdir -p "$logs"
: > "$logs/runs"
yes > /dev/null &
busy=$!
trap 'kill $busy 2>/dev/null' EXIT
pass=0 fail=0 skip=0
start=$(date +%s)
for i in $(seq 1 "$n"); do
  "$@" > "$logs/run.log" 2>&1
  rc=$?
  echo "$i $rc" >> "$logs/runs"
  case $rc in
    0) pass=$((pass + 1)) ;;
    77) skip=$((skip + 1)) ;;
    *) fail=$((fail + 1)); cp "$logs/run.log" "$logs/failure-$i.log" ;;
  esac
done
echo "$n runs: $pass passed, $fail failed, $skip skipped in $(( $(date +%s) - start )) s" \
     "($*; a busy core beside; failure logs in $logs)"
[ "$fail" -eq 0 ]
