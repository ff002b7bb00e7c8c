#!/usr/bin/env bash
# Builds vicreg and runs its whole CTest suite against Debian trixie's LibTorch 2.6, inside a
# debootstrap root (Debian's own archive; run as root). The root is cached between local runs
# in $VICREG_TRIXIE_ROOT (default /var/cache/vicreg-trixie/root); CI starts clean.
# Mounts are undone on every exit path. The PyTorch 2 tests (opcheck, torch.compile,
# torch.export) must run here: VICREG_REQUIRE_PYTORCH2 makes them fail rather than skip.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
root=${VICREG_TRIXIE_ROOT:-/var/cache/vicreg-trixie/root}
packages=(g++ cmake ninja-build ccache libtorch-dev libopenblas0-pthread libomp5 libgtest-dev
          libfmt-dev libcli11-dev nlohmann-json3-dev zlib1g-dev libgloo-dev python3-torch
          python3-pytest python3-setuptools gnuplot-nox dataset-fashion-mnist)
start=$(date +%s)

if ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
fi
if [ ! -x "$root/usr/bin/apt-get" ]; then
  mkdir -p "$(dirname "$root")"
  debootstrap --variant=minbase --include=ca-certificates trixie "$root"
fi

mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM
mount_bind() {  # mount_bind SOURCE TARGET [extra mount args]
  mkdir -p "$2"
  if ! mountpoint -q "$2"; then mount "${@:3}" "$1" "$2"; mounted+=("$2"); fi
}
mount_bind proc "$root/proc" -t proc
mount_bind /dev "$root/dev" --bind
mount_bind "$src" "$root/src" --bind

chroot "$root" env DEBIAN_FRONTEND=noninteractive bash -euo pipefail -c "
  apt-get update -q
  apt-get install -y -q --no-install-recommends ${packages[*]}
  rm -rf /tmp/vicreg-build-libtorch2
  cmake -S /src -B /tmp/vicreg-build-libtorch2 -G Ninja -DCMAKE_BUILD_TYPE=Release
  cmake --build /tmp/vicreg-build-libtorch2
  VICREG_REQUIRE_PYTORCH2=1 ctest --test-dir /tmp/vicreg-build-libtorch2 --output-on-failure \
    --timeout 900
"
echo "libtorch2-check: LibTorch 2.6 build and tests took $(( $(date +%s) - start )) s"
