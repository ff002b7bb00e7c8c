#!/usr/bin/env bash
# ThreadSanitizer over the GoogleTest suite (CI runs it after the ASan run): clang builds the
# library and the tests with -fsanitize=thread (our code instrumented, LibTorch as Debian ships
# it), then runs every test. Any report fails the script. The suppressions
# (tests/sanitizers/tsan.supp) cover only LibTorch and Gloo internals, each entry saying why.
# Usage: bash cmake/tsan-check.sh [build-dir]   (installs clang and libclang-rt-14-dev)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${1:-build-tsan}
start=$(date +%s)
bash cmake/install-deps.sh --sanitizers
CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" -DVICREG_SANITIZE=thread \
  -DVICREG_BUILD_EXAMPLES=OFF
cmake --build "$dir" --target vicreg_sanitizer_tests
echo "tsan-check: build took $(( $(date +%s) - start )) s"
# halt_on_error: the first report fails its test. OMP_NUM_THREADS=1 keeps LibTorch's
# uninstrumented OpenMP pool out (the Reliability.* tests make their own threads).
export TSAN_OPTIONS="suppressions=$root/tests/sanitizers/tsan.supp:halt_on_error=1:second_deadlock_stack=1"
export OMP_NUM_THREADS=1
ctest --test-dir "$dir" --output-on-failure --timeout 900 --parallel 2
echo "tsan-check: ThreadSanitizer suite passed in $(( $(date +%s) - start )) s"
