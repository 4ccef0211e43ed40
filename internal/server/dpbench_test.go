package server_test

import (
	"context"
	"fmt"
	"github.com/airlock-dev/airlock/internal/share"
	"testing"
	"time"
)

// BenchmarkDPQuery compares the DP query through the gateway with (a) the
// plain GROUP BY, (b) the floor of any bounded-contribution plan (GROUP BY
// unit, group with clamped per-unit sums, no L0 sampling) and (c) the
// fastest hand-written full bounded-contribution SQL we know for DuckDB,
// on benchRows rows, rows/10 units and 50 groups, alternated per iteration.
// The -id variants group by the engine's dense surrogate of the unit
// instead of the text unit itself, as the gateway's plan does: b-floor-id
// is the floor with that advantage, c-rounds the best hand-written plan.
func BenchmarkDPQuery(b *testing.B) {
	rows := benchRows()
	dir := bigWorkspace(b, rows, "dp")
	h, err := startHarness(dir, "")
	if err != nil {
		b.Fatal(err)
	}
	defer h.stop()
	eng := h.node.Engine
	variants := []struct{ name, sql string }{
		{"a-plain", `SELECT diagnosis, count(*), sum(cost) FROM visits GROUP BY diagnosis`},
		{"b-floor", `SELECT diagnosis, count(*), sum(LEAST(c, 3)), sum(LEAST(GREATEST(s, 0), 15000000)) FROM (
			SELECT patient_id, diagnosis, count(*) AS c, sum(CAST(round(LEAST(GREATEST(cost, 0), 50000) / 0.01) AS BIGINT)) AS s
			FROM visits GROUP BY patient_id, diagnosis) GROUP BY diagnosis`},
		{"c-window", `SELECT diagnosis, count(*), sum(LEAST(c, 3)), sum(LEAST(GREATEST(s, 0), 15000000)) FROM (
			SELECT patient_id, diagnosis, count(*) AS c, sum(CAST(round(LEAST(GREATEST(cost, 0), 50000) / 0.01) AS BIGINT)) AS s
			FROM visits GROUP BY patient_id, diagnosis
			QUALIFY row_number() OVER (PARTITION BY patient_id ORDER BY hash(patient_id, diagnosis, 42::UBIGINT)) <= 3) GROUP BY diagnosis`},
		{"c-handwritten", `WITH p AS (SELECT patient_id, diagnosis, count(*) AS c, sum(CAST(round(LEAST(GREATEST(cost, 0), 50000) / 0.01) AS BIGINT)) AS s
			FROM visits GROUP BY patient_id, diagnosis),
			k AS (SELECT patient_id, count(*) AS n, list_last(min(hash(patient_id, diagnosis, 42::UBIGINT), 3)) AS thr FROM p GROUP BY patient_id)
			SELECT diagnosis, count(*), sum(LEAST(c, 3)), sum(LEAST(GREATEST(s, 0), 15000000)) FROM (
			SELECT p.* FROM p JOIN k USING (patient_id) WHERE k.n <= 3 OR hash(p.patient_id, p.diagnosis, 42::UBIGINT) <= k.thr) GROUP BY diagnosis`},
		{"b-floor-id", `SELECT diagnosis, count(*), sum(LEAST(c, 3)), sum(LEAST(GREATEST(s, 0), 15000000)) FROM (
			SELECT __airlock_unit, diagnosis, count(*) AS c, sum(CAST(round(LEAST(GREATEST(cost, 0), 50000) / 0.01) AS BIGINT)) AS s
			FROM visits GROUP BY __airlock_unit, diagnosis) GROUP BY diagnosis`},
		// Each unit's 3 lowest (unit, group) hashes by three rounds of min,
		// then the per-(unit, group) aggregation over the kept rows only;
		// a unit left with more than 3 groups (a hash tie) is dropped.
		{"c-rounds", `WITH v AS NOT MATERIALIZED (SELECT __airlock_unit AS u, diagnosis, cost, hash(xor(hash(__airlock_unit, diagnosis), 42::UBIGINT)) AS h FROM visits),
			m1 AS NOT MATERIALIZED (SELECT u, min(h) AS m FROM v GROUP BY u),
			m2 AS NOT MATERIALIZED (SELECT v.u, min(h) AS m FROM v JOIN m1 ON v.u = m1.u WHERE h > m1.m GROUP BY v.u),
			m3 AS (SELECT v.u, min(h) AS m FROM v JOIN m2 ON v.u = m2.u WHERE h > m2.m GROUP BY v.u),
			p AS (SELECT v.u, diagnosis, count(*) AS c, sum(CAST(round(LEAST(GREATEST(cost, 0), 50000) / 0.01) AS BIGINT)) AS s
			FROM v LEFT JOIN m3 ON v.u = m3.u WHERE m3.m IS NULL OR h <= m3.m GROUP BY v.u, diagnosis)
			SELECT diagnosis, count(*), sum(LEAST(c, 3)), sum(LEAST(GREATEST(s, 0), 15000000)) FROM p
			WHERE u NOT IN (SELECT u FROM p GROUP BY u HAVING count(*) > 3) GROUP BY diagnosis`},
	}
	sql := "SELECT diagnosis, count(*), sum(cost) FROM visits GROUP BY diagnosis"
	// The SQL the gateway generates for it (one seed), run straight on the
	// engine: separates the plan's engine time from the gateway's own work.
	dry, err := kernelQuery(h, "analyst@partner", "research", sql, share.Plan)
	if err != nil {
		b.Fatal(err)
	}
	variants = append(variants, struct{ name, sql string }{"dp-sql", dry.Plan.SQL})
	b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
		times := map[string][]time.Duration{}
		for i := 0; i < b.N; i++ {
			for _, v := range variants {
				t0 := time.Now()
				if _, err := eng.Query(context.Background(), v.sql); err != nil {
					b.Fatal(v.name, err)
				}
				times[v.name] = append(times[v.name], time.Since(t0))
			}
			t0 := time.Now()
			// A new literal each time defeats the stored-answer cache.
			postQuery(b, h.url, h.tokens["analyst@partner"], fmt.Sprintf("%s -- %d", sql, i))
			times["dp"] = append(times["dp"], time.Since(t0))
		}
		for _, k := range []string{"a-plain", "b-floor", "b-floor-id", "c-window", "c-handwritten", "c-rounds", "dp-sql", "dp"} {
			b.ReportMetric(ms(p50(times[k])), k+"-p50-ms")
		}
		b.ReportMetric(pairedRatio(times["dp"], times["b-floor"]), "dp/b")
		b.ReportMetric(pairedRatio(times["dp"], times["b-floor-id"]), "dp/b-id")
		b.ReportMetric(pairedRatio(times["dp"], times["c-rounds"]), "dp/c")
		b.ReportMetric(pairedRatio(times["dp"], times["a-plain"]), "dp/a")
		b.ReportMetric(pairedRatio(times["dp-sql"], times["c-rounds"]), "dp-sql/c")
	})
}
