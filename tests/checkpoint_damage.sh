#!/usr/bin/env bash
# vicreg_train never resumes from damaged data and never destroys the evidence.
#   checkpoint_damage.sh TRAIN damage:    4 KiB of random bytes in the middle of checkpoint.pt
#                                         are detected; the run resumes from checkpoint.prev.pt
#                                         and ends bit-identical to the uninterrupted run.
#   checkpoint_damage.sh TRAIN all:       both checkpoints damaged: --resume exits non-zero,
#                                         names both files, and writes nothing.
#   checkpoint_damage.sh TRAIN first:     --resume of an empty folder (a first launch under an
#                                         auto-resume script) trains from step 0.
#   checkpoint_damage.sh TRAIN full-disk: the output folder on a small tmpfs that fills up: the
#                                         failed checkpoint write exits with an error and leaves
#                                         the last checkpoint resumable; the final outputs on a
#                                         full disk stay as they were. Needs a mount namespace
#                                         (root, or user namespaces); skips (77) without one
#                                         unless VICREG_REQUIRE_TMPFS=1.
# Skips (exit 77) without the dataset.
set -euo pipefail
train="$1"
mode="$2"
source "$(dirname "$0")/dataset.sh"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(--train-subset 512 --test-subset 64 --batch-size 32 --epochs 2 --encoder-widths 16,32
      --proj-dims 256,256 --curve-every 16 --few-label-k 0 --probe-iters 5 --threads 1
      --checkpoint-every 3)

fail() {
  echo "FAIL: $*"
  for f in "$out"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -8 "$f"; }; done
  exit 1
}
digest() { grep -h "parameter digest" "$1"; }
# Every file of a folder with its checksum: what "writes nothing" compares.
listing() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
# Writes 4 KiB of random bytes into file $1 at a third of its length.
scribble() {
  dd if=/dev/urandom of="$1" bs=1 count=4096 seek=$(( $(stat -c %s "$1") / 3 )) conv=notrunc \
    status=none
}

"$train" "${args[@]}" --out-dir "$out/full" > "$out/full.log" 2>&1 || fail "uninterrupted run"

case "$mode" in
damage)
  cp -r "$out/full" "$out/dmg"
  scribble "$out/dmg/checkpoint.pt"
  "$train" "${args[@]}" --resume "$out/dmg" > "$out/dmg.log" 2>&1 || fail "the resumed run"
  grep -q "checkpoint.pt is damaged: the SHA-256 of its" "$out/dmg.log" ||
    fail "the damage was not reported"
  grep -q "resumed from $out/dmg/checkpoint.prev.pt after step 30 of 32" "$out/dmg.log" ||
    fail "did not resume from checkpoint.prev.pt"
  cmp -s "$out/full/encoder.pt" "$out/dmg/encoder.pt" || fail "encoder.pt differs"
  [ "$(digest "$out/full.log")" = "$(digest "$out/dmg.log")" ] || fail "digests differ"
  grep -E "damaged|resumed from" "$out/dmg.log"
  echo "damaged checkpoint.pt detected; resumed from checkpoint.prev.pt; weights equal"
  ;;
all)
  cp -r "$out/full" "$out/all"
  scribble "$out/all/checkpoint.pt"
  truncate -s 100000 "$out/all/checkpoint.prev.pt"
  before=$(listing "$out/all")
  if "$train" "${args[@]}" --resume "$out/all" > "$out/all.log" 2>&1; then
    fail "resumed although both checkpoints are damaged"
  fi
  grep -q "no intact checkpoint.*checkpoint.pt is damaged.*checkpoint.prev.pt has no checksum line.*Refused, and nothing written" \
    "$out/all.log" || fail "the error does not name both files"
  [ "$before" = "$(listing "$out/all")" ] || fail "the refused run changed the folder"
  grep "vicreg_train:" "$out/all.log"
  echo "both checkpoints damaged: refused, folder unchanged"
  ;;
first)
  mkdir "$out/new"
  "$train" "${args[@]}" --resume "$out/new" > "$out/new.log" 2>&1 || fail "the first launch"
  grep -q "no checkpoint to continue from; training starts at step 0" "$out/new.log" ||
    fail "no note of the start at step 0"
  cmp -s "$out/full/encoder.pt" "$out/new/encoder.pt" || fail "encoder.pt differs"
  grep "training starts" "$out/new.log"
  echo "first launch with --resume: trained from step 0, weights equal"
  ;;
