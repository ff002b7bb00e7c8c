#!/usr/bin/env bash
# The reliability run (CI runs it after the main suite): clang builds the library and the
# tests with AddressSanitizer + UndefinedBehaviorSanitizer (our code instrumented, LibTorch as
# Debian ships it), plus the libFuzzer target. Then, under the sanitizers:
#   1. the GoogleTest suite and the stored fuzz corpus replay (CTest),
#   2. a short fuzz run from that corpus (VICREG_FUZZ_SECONDS, default 45).
# Any sanitizer report, leak from our code or fuzz finding fails the script.
# Usage: bash cmake/sanitize-check.sh [build-dir]   (installs clang and libclang-rt-14-dev)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${1:-build-asan}
seconds=${VICREG_FUZZ_SECONDS:-45}
start=$(date +%s)
bash cmake/install-deps.sh --sanitizers
# -O1 with line tables: readable reports, and the slow LibTorch headers compile faster than -O2.
CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" -DVICREG_SANITIZE=address,undefined \
  -DVICREG_FUZZ=ON -DVICREG_BUILD_EXAMPLES=OFF
cmake --build "$dir" --target vicreg_tests vicreg_fuzz
echo "sanitize-check: build took $(( $(date +%s) - start )) s"

# Leaks are reported (LeakSanitizer) and fail the run; the only suppression is a libgloo leak on
# its own error path (tests/sanitizers/lsan.supp says which).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$root/tests/sanitizers/lsan.supp"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OMP_NUM_THREADS=2

ctest --test-dir "$dir" --output-on-failure --timeout 900 --parallel 2

# A short fuzz run that starts from the stored corpus (a scratch copy: the repository's
# corpus only changes on purpose, see the README).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r tests/fuzz/corpus "$work/corpus"
"$dir/tests/vicreg_fuzz" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=6144 \
  -print_final_stats=1 "$work/corpus" > "$work/fuzz.log" 2>&1 || true
grep -E "^(#[0-9]+ +(INITED|DONE)|Done|stat::number_of_executed_units)" "$work/fuzz.log" || true
grep -q "^Done [0-9]* runs" "$work/fuzz.log" || { echo "sanitize-check: the fuzz run did not finish cleanly"; tail -50 "$work/fuzz.log"; exit 1; }
echo "sanitize-check: ASan+UBSan suite, corpus replay and ${seconds} s of fuzzing passed in $(( $(date +%s) - start )) s"
