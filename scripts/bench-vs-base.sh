#!/bin/bash
# bench-vs-base.sh [BASE] — the gateway-overhead benchmark of a base commit
# (default 1f3ffca, the last before the governance kernel) and of the
# working tree, run in turn three times on the same machine, so both see
# the same load. Prints one line per variant and round.
set -euo pipefail
base=${1:-1f3ffca}
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'git -C "$repo" worktree remove --force "$tmp/base" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
git -C "$repo" worktree add -q "$tmp/base" "$base"
export AIRLOCK_BENCH_ROWS=${AIRLOCK_BENCH_ROWS:-1000000}
(cd "$tmp/base" && go test -c -o "$tmp/bench-base" ./internal/server)
(cd "$repo" && go test -c -o "$tmp/bench-head" ./internal/server)
for round in 1 2 3; do
  for v in base head; do
    dir=$tmp/base; [ $v = head ] && dir=$repo
    (cd "$dir/internal/server" && "$tmp/bench-$v" -test.run '^$' -test.bench GatewayOverhead -test.benchtime 30x 2>/dev/null |
      grep -E '^Benchmark' | sed "s/^/$v round$round /")
  done
done
