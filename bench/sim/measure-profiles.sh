#!/bin/sh
# bench/sim/measure-profiles.sh CLOUD.gguf EDGE.gguf [BUILD_DIR]: the engine profiles the
# simulator reads (decode tokens/s by batch, prefill tokens/s), measured as the testbed runs
# the models: the cloud on CPU 0 and an edge on CPU 1 at the same time, one thread each,
# at the testbed's lengths (bench/testbed/two-core-random.yaml: 53-token questions and
# 256-token answers on the cloud; 85-token expansion prompts and 64-token expansions on the
# edges). The edge is measured again until the cloud is done, so both cores stay busy as in
# a loaded testbed; the last edge run is printed. One JSON line each (pice bench engine).
set -eu
cloud=$1
edge=$2
build=${3:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
taskset -c 0 "$build/pice" bench engine --model "$cloud" --threads 1 --prompt-tokens 53 \
  --gen-tokens 256 --batch 1,4,8,16 --repeat 1 >"$tmp/cloud" 2>/dev/null &
c=$!
while kill -0 $c 2>/dev/null; do
  taskset -c 1 "$build/pice" bench engine --model "$edge" --threads 1 --prompt-tokens 85 \
    --gen-tokens 64 --batch 1,4,8,16 --repeat 1 >"$tmp/edge.new" 2>/dev/null && mv "$tmp/edge.new" "$tmp/edge"
done
wait $c
echo "cloud: $(tail -n 1 "$tmp/cloud")"
echo "edge: $(tail -n 1 "$tmp/edge")"
