package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkDPQuery compares the DP query through the gateway with (a) the
// plain GROUP BY, (b) the floor of any bounded-contribution plan (GROUP BY
// unit, group with clamped per-unit sums, no L0 sampling) and (c) the
// fastest hand-written full bounded-contribution SQL we know for DuckDB,
// on benchRows rows, rows/10 units and 50 groups, alternated per iteration.
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
	}
	sql := "SELECT diagnosis, count(*), sum(cost) FROM visits GROUP BY diagnosis"
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
		for _, k := range []string{"a-plain", "b-floor", "c-window", "c-handwritten", "dp"} {
			b.ReportMetric(ms(p50(times[k])), k+"-p50-ms")
		}
		b.ReportMetric(float64(p50(times["dp"]))/float64(p50(times["b-floor"])), "dp/b")
		b.ReportMetric(float64(p50(times["dp"]))/float64(p50(times["c-handwritten"])), "dp/c")
		b.ReportMetric(float64(p50(times["dp"]))/float64(p50(times["a-plain"])), "dp/a")
	})
}
