#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/*_fuzz.cc) with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs each for a fixed time, one after the other.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s, every target;
#                                                       CI runs a short budget; 0 = build only)
# Prints one summary line per target ("fuzz: NAME N execs, C crashes") and exits non-zero
# when any target crashed (the input is written to fuzz-out/) or failed to run.
#
# Only the code under test is compiled with coverage and sanitizers (build-fuzz/obj, by a
# generated ninja file, so only what changed is rebuilt); what it merely links against
# (gRPC servers, the model) comes uninstrumented from the main build's static libraries
# ($PICE_BUILD_DIR, default build/, built here when missing). While one target runs, the
# next is compiled on the other core.
# Seed corpora are generated into build-fuzz/corpus-NAME from the repository (vocabulary
# GGUFs cut from models/, deploy/*.yaml, templates/*.yaml, tests/fuzz/seeds/); the corpus
# grows across local runs. Environment: PICE_FUZZ_JOBS (compile jobs, default 2),
# PICE_FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-60}
shift || true
all_targets=(gguf_fuzz tokenizer_fuzz sketch_parser_fuzz request_validation_fuzz config_fuzz)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
main=${PICE_BUILD_DIR:-build}
out=build-fuzz
jobs=${PICE_FUZZ_JOBS:-2}
mkdir -p "$out" fuzz-out

# --- the uninstrumented libraries and generated protobuf code of the main build --------
if [ ! -f "$main/build.ninja" ]; then
  cmake -S . -B "$main" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
main_ok=1
if ! cmake --build "$main" -j"$jobs" --target pice_cloud pice_edge pice_scheduler pice_node pice_common pice_args pice_engine pice_proto > "$out/main-build.log" 2>&1; then
  cat "$out/main-build.log" >&2
  echo "fuzz: the main build ($main) failed; the targets that link its libraries are skipped" >&2
  main_ok=0
fi
main_abs=$(cd "$main" && pwd)

# --- build-fuzz/build.ninja ----------------------------------------------------------
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cflags="-std=c++20 -O1 -gline-tables-only $san -fsanitize=fuzzer-no-link -I$root -I$main_abs/gen"
cflags+=" -DPICE_SOURCE_DIR=\\\"$root\\\" $(pkg-config --cflags yaml-cpp protobuf icu-uc)"
absl_libs=$(pkg-config --libs absl_statusor absl_str_format absl_strings absl_flat_hash_map absl_synchronization)
engine_libs="$absl_libs $(pkg-config --libs icu-uc icu-i18n) -lpthread"
svc_archives=""
for l in pice_cloud pice_edge pice_scheduler pice_node pice_common pice_args pice_engine pice_proto; do
  svc_archives+=" $main_abs/lib$l.a"
done
service_libs="$svc_archives \
  $(pkg-config --libs grpc++ protobuf yaml-cpp spdlog icu-uc icu-i18n absl_flags_parse \
    absl_random_random absl_statusor absl_str_format absl_synchronization absl_time \
    absl_flat_hash_map openssl hiredis re2 libcares prometheus-cpp-pull prometheus-cpp-core) -lgrpc++_reflection -lpthread"
service_deps="$svc_archives"

