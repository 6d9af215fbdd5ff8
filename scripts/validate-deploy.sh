#!/usr/bin/env bash
# Checks everything under deploy/ offline and exits non-zero on any failure:
#   1. kubectl kustomize renders every overlay (deploy/k8s/overlays/*), and every workload in
#      the output has readiness and liveness probes, resources and a termination grace
#      period longer than the 30 s drain. What cannot be checked offline: `kubectl apply
#      --dry-run=client` needs an API server for its resource discovery (even client-side),
#      and Debian ships no JSON-schema validator for Kubernetes (kubeconform/kubeval); the
#      render itself parses every object and rejects unknown kustomize fields.
#   2. yamllint (deploy/.yamllint) on every YAML file under deploy/ and on the renders.
#   3. systemd-analyze verify on deploy/systemd/*.service (ExecStart pointed at build/):
#      any warning fails.
#   4. A smoke test: the three binaries with the configs the manifests mount
#      (deploy/k8s/base/config, beside models/ and templates/ as in the image), only the
#      addresses changed to loopback (the DNS entries of pice-cloud and pice-edge), answer a query.
# Usage: scripts/validate-deploy.sh [BUILD_DIR]   (default build/)
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:-build}" && pwd)
tmp=$(mktemp -d /tmp/pice-validate-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "validate-deploy: FAIL: $*" >&2; exit 1; }
for tool in kubectl yamllint systemd-analyze; do
  command -v "$tool" >/dev/null || fail "$tool not found (scripts/install-deps.sh installs it)"
done

# 1. kustomize
for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" > "$tmp/$name.yaml" || fail "kubectl kustomize $overlay"
  objects=$(grep -c '^kind:' "$tmp/$name.yaml")
  workloads=$(grep -cE '^kind: (Deployment|DaemonSet|StatefulSet)$' "$tmp/$name.yaml")
  [ "$workloads" -ge 3 ] || fail "$overlay: $workloads workloads rendered"
  for want in readinessProbe resources terminationGracePeriodSeconds; do
    have=$(grep -c "^ *$want:" "$tmp/$name.yaml" || true)
    [ "$have" -ge "$workloads" ] || fail "$overlay: $have of $workloads workloads have $want"
  done
  while read -r grace; do
    [ "$grace" -gt 30 ] || fail "$overlay: terminationGracePeriodSeconds $grace <= the 30 s drain"
  done < <(grep -oP 'terminationGracePeriodSeconds: \K[0-9]+' "$tmp/$name.yaml")
  grep -q 'kind: PodDisruptionBudget' "$tmp/$name.yaml" || fail "$overlay: no PodDisruptionBudget"
  grep -q 'clusterIP: None' "$tmp/$name.yaml" || fail "$overlay: no headless Service for the edges"
  echo "validate-deploy: $overlay: $objects objects, $workloads workloads"
done

# 2. yamllint
yamllint -c deploy/.yamllint deploy "$tmp"/*.yaml || fail "yamllint"
echo "validate-deploy: yamllint: deploy/ and the renders"

# The compose file's scheduler config parses as the scheduler would read it.
"$build/pice" policy check deploy/compose/scheduler.yaml > /dev/null || fail "deploy/compose/scheduler.yaml"

# 3. systemd units
mkdir -p "$tmp/units"
for unit in deploy/systemd/*.service; do
  bin=$(grep -oP '^ExecStart=/usr/local/bin/\K[a-z-]+' "$unit")
  sed "s|/usr/local/bin/$bin|$build/$bin|" "$unit" > "$tmp/units/$(basename "$unit")"
done
out=$(systemd-analyze verify "$tmp"/units/*.service 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
echo "validate-deploy: systemd-analyze verify: $(ls deploy/systemd/*.service | wc -l) units"

# 4. smoke test
root="$tmp/opt-pice"
mkdir -p "$root/config"
ln -s "$PWD/models" "$root/models"
ln -s "$PWD/templates" "$root/templates"
cp deploy/k8s/base/config/*.yaml "$root/config/"
start() {  # name binary config [flags...]
  local name=$1 bin=$2 cfg=$3; shift 3
  "$build/$bin" --config "$cfg" --listen 127.0.0.1:0 --port-file "$tmp/$name.port" "$@" \
    > "$tmp/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$tmp/$name.port" ] && return; sleep 0.1; done
  fail "$name did not start: $(cat "$tmp/$name.log")"
}
sed -i 's|^metrics_listen: .*|metrics_listen: 127.0.0.1:0|' "$root/config/cloud.yaml" "$root/config/edge.yaml"
start cloud pice-cloud "$root/config/cloud.yaml"
start edge pice-edge "$root/config/edge.yaml" --node edge-0
cloud=127.0.0.1:$(cat "$tmp/cloud.port")
edge=127.0.0.1:$(cat "$tmp/edge.port")
sed -i -e "s|{dns: \"pice-cloud:50061\", refresh: 5s}|\"$cloud\"|" \
       -e "s|{dns: \"pice-edge:50071\", refresh: 5s}|\"$edge\"|" \
       -e 's|^http_listen: .*|http_listen: 127.0.0.1:0|' \
       -e 's|^metrics_listen: .*|metrics_listen: 127.0.0.1:0|' "$root/config/scheduler.yaml"
start scheduler pice-scheduler "$root/config/scheduler.yaml"
sleep 0.5
answer=$("$build/pice" query --target "127.0.0.1:$(cat "$tmp/scheduler.port")" --timeout 60 \
         "add 3 and 4; multiply 6 by 7") || fail "the query: $answer"
grep -q "3+4=7" <<< "$answer" || fail "unexpected answer: $answer"
echo "validate-deploy: smoke test: the manifests' configs answer ($(grep '^answer' <<< "$answer"))"
echo "validate-deploy: OK"
