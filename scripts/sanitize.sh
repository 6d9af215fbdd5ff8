#!/usr/bin/env bash
# Builds PICE with AddressSanitizer + UndefinedBehaviorSanitizer (-DPICE_SANITIZE=ON) in
# its own build directory and runs the whole ctest suite under it. Slow (the engine's
# kernels and the model tests run several times slower); not part of scripts/test.sh.
#   scripts/sanitize.sh [ctest args...]     e.g. scripts/sanitize.sh -R Tokenizer
# Environment: PICE_SANITIZE_CXX / PICE_SANITIZE_CC pick the compiler (default clang++ /
# clang when installed, else g++ / gcc); PICE_SANITIZE_JOBS the parallel jobs (default 2);
# PICE_SANITIZE_DIR the build directory (default build-asan).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${PICE_SANITIZE_DIR:-build-asan}
jobs=${PICE_SANITIZE_JOBS:-2}
if [ -z "${PICE_SANITIZE_CXX:-}" ]; then
  if command -v clang++ >/dev/null; then PICE_SANITIZE_CXX=clang++ PICE_SANITIZE_CC=clang
  else PICE_SANITIZE_CXX=g++ PICE_SANITIZE_CC=gcc; fi
fi
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPICE_SANITIZE=ON \
  -DCMAKE_CXX_COMPILER="$PICE_SANITIZE_CXX" -DCMAKE_C_COMPILER="${PICE_SANITIZE_CC:-cc}"
cmake --build "$dir" -j"$jobs"
# Leaks are reported (and fail the test); a UBSan finding aborts with a stack trace.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 1800 "$@"
