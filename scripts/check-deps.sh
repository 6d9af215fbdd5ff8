#!/usr/bin/env bash
# Fails when a source file includes across a forbidden boundary (../shared/DESIGN.md,
# "Repository layout"; README "Layout"). Dependencies point down only:
#   cli/bench -> scheduler, cloud, edge -> node -> engine; every binary may use common/
#   and the proto; engine uses neither common/ nor any node; common/ knows no node; the
#   scheduler never includes (or links) the engine; cloud and edge never include each
#   other. cli/ includes bench/ only from its mains (the dispatch), bench/ may use cli/'s
#   client helpers. tests/ may include anything.
# With a build directory (default build/, or $1), also checks that pice-scheduler links
# no engine code. Run by scripts/test.sh (CI) before the build.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
declare -A allowed=(
  [engine]="engine"
  [common]="common pice"
  [node]="node common engine pice"
  [cloud]="cloud node common engine pice"
  [edge]="edge node common engine pice"
  [scheduler]="scheduler common pice"
  [cli]="cli scheduler cloud edge node common engine pice"
  [bench]="bench cli scheduler cloud edge node common engine pice"
)
bad=0
for from in "${!allowed[@]}"; do
  [ -d "$from" ] || continue
  while IFS=: read -r file line text; do
    to=$(printf '%s' "$text" | sed -E 's/^#include "([a-z_]+)\/.*/\1/')
    case " ${allowed[$from]} " in *" $to "*) continue ;; esac
    if [ "$from" = cli ] && [ "$to" = bench ] && [[ "$file" =~ ^cli/(main|engine_main)\.cc$ ]]; then
      continue
    fi
    case " common engine node cloud edge scheduler cli bench pice " in
      *" $to "*) echo "check-deps: $file:$line: $from/ may not include $to/ ($text)"; bad=1 ;;
    esac
  done < <(grep -rnE '^#include "[a-z_]+/' --include='*.h' --include='*.cc' "$from" || true)
done
if [ -x "$build/pice-scheduler" ] && command -v nm >/dev/null; then
  if nm -C "$build/pice-scheduler" | grep -qE ' pice::(Engine|Model|Tokenizer|Context)::'; then
    echo "check-deps: $build/pice-scheduler links engine code"
    bad=1
  fi
fi
if [ "$bad" -ne 0 ]; then
  echo "check-deps: the dependency rule is broken (scripts/include-graph.sh shows the graph)"
  exit 1
fi
echo "check-deps: the dependency rule holds"
