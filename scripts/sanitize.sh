#!/usr/bin/env bash
# Builds PICE with sanitizers in a build directory of their own and runs ctest under it.
# Slow (the engine's kernels and the model tests run several times slower); not part of
# scripts/test.sh.
#   scripts/sanitize.sh [ctest args...]          AddressSanitizer + UndefinedBehaviorSanitizer
#   scripts/sanitize.sh --tsan [ctest args...]   ThreadSanitizer
# e.g. scripts/sanitize.sh -R Tokenizer; scripts/sanitize.sh --tsan -R HealthCheck
#
# ThreadSanitizer: Debian's abseil and gRPC are not instrumented, so every executable links
# tests/tsan/absl_tsan_shim.cc, which tells TSan about absl::Mutex/CondVar (see its
# header). Reports go to $dir/tsan.<pid> (node processes started by the integration tests
# write theirs too) and the run fails when a report has a frame in the project's own code;
# reports whose frames are all inside gRPC, protobuf or abseil are counted, not failed on
# (their internals are invisible to TSan).
# Environment: PICE_SANITIZE_CXX / PICE_SANITIZE_CC pick the compiler (default clang++ /
# clang when installed, else g++ / gcc; TSan needs clang); PICE_SANITIZE_JOBS the parallel
# jobs (default 2); PICE_SANITIZE_DIR the build directory (default build-asan, build-tsan);
# PICE_SANITIZE_TARGET one build target instead of all (e.g. unit_tests).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=asan
if [ "${1:-}" = "--tsan" ]; then mode=tsan; shift; fi
dir=${PICE_SANITIZE_DIR:-build-$mode}
jobs=${PICE_SANITIZE_JOBS:-2}
if [ -z "${PICE_SANITIZE_CXX:-}" ]; then
  if command -v clang++ >/dev/null; then PICE_SANITIZE_CXX=clang++ PICE_SANITIZE_CC=clang
  else PICE_SANITIZE_CXX=g++ PICE_SANITIZE_CC=gcc; fi
fi
if [ "$mode" = asan ]; then
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPICE_SANITIZE=ON \
    -DCMAKE_CXX_COMPILER="$PICE_SANITIZE_CXX" -DCMAKE_C_COMPILER="${PICE_SANITIZE_CC:-cc}"
  cmake --build "$dir" -j"$jobs" ${PICE_SANITIZE_TARGET:+--target "$PICE_SANITIZE_TARGET"}
  # Leaks are reported (and fail the test); a UBSan finding aborts with a stack trace.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/tsan/lsan.supp}
  exec ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 1800 "$@"
fi

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)  # absolute: the linker flags and log paths are used from elsewhere
flags="-fsanitize=thread -g -O1 -fno-omit-frame-pointer"
"$PICE_SANITIZE_CXX" $flags -std=c++20 -fPIC -c tests/tsan/absl_tsan_shim.cc -o "$dir/absl_tsan_shim.o"
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$PICE_SANITIZE_CXX" -DCMAKE_C_COMPILER="${PICE_SANITIZE_CC:-cc}" \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" \
  -DCMAKE_CXX_STANDARD_LIBRARIES="$dir/absl_tsan_shim.o -ldl"
cmake --build "$dir" -j"$jobs" ${PICE_SANITIZE_TARGET:+--target "$PICE_SANITIZE_TARGET"}
rm -f "$dir"/tsan.*
# exitcode=0: a report does not fail the test by itself; the classification below decides.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0 exitcode=0 second_deadlock_stack=1 log_path=$dir/tsan}
set +e
ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 3600 "$@"
rc=$?
set -e
# Which reports are the project's (../shared/tools/tsan/README.md): a data race whose
# two accesses both have a frame in the project's folders (a race inside gRPC, abseil or
# protobuf shows our frames on one side at most: their internals are not instrumented);
# any other report (use after free, lock order, thread leak) with a project frame. The
# shim's own frames (tests/tsan/) do not count.
ours=0 total=0
: > "$dir/tsan-project-reports.txt"
for f in "$dir"/tsan.*; do
  [ -e "$f" ] || continue
  counts=$(awk -v proj="$PWD/(common|engine|node|cloud|edge|scheduler|cli|bench|tests)/" \
               -v out="$dir/tsan-project-reports.txt" '
    function finish() {
      if (!inrep) return
      total++
      mine = race ? (sides >= 2 && sides_ours == sides) : any_ours
      if (mine) { ours++; printf "%s\n", rep >> out }
      inrep = 0
    }
    /^WARNING: ThreadSanitizer/ { finish(); inrep = 1; rep = ""; race = ($0 ~ /data race/);
                                  sides = 0; sides_ours = 0; any_ours = 0; inside = 0 }
    inrep {
      rep = rep $0 "\n"
      if ($0 ~ /^  (Read|Write|Atomic read|Atomic write|Previous read|Previous write|Previous atomic read|Previous atomic write) of size/) {
        sides++; inside = 1; side_ours = 0
      } else if (inside && $0 ~ /^ *$/) {
        if (side_ours) sides_ours++
        inside = 0
      }
      if ($0 ~ proj && $0 !~ /\/tests\/tsan\//) { any_ours = 1; if (inside) side_ours = 1 }
      if ($0 ~ /^SUMMARY: ThreadSanitizer/) finish()
    }
    END { finish(); print total, ours }' "$f")
  read -r t o <<< "$counts"
  total=$((total + ${t:-0}))
  ours=$((ours + ${o:-0}))
done
echo "ThreadSanitizer: $total report(s), $ours of the project's own (both sides of a race in its code)" \
     "${ours:+(see $dir/tsan-project-reports.txt)}"
[ "$rc" -eq 0 ] && [ "$ours" -eq 0 ]
