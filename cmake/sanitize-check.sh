#!/usr/bin/env bash
# The reliability run (CI runs it after the main suite): clang builds the library and the
# tests with AddressSanitizer + UndefinedBehaviorSanitizer (our code instrumented, LibTorch as
# Debian ships it), plus the libFuzzer target. Then, under the sanitizers:
#   1. the GoogleTest suite and the stored fuzz corpora replays (CTest),
#   2. a short fuzz run of each target from its corpus (VICREG_FUZZ_SECONDS, default 45, each).
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
cmake --build "$dir" --target vicreg_sanitizer_tests
echo "sanitize-check: build took $(( $(date +%s) - start )) s"

# Leaks are reported (LeakSanitizer) and fail the run; the only suppression is a libgloo leak on
# its own error path (tests/sanitizers/lsan.supp says which).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$root/tests/sanitizers/lsan.supp"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OMP_NUM_THREADS=2

ctest --test-dir "$dir" --output-on-failure --timeout 900 --parallel 2

# A short fuzz run of each target that starts from its stored corpus (a scratch copy: the
# repository's corpora only change on purpose, see tests/README.md). The IDX reader's run caps
# memory: an allocation its input cannot justify is a finding.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fuzz() {  # fuzz BINARY CORPUS [libFuzzer flags]
  local name=$1 corpus=$2
  shift 2
  cp -r "$corpus" "$work/$name"
  "$dir/tests/$name" -max_total_time="$seconds" -timeout=20 -print_final_stats=1 "$@" \
    "$work/$name" > "$work/$name.log" 2>&1 || true
  grep -E "^(#[0-9]+ +(INITED|DONE)|Done|stat::number_of_executed_units)" "$work/$name.log" || true
  grep -q "^Done [0-9]* runs" "$work/$name.log" ||
    { echo "sanitize-check: the $name run did not finish cleanly"; tail -50 "$work/$name.log"; exit 1; }
}
fuzz vicreg_fuzz tests/fuzz/corpus -rss_limit_mb=6144
fuzz vicreg_fuzz_idx tests/fuzz/corpus_idx -rss_limit_mb=2048 -malloc_limit_mb=512
fuzz vicreg_fuzz_checkpoint tests/fuzz/corpus_checkpoint -rss_limit_mb=2048
fuzz vicreg_fuzz_env tests/fuzz/corpus_env -rss_limit_mb=2048
echo "sanitize-check: ASan+UBSan suite, corpus replays and ${seconds} s of fuzzing per target passed in $(( $(date +%s) - start )) s"
