#!/usr/bin/env bash
# Two processes on 127.0.0.1 (unequal shards: 32 + 31 rows of a 63-row batch) train the same
# model as one process on the whole batch: their per-step losses agree to 1e-9 relative.
set -euo pipefail
example="$1"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(--steps 20 --batch-size 63)
"$example" "${args[@]}" > "$out/single.txt"
port=$((20000 + RANDOM % 20000))
for r in 0 1; do
  RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port timeout 120 \
    "$example" "${args[@]}" > "$out/rank$r.txt" &
done
wait %1 && wait %2
for r in 0 1; do
  paste -d' ' <(grep '^step' "$out/single.txt" | awk '{print $4}') \
              <(grep '^step' "$out/rank$r.txt" | awk '{print $4}') |
    awk -v r=$r '{d = ($1 - $2) / $1; if (d < 0) d = -d; if (d > m) m = d; n++}
                 END {printf "rank %d: %d steps, max relative loss difference %.3g\n", r, n, m;
                      exit (n == 20 && m < 1e-9) ? 0 : 1}'
done
