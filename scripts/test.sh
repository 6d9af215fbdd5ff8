#!/usr/bin/env bash
# Installs the dependencies (Debian 12 packages), builds PICE and runs every test:
# unit, golden (llama.cpp reference vectors), integration (real processes on loopback),
# after each libFuzzer target has run for a short fixed budget (scripts/fuzz.sh N for longer).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
./scripts/check-deps.sh build
./scripts/fuzz.sh "${PICE_FUZZ_SECONDS:-20}"
ctest --test-dir build --output-on-failure -j2 --timeout 900
