#!/usr/bin/env bash
# Runs the benchmarks whose figures are recorded in docs/benchmarks.md.
# Output goes to bench-results.txt as well as the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${AIRLOCK_BENCH_ROWS:-10000000}
out=bench-results.txt
{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(go version)"
  echo "## gateway overhead (rows=$rows)"
  AIRLOCK_BENCH_ROWS=$rows go test -run '^$' -bench GatewayOverhead -benchtime 30x -timeout 60m ./internal/server
  echo "## differencing check (rows=$rows, history of 1,000 answers)"
  AIRLOCK_BENCH_ROWS=$rows go test -run '^$' -bench '^BenchmarkDifferencing$' -benchtime 20x -timeout 60m ./internal/server
  go test -run '^$' -bench Check -benchtime 20x ./internal/differencing
  echo "## federated aggregate: three members of 1M rows vs one node of 3M (same threshold rule)"
  AIRLOCK_BENCH_ROWS=1000000 go test -run '^$' -bench '^BenchmarkFederatedAggregate$' -benchtime 10x -count 3 -timeout 60m ./internal/server
  echo "## anonymisation: the Adult lattice, a 1M-row table, MST on Adult"
  go test -run '^$' -bench 'BenchmarkAdultLattice|BenchmarkAdultStrategies' -benchtime 5x -count 3 -timeout 60m ./internal/anon
  GOMEMLIMIT=450MiB go test -run '^$' -bench BenchmarkMillionRows -benchtime 1x -count 3 -timeout 60m ./internal/anon
  go test -run '^$' -bench 'BenchmarkSynthesizeAdult' -benchtime 10x -count 3 ./internal/synth
  echo "## private join: PSI 100k and 1M a side, intersection-sum 100k, vs the plain hashed join"
  go test -run '^$' -bench 'PSI|IntersectionSum' -benchtime 1x -benchmem -timeout 60m ./internal/psi
  echo "## secure aggregation: a 100k vector among 10 participants, 0 and 3 dropouts, vs a plain sum"
  go test -run '^$' -bench SecureSum -benchtime 5x -count 3 ./internal/secagg
  echo "## one FL round on the Adult split (3 participants): plain sum, secure aggregation, with DP-SGD; and across real nodes"
  go test -run '^$' -bench FLRound -benchtime 10x -count 3 ./internal/fl
  go test -run '^$' -bench FLRoundAcrossNodes -benchtime 5x -count 3 ./internal/server
  echo "## DP query (rows=$rows, units=rows/10, 50 groups)"
  AIRLOCK_BENCH_ROWS=$rows go test -run '^$' -bench '^BenchmarkDPQuery$' -benchtime 12x -timeout 60m ./internal/server
  echo "## loading with the unit surrogate (rows=$rows)"
  AIRLOCK_BENCH_ROWS=$rows go test -run '^$' -bench LoadTable -benchtime 3x -timeout 60m ./internal/engine/duckdb
  echo "## DP query on a PostgreSQL-governed table (rows=$rows)"
  AIRLOCK_BENCH_ROWS=$rows go test -run '^$' -bench PostgresDPQuery -benchtime 3x -timeout 60m ./internal/server
  echo "## throughput at 16 concurrent clients (governed vs the same SQL on the engine)"
  go test -run '^$' -bench Throughput16 -benchtime 4x -timeout 30m ./internal/server
  echo "## wire endpoint vs HTTP (demo data, p50/p99)"
  go test -run '^$' -bench WireVsHTTP -benchtime 300x -timeout 30m ./internal/server
  echo "## audit log"
  go test -run '^$' -bench . -benchtime 20000x ./internal/audit
  echo "## engine small query"
  go test -run '^$' -bench SmallQuery -benchtime 2000x ./internal/engine/duckdb
} 2>&1 | tee "$out"
