#!/bin/sh
# ctest SimSmoke: `pice bench sim` end to end — the curves with the issue's summary keys and
# plots, a calibration against the committed testbed run, the scale grid with churn (no
# query lost), and a bad file refused naming its key.
set -eu
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "sim-smoke: $*"; exit 1; }
has() {  # has TEXT KEY...: every "KEY" in TEXT
  text=$1; shift
  for key in "$@"; do
    case "$text" in *"\"$key\""*) ;; *) fail "no \"$key\" in: $text" ;; esac
  done
}
curves=$("$build/pice" bench sim --config "$root/tests/data/sim-smoke.yaml" --json --out "$out" | tail -n 1)
has "$curves" throughput_ratio latency_ratio quality_delta_points knee_qps curves scheduler_utilization
for f in sim.json sim.dat sim_latency.png sim_throughput.png sim_first_content.png; do
  [ -s "$out/$f" ] || fail "--out wrote no $f"
done
cal=$("$build/pice" bench sim --config "$root/bench/sim/two-core-random.yaml" \
  --calibrate "$root/bench/testbed/two-core-random/testbed.json" --json --out "$out" | tail -n 1)
has "$cal" calibration within_10pct max_abs_error points
[ -s "$out/calibration_latency.png" ] || fail "no calibration plot"
scale=$("$build/pice" bench sim --config "$root/tests/data/sim-smoke.yaml" --scale --json --out "$out" 2>/dev/null | tail -n 1)
has "$scale" scale retries_per_query scheduler_utilization saturated
case "$scale" in *'"failed":0.0,'*) ;; *) fail "the scale grid lost queries: $scale" ;; esac
[ -s "$out/scale_p99.png" ] || fail "no scale plot"
printf 'cloud: {batch: [4, 1], decode_tokens_per_s: [1, 2], prefill_tokens_per_s: 1}\n' > "$out/bad.yaml"
if err=$("$build/pice" bench sim --config "$out/bad.yaml" 2>&1); then fail "a bad file was accepted"; fi
case "$err" in *"bad.yaml"*) ;; *) fail "the error does not name the file: $err" ;; esac
echo "sim-smoke: ok"
