#!/usr/bin/env bash
# Runs `pice bench chaos` N times in a row (default 30) and stops at the first run that
# fails: a non-zero exit (an abort included) or an answer lost. Not part of CI; the
# acceptance check of issue 16 and a regression check for anything touching node
# lifetimes, failover or drain. Prints one JSON line per run and a summary.
#   scripts/chaos-soak.sh [N] [extra `pice bench chaos` flags]
# Environment: PICE_BIN (default build/pice).
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-30}
shift || true
bin=${PICE_BIN:-build/pice}
log=$(mktemp -d)
passed=0
for i in $(seq 1 "$n"); do
  out=$("$bin" bench chaos --queries 100 --edges 3 --kill-interval-ms 300 --concurrency 4 \
        --json "$@" 2>"$log/run$i.err")
  rc=$?
  line=$(printf '%s\n' "$out" | tail -1)
  echo "run $i: rc=$rc $line"
  if [ "$rc" -ne 0 ] || ! printf '%s' "$line" | grep -q '"lost":0,'; then
    echo "run $i failed; its stderr: $log/run$i.err" >&2
    tail -20 "$log/run$i.err" >&2
    echo "chaos soak: $passed passed, 1 failed (of $n)"
    exit 1
  fi
  passed=$((passed + 1))
done
rm -rf "$log"
echo "chaos soak: $passed passed, 0 failed (of $n)"
