#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs the dependencies, builds `pice`,
# and answers a question through the embedded default (`pice local`: scheduler, cloud
# and three edges in one process on loopback, with the bundled pice-arith models).
#   scripts/local.sh ["QUESTION"]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2 --target pice
q=${1:-"Q: add twelve and seven; multiply 23 by 4; subtract nine from 40"}
exec ./build/pice local "$q"
