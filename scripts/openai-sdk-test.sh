#!/usr/bin/env bash
# Runs the official `openai` npm SDK (tests/openai/package.json pins it) against
# `pice local --http-port 0`: ctest's OpenAISdkTest. Installs the SDK with npm into
# BUILD_DIR/openai-sdk (the npm registry is needed once; later runs reuse it).
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
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
fi
exec node tests/openai/sdk_test.mjs "$build/pice" "$dir/node_modules"