full-disk)
  # The rest runs in a mount namespace of its own, so the tmpfs vanishes with it on every exit.
  inner=$(cat <<'EOF'
set -euo pipefail
train=$1 out=$2 size=$3
shift 3
args=("$@")
mkdir "$out/tmpfs"
mount -t tmpfs -o size="$size" tmpfs "$out/tmpfs"
# Room for two checkpoints, not three: the third write (after step 9) finds the disk full.
if "$train" "${args[@]}" --out-dir "$out/tmpfs/run" > "$out/disk.log" 2>&1; then
  echo "FAIL: the run went on past a full disk"; exit 1
fi
grep -q "checkpoint after step 9: writing $out/tmpfs/run/checkpoint.pt.tmp failed.*No space left on device; left as they were: $out/tmpfs/run/checkpoint.pt and $out/tmpfs/run/checkpoint.prev.pt" \
  "$out/disk.log" || { echo "FAIL: no clear error"; tail -3 "$out/disk.log"; exit 1; }
[ ! -e "$out/tmpfs/run/checkpoint.pt.tmp" ] || { echo "FAIL: the partial file stayed"; exit 1; }
grep "vicreg_train:" "$out/disk.log"
cp -r "$out/tmpfs/run" "$out/resumed"
# The final outputs on a full disk: a copy of a finished run's outputs, then the disk filled up
# but for one page (4 KiB), then --eval-only writes its results there. The small files fit in
# that page one at a time (each new one replaces its old one); std_sorted.csv (3 pages) does
# not: the run stops there, with that file and every later one as it was, and no partial file.
rm -rf "$out/tmpfs/run"
mkdir "$out/tmpfs/eval"
find "$out/full" -maxdepth 1 -type f ! -name 'checkpoint*' -exec cp {} "$out/tmpfs/eval" \;
later=(std_sorted.csv results.json curve.csv pca.csv plots.gp loss.png std.png pca.png)
before=$(cd "$out/tmpfs/eval" && sha256sum "${later[@]}")
dd if=/dev/zero of="$out/tmpfs/filler" bs=4k status=none 2> /dev/null || true
truncate -s -4096 "$out/tmpfs/filler"
if "$train" "${args[@]}" --eval-only --resume "$out/full" --out-dir "$out/tmpfs/eval" \
     > "$out/eval.log" 2>&1; then
  echo "FAIL: the evaluation wrote on a full disk"; exit 1
fi
grep -q "writing $out/tmpfs/eval/std_sorted.csv.tmp failed.*No space left on device" \
  "$out/eval.log" || { echo "FAIL: no clear error"; tail -3 "$out/eval.log"; exit 1; }
[ "$before" = "$(cd "$out/tmpfs/eval" && sha256sum "${later[@]}")" ] ||
  { echo "FAIL: the outputs changed on a full disk"; exit 1; }
[ -z "$(find "$out/tmpfs/eval" -name '*.tmp')" ] || { echo "FAIL: a partial file stayed"; exit 1; }
grep "vicreg_train:" "$out/eval.log"
umount "$out/tmpfs"
EOF
)
  # Room for 2.5 checkpoints and the small files.
  ckpt=$(stat -c %s "$out/full/checkpoint.pt")
  size=$(( ckpt * 5 / 2 + 256 * 1024 ))
  probe='mount -t tmpfs -o size=64k tmpfs "$0" && umount "$0"'
  mkdir "$out/probe"
  if unshare -m sh -c "$probe" "$out/probe" 2> /dev/null; then ns=(unshare -m)
  elif unshare -rm sh -c "$probe" "$out/probe" 2> /dev/null; then ns=(unshare -rm)
  else
    [ "${VICREG_REQUIRE_TMPFS:-0}" = 1 ] && fail "no mount namespace for the tmpfs"
    echo "SKIP: cannot mount a small tmpfs in a mount namespace (needs root or user namespaces)"
    exit 77
  fi
  "${ns[@]}" bash -c "$inner" inner "$train" "$out" "$size" "${args[@]}" || fail "full disk"
  "$train" "${args[@]}" --resume "$out/resumed" > "$out/resumed.log" 2>&1 ||
    fail "resuming the checkpoint left by the full disk"
  grep -q "resumed from $out/resumed/checkpoint.pt after step 6 of 32" "$out/resumed.log" ||
    fail "did not resume from step 6"
  cmp -s "$out/full/encoder.pt" "$out/resumed/encoder.pt" || fail "encoder.pt differs"
  grep "resumed from" "$out/resumed.log"
  echo "full disk: the write failed with an error, the last checkpoint resumed to equal" \
       "weights; the outputs on a full disk stayed as they were"
  ;;
*)
  fail "unknown mode '$mode' (damage, all, first, full-disk)"
  ;;
esac
