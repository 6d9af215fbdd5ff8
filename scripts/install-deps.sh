#!/usr/bin/env bash
# Installs everything PICE needs to build and test, from Debian 12 packages only.
# Idempotent: safe to run again; skips apt-get when every package is already present.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libfmt-dev libyaml-cpp-dev libicu-dev nlohmann-json3-dev
  libboost-dev libssl-dev openssl curl libhiredis-dev redis-server
  prometheus-cpp-dev prometheus libre2-dev libc-ares-dev dnsmasq yamllint
  gnuplot-nox iproute2
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm run the tests with the official `openai` SDK (a machine may have them
# from elsewhere, e.g. NodeSource, whose nodejs bundles npm: then nothing is installed).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
# scripts/validate-deploy.sh: kubectl (Debian's kubernetes-client, unless a kubectl is there
# already, e.g. Google Cloud SDK's, whose files conflict with it) and systemd-analyze.
command -v kubectl >/dev/null || missing+=(kubernetes-client)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
