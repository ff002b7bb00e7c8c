#!/usr/bin/env bash
# vicreg_train --distributed with 2 processes on 127.0.0.1 (unequal shards: 33 + 32 images of
# a 65-image batch): both ranks log the same gathered loss at every step, their parameters end
# equal (the gradient averaging kept the replicas in sync), and rank 0 writes the evaluation
# outputs. Skips (exit 77) without the dataset.
set -euo pipefail
train="$1"
source "$(dirname "$0")/dataset.sh"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(--train-subset 650 --test-subset 200 --batch-size 65 --max-steps 8 --epochs 1
      --encoder-widths 8,16,16 --proj-dims 64,64 --probe-iters 20 --threads 1)
port=$((20000 + RANDOM % 20000))
for r in 0 1; do
  RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port timeout 300 \
    "$train" --distributed "${args[@]}" --out-dir "$out/rank$r" > "$out/rank$r.log" 2>&1 &
done
status=0
wait %1 || status=1
wait %2 || status=1
if [ $status -ne 0 ]; then
  tail -20 "$out/rank0.log" "$out/rank1.log"
  exit 1
fi
grep -q "data parallel: rank 1 of 2" "$out/rank1.log"
test -f "$out/rank0/results.json" && test -f "$out/rank0/table.md"
test ! -f "$out/rank1/results.json"
# Same losses on both ranks, step by step (column 3 of metrics.csv).
n0=$(tail -n +2 "$out/rank0/metrics.csv" | wc -l)
if [ "$n0" -ne 8 ] || ! diff <(cut -d, -f1-6 "$out/rank0/metrics.csv") \
                             <(cut -d, -f1-6 "$out/rank1/metrics.csv"); then
  echo "ranks disagree (or not 8 steps: $n0)"
  exit 1
fi
c0=$(grep -o "parameter digest [0-9a-f]*" "$out/rank0.log" | awk '{print $3}')
c1=$(grep -o "parameter digest [0-9a-f]*" "$out/rank1.log" | awk '{print $3}')
if [ -z "$c0" ] || [ "$c0" != "$c1" ]; then
  echo "parameters differ after training: rank 0 '$c0', rank 1 '$c1'"
  exit 1
fi
echo "2 ranks: 8 steps, identical loss terms and parameters (digest $c0); rank 0 evaluated"
