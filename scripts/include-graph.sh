#!/usr/bin/env bash
# Prints the include graph between the project's top-level folders: one line per
# "from -> to  count" pair, from every #include "folder/..." in .h/.cc files.
#   scripts/include-graph.sh            the graph
# scripts/check-deps.sh checks it against the dependency rule.
set -euo pipefail
cd "$(dirname "$0")/.."
dirs="common engine node cloud edge scheduler cli bench tests"
for d in $dirs; do
  [ -d "$d" ] || continue
  grep -rhoE '^#include "[a-z_]+/' --include='*.h' --include='*.cc' "$d" 2>/dev/null |
    sed -E 's/#include "([a-z_]+)\//\1/' | sort | uniq -c |
    while read -r n to; do
      [ "$to" = "$d" ] && continue
      case " $dirs pice " in *" $to "*) printf '%-10s -> %-10s %4d\n' "$d" "$to" "$n" ;; esac
    done
done
