#!/bin/sh
# ctest TestbedSmoke: a one-second `pice bench testbed` run (tests/data/testbed-smoke.yaml)
# must start the nodes pinned, pass queries over the emulated links on both routes, lose
# none, and end with the JSON summary the issue asks for.
set -eu
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
plots=$(mktemp -d)
trap 'rm -rf "$plots"' EXIT
out=$("$build/pice" bench testbed --config "$root/tests/data/testbed-smoke.yaml" --json --out "$plots" 2>/dev/null | tail -n 1)
# The plots (gnuplot from Debian, installed by scripts/install-deps.sh).
for f in testbed.json testbed.dat latency.png throughput.png first_content.png; do
  [ -s "$plots/$f" ] || { echo "testbed-smoke: --out wrote no $f"; exit 1; }
done
for key in throughput_ratio latency_ratio quality_delta_points knee_qps curves; do
  case "$out" in
    *"\"$key\""*) ;;
    *) echo "testbed-smoke: no \"$key\" in: $out"; exit 1 ;;
  esac
done
case "$out" in
  *'"failed":0.0,'*) ;;
  *) echo "testbed-smoke: a run lost queries: $out"; exit 1 ;;
esac
case "$out" in
  *'"failed":1'*|*'"failed":2'*|*'"failed":3'*|*'"failed":4'*|*'"failed":5'*|*'"failed":6'*|*'"failed":7'*|*'"failed":8'*|*'"failed":9'*)
    echo "testbed-smoke: a run lost queries: $out"; exit 1 ;;
esac
# Network namespaces (tests/data/testbed-smoke-netns.yaml): where this machine lets root
# make one, the nodes must run in theirs and still lose nothing; elsewhere the run falls
# back to loopback and says so.
# `ip netns add` mounts /run/netns on first use; where this test made that mount, it takes
# it away again once no namespace is left (a chroot cannot be removed with it mounted).
mounted_before=no
mountpoint -q /run/netns 2>/dev/null && mounted_before=yes
unmount_netns() {
  if [ "$mounted_before" = no ] && mountpoint -q /run/netns 2>/dev/null && [ -z "$(ip netns list 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null || true
  fi
}
trap 'unmount_netns; rm -rf "$plots"' EXIT
ns=$("$build/pice" bench testbed --config "$root/tests/data/testbed-smoke-netns.yaml" --json 2>"$plots/ns.err" | tail -n 1)
case "$ns" in *'"failed":0.0,'*) ;; *) echo "testbed-smoke (netns): a run lost queries: $ns"; cat "$plots/ns.err"; exit 1 ;; esac
if ip netns add "pice-probe-$$" 2>/dev/null; then
  usable=no
  ip -n "pice-probe-$$" link set lo up 2>/dev/null && usable=yes
  ip netns del "pice-probe-$$"
fi
if [ "${usable:-no}" = yes ]; then
  case "$ns" in
    *'"network":"a network namespace per node'*) ;;
    *) echo "testbed-smoke: namespaces work here but the nodes did not get them: $ns"; cat "$plots/ns.err"; exit 1 ;;
  esac
  if ip netns list | grep -q '^pice-tb-'; then echo "testbed-smoke: namespaces left behind"; exit 1; fi
else
  echo "testbed-smoke: no network namespaces on this machine (not root, or no iproute2): checked the loopback fallback"
fi
echo "testbed-smoke: ok"
