#!/usr/bin/env bash
# Runs the official `openai` npm SDK (tests/openai/package.json pins it) against
# `pice local --http-port 0`: ctest's OpenAISdkTest. Installs the SDK with npm into
# BUILD_DIR/openai-sdk (the npm registry is needed once; later runs reuse it). When the
# registry cannot be reached (no network, or TLS through a proxy whose CA this machine
# lacks) the test is skipped with exit status 77 and says why.
#   scripts/openai-sdk-test.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:-build}" && pwd)
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "openai-sdk-test: $tool is not installed (scripts/install-deps.sh installs it)"; exit 1; }
done
dir="$build/openai-sdk"
mkdir -p "$dir"
if ! cmp -s tests/openai/package.json "$dir/package.json" || [ ! -d "$dir/node_modules/openai" ]; then
  cp tests/openai/package.json "$dir/package.json"
  if ! (cd "$dir" && npm install --no-audit --no-fund --loglevel=error); then
    rm -f "$dir/package.json"
    echo "openai-sdk-test: SKIPPED: the openai SDK could not be installed from the npm registry (see npm's error above)"
    exit 77
  fi
fi
exec node tests/openai/sdk_test.mjs "$build/pice" "$dir/node_modules"
