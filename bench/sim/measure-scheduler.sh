#!/bin/sh
# bench/sim/measure-scheduler.sh [BUILD_DIR] [EDGE_COUNTS]: the simulator's scheduler costs,
# measured on the real pice-scheduler. One pice-edge (pice-arith) listens on every loopback
# address; the scheduler is given N "edges" (127.0.x.y:PORT, N distinct addresses of that one
# edge process), so it probes N edges every load_poll and scans N per point. For each N:
#   cpu_per_probe_us   its idle CPU / (N / load_poll) probes, over 10 s
#   cpu_per_query_ms   its CPU per sketch-route query (100 queries, the idle share removed)
# and, between the smallest and the largest N, cpu_per_edge_scan_ns per point and edge.
# One JSON line per N on stdout. Takes about a minute per N; nothing else should run.
set -eu
build=${1:-build}
counts=${2:-"2 250 1000"}
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d)
pids=""
trap 'for p in $pids; do kill -9 $p 2>/dev/null || true; done; [ -n "${keep:-}" ] || rm -rf "$dir"' EXIT
models=$root/models/pice-arith
cpu() {  # utime + stime of a process, in seconds
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / hz }' /proc/$1/stat
}
wait_port() {
  for _ in $(seq 600); do [ -s "$1" ] && { cat "$1"; return; }; sleep 0.1; done
  echo "measure-scheduler: no port in $1" >&2; cat "$dir"/*.log >&2; exit 1
}
cat > "$dir/edge.yaml" <<Y
node: edge-1
listen: 0.0.0.0:0
template: $root/templates/pice-arith.yaml
threads: 1
log_level: warn
ensemble:
  - {name: a, model: $models/arith-edge-a-q8_0.gguf}
Y
cat > "$dir/cloud.yaml" <<Y
node: cloud
listen: 127.0.0.1:0
template: $root/templates/pice-arith.yaml
threads: 1
log_level: warn
model: $models/arith-cloud-f16.gguf
Y
"$build/pice-edge" --config "$dir/edge.yaml" --port-file "$dir/edge.port" >"$dir/edge.log" 2>&1 &
pids="$pids $!"
"$build/pice-cloud" --config "$dir/cloud.yaml" --port-file "$dir/cloud.port" >"$dir/cloud.log" 2>&1 &
pids="$pids $!"
ep=$(wait_port "$dir/edge.port")
cp=$(wait_port "$dir/cloud.port")
question="add 26 and 19; subtract 9 from 62; add 3 and 4"
first=""
for n in $counts; do
  {
    echo "listen: 127.0.0.1:0"
    echo "cloud: 127.0.0.1:$cp"
    echo "policy: pice-arith"
    echo "timeouts: {load_poll: 200ms}"
    echo "limits: {max_concurrent_queries: 4096, max_queries_per_client: 0}"
    echo "edges:"
    i=0
    while [ $i -lt "$n" ]; do
      echo "  - 127.0.$((i / 250)).$((i % 250 + 1)):$ep"
      i=$((i + 1))
    done
  } > "$dir/scheduler.yaml"
  rm -f "$dir/sched.port"
  "$build/pice-scheduler" --config "$dir/scheduler.yaml" --port-file "$dir/sched.port" >"$dir/sched.log" 2>&1 &
  sp=$!
  pids="$pids $sp"
  port=$(wait_port "$dir/sched.port")
  sleep 3
  c0=$(cpu $sp); t0=$(date +%s.%N)
  sleep 10
  c1=$(cpu $sp); t1=$(date +%s.%N)
  idle=$(echo "($c1 - $c0) / ($t1 - $t0)" | bc -l)
  q=100
  c2=$(cpu $sp); t2=$(date +%s.%N)
  for _ in $(seq $q); do
    "$build/pice" query --target "127.0.0.1:$port" --route sketch "$question" >/dev/null
  done
  c3=$(cpu $sp); t3=$(date +%s.%N)
  per_query=$(echo "(($c3 - $c2) - $idle * ($t3 - $t2)) / $q * 1000" | bc -l)
  per_probe=$(echo "$idle / ($n / 0.2) * 1000000" | bc -l)
  printf '{"edges": %d, "idle_cpu_cores": %.4f, "cpu_per_probe_us": %.2f, "cpu_per_query_ms": %.3f}\n' \
    "$n" "$idle" "$per_probe" "$per_query"
  [ -z "$first" ] && first="$n $per_query"
  last="$n $per_query"
  kill $sp; wait $sp 2>/dev/null || true
done
set -- $first $last
[ "$1" != "$3" ] && printf '{"cpu_per_edge_scan_ns": %.2f}\n' \
  "$(echo "($4 - $2) / 1000 / 3 / ($3 - $1) * 1000000000" | bc -l)"