obj() { local s=${1%.cc}; echo "obj/$s.o"; }
gguf_srcs="engine/gguf/gguf.cc"
tok_srcs="$gguf_srcs engine/kernels/quant.cc engine/kernels/quant_k.cc $(ls engine/tokenizer/*.cc | tr '\n' ' ')"
config_srcs="common/config.cc node/node_config.cc cloud/cloud_config.cc edge/edge_config.cc \
  scheduler/config.cc scheduler/policy.cc node/templates.cc node/sketch_parser.cc"
{
  echo "cflags = $cflags"
  echo "rule cxx"
  echo "  command = clang++ -MMD -MF \$out.d \$cflags -c \$in -o \$out"
  echo "  depfile = \$out.d"
  echo "  deps = gcc"
  echo "  description = CXX \$out"
  echo "rule link"
  echo "  command = clang++ $san \$ldflags \$in -o \$out \$libs"
  echo "  description = LINK \$out"
  for s in $tok_srcs $config_srcs common/status.cc node/request.cc node/expand_rpc.cc tests/fuzz/*.cc; do
    echo "build $(obj "$s"): cxx $root/$s"
  done
  link() {  # name ldflags libs deps srcs...
    local name=$1 ldflags=$2 libs=$3 deps=$4; shift 4
    local objs=""
    for s in "$@"; do objs+=" $(obj "$s")"; done
    echo "build $name: link$objs | $deps"
    echo "  ldflags = $ldflags"
    echo "  libs = $libs"
  }
  link vocab_seeds "" "$engine_libs" "" tests/fuzz/vocab_seeds.cc $gguf_srcs
  link gguf_fuzz -fsanitize=fuzzer "$engine_libs" "" tests/fuzz/gguf_fuzz.cc $tok_srcs
  link tokenizer_fuzz -fsanitize=fuzzer "$engine_libs" "" tests/fuzz/tokenizer_fuzz.cc $tok_srcs
  link sketch_parser_fuzz -fsanitize=fuzzer "$absl_libs" "" tests/fuzz/sketch_parser_fuzz.cc \
    node/sketch_parser.cc
  link request_validation_fuzz -fsanitize=fuzzer "$service_libs" "$service_deps" \
    tests/fuzz/request_validation_fuzz.cc common/status.cc node/request.cc node/expand_rpc.cc
  link config_fuzz -fsanitize=fuzzer "$service_libs" "$service_deps" tests/fuzz/config_fuzz.cc \
    $config_srcs
} > "$out/build.ninja.new"
cmp -s "$out/build.ninja.new" "$out/build.ninja" 2>/dev/null || mv "$out/build.ninja.new" "$out/build.ninja"
rm -f "$out/build.ninja.new"

# --- seed corpora ----------------------------------------------------------------------
seed() {  # target: fills $out/corpus-target (only adds files)
  local c="$out/corpus-$1"
  mkdir -p "$c"
  if [ -d "tests/fuzz/seeds/$1" ]; then cp -n tests/fuzz/seeds/"$1"/* "$c/" 2>/dev/null || true; fi
  case $1 in
    gguf_fuzz)
      "$out/vocab_seeds" "$c" 300 models/stories260K.gguf models/tiny-qwen2-f32.gguf \
        models/tiny-llama3-f32.gguf models/pice-arith/arith-edge-a-q8_0.gguf \
        models/quants/tiny-qwen2-q5_0.gguf models/quants/tiny-qwen2-q4_1.gguf \
        models/quants/tiny-llama3-q4_k_m.gguf models/quants/tiny-llama3-bf16.gguf
      ;;
    tokenizer_fuzz)  # byte 0 picks the vocabulary and flags (tests/fuzz/tokenizer_fuzz.cc)
      local i=0 f
      for f in tests/data/vocab/ggml-vocab-llama-spm.gguf.inp tests/data/vocab/ggml-vocab-gpt-2.gguf.inp; do
        for flag in 0 1 2 13; do
          { printf "\\x$(printf %02x $flag)"; head -c 1500 "$f"; } > "$c/inp-$i-$flag"
        done
        i=$((i + 1))
      done
      ;;
    config_fuzz)
      cp -n deploy/*.yaml deploy/remote/*.yaml templates/*.yaml "$c/"
      ;;
  esac
}

# --- build in the background (one target after the other), fuzz in the foreground ------
build_log="$out/build.log"
: > "$build_log"
rm -f "$out"/*.built "$out"/*.failed
(
  if ! ninja -C "$out" -j"$jobs" vocab_seeds "${targets[0]}" >> "$build_log" 2>&1; then
    for t in "${targets[@]}"; do touch "$out/$t.failed"; done
    exit 1
  fi
  touch "$out/${targets[0]}.built"
  # Later targets compile on one core while a fuzzer uses the other.
  for t in "${targets[@]:1}"; do
    if [ $main_ok = 0 ] && { [ "$t" = config_fuzz ] || [ "$t" = request_validation_fuzz ]; }; then
      touch "$out/$t.failed"
      continue
    fi
    ninja -C "$out" -j1 "$t" >> "$build_log" 2>&1 && touch "$out/$t.built" || touch "$out/$t.failed"
  done
) &
builder=$!
trap 'kill $builder 2>/dev/null || true' EXIT

status=0
summary=()
artifacts=()
for t in "${targets[@]}"; do
  while [ ! -e "$out/$t.built" ] && [ ! -e "$out/$t.failed" ]; do sleep 0.2; done
  if [ -e "$out/$t.failed" ]; then
    cat "$build_log" >&2
    summary+=("fuzz: $t build FAILED")
    status=1
    continue
  fi
  seed "$t"
  if [ "$secs" -le 0 ]; then
    summary+=("fuzz: $t built")
    echo "${summary[-1]}"
    continue
  fi
  dict=""
  [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
  max_len=4096
  [ "$t" = gguf_fuzz ] && max_len=65536
  log="$out/$t.log"
  echo "fuzz: running $t for ${secs}s" >&2
  rc=0
  # -rss_limit_mb: ASan's shadow and the three vocabularies stay well below it.
  # -seed: fixed by default so a CI run repeats the mutations already explored here
  # (set PICE_FUZZ_SEED=0 for a random seed on long local runs).
  "$out/$t" "$out/corpus-$t" -seed="${PICE_FUZZ_SEED:-1}" -max_total_time="$secs" -max_len=$max_len -timeout=10 \
    -rss_limit_mb=3072 -print_final_stats=1 -artifact_prefix="fuzz-out/$t-" \
    $dict ${PICE_FUZZ_ARGS:-} > "$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -1)
  if [ "$rc" -ne 0 ]; then
    crashes=1
    status=1
    tail -n 60 "$log" >&2
    artifacts+=($(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log"))
  else
    crashes=0
  fi
  summary+=("fuzz: $t ${execs:-0} execs, $crashes crashes")
  echo "${summary[-1]}"
done
wait "$builder" 2>/dev/null || true
failed=$(printf '%s\n' "${summary[@]}" | grep -c -v ", 0 crashes$\| built$" || true)
echo "fuzz: ${#targets[@]} targets, ${secs}s each, $failed failed"
for a in "${artifacts[@]}"; do echo "fuzz: crashing input $a (replay: $out/TARGET $a)"; done
exit $status
