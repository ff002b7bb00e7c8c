#!/usr/bin/env bash
# Installs what vicreg needs on Debian 12 (run as root, or with sudo available).
# Everything comes from Debian's own archive.
set -euo pipefail
packages=(
  g++ cmake ninja-build ccache git
  libtorch-dev libopenblas0-pthread   # LibTorch 1.13 (CPU); OpenBLAS makes matmul ~25x faster
  libomp5                             # LLVM's OpenMP runtime for the programs (src/apps/README.md)
  libgtest-dev libfmt-dev libcli11-dev nlohmann-json3-dev zlib1g-dev libgloo-dev
  python3-torch python3-pytest        # Python and TorchScript tests
  gnuplot-nox dataset-fashion-mnist   # the training job's plots and data
  iproute2                            # the two-hosts test's network namespaces
)
# --sanitizers: also clang and its runtimes, for cmake/sanitize-check.sh (ASan, UBSan, libFuzzer).
if [ "${1:-}" = "--sanitizers" ]; then
  packages+=(clang libclang-rt-14-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
