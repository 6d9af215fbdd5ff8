#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a fixed time.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60; CI runs a short budget)
# The seed corpus is the bundled models; crashes are written to fuzz-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
out=build-fuzz
mkdir -p "$out" fuzz-out
ABSL_LIBS=$(pkg-config --libs absl_strings absl_str_format absl_status absl_statusor)
CXXFLAGS="-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I."
build() {  # name sources...
  local name=$1; shift
  if [ ! -x "$out/$name" ] || [ -n "$(find "$@" engine/gguf -newer "$out/$name" 2>/dev/null | head -1)" ]; then
    clang++ $CXXFLAGS "$@" -o "$out/$name" $ABSL_LIBS
  fi
}
build gguf_fuzz tests/fuzz/gguf_fuzz.cc engine/gguf/gguf.cc
corpus="$out/corpus-gguf"
mkdir -p "$corpus"
for m in models/stories260K-q8_0.gguf models/tiny-qwen2-q4_0.gguf models/pice-arith/arith-edge-a-q8_0.gguf; do
  cp -n "$m" "$corpus/" 2>/dev/null || true
done
echo "fuzz: gguf_fuzz for ${secs}s" >&2
"$out/gguf_fuzz" "$corpus" -max_total_time="$secs" -max_len=65536 -artifact_prefix=fuzz-out/ \
  -print_final_stats=1 2>&1 | tail -n 12
