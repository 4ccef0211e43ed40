package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/internal/demo"
)

// BenchmarkPostgresDPQuery times the governed DP query on a visits table of
// benchRows rows (rows/10 units, 50 diagnoses) kept in PostgreSQL, against
// the raw GROUP BY run in the same PostgreSQL, alternated per iteration.
func BenchmarkPostgresDPQuery(b *testing.B) {
	rows := benchRows()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgDSN())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	schema := fmt.Sprintf("bench_%d", time.Now().UnixNano())
	defer conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	for _, q := range []string{
		"CREATE SCHEMA " + schema,
		fmt.Sprintf(`CREATE TABLE %s.visits AS SELECT 'P' || lpad((hashint8(i) %% %d + %d)::text, 8, '0') AS patient_id,
			'n' || i AS name, 's' || i AS ssn, DATE '1940-01-01' + (i %% 25000)::int AS birth_date,
			CASE WHEN i %% 2 = 0 THEN 'F' ELSE 'M' END AS sex, lpad((i %% 90000)::text, 5, '1') AS zip,
			'D' || ((hashint8(i * 7) %% 50 + 50) %% 50)::text AS diagnosis, 'H' || (i %% 12)::text AS hospital,
			(ARRAY['north','south','east','west'])[i %% 4 + 1] AS region, DATE '2023-01-01' + (i %% 1095)::int AS visit_date,
			((hashint8(i * 13) %% 5000000 + 5000000) %% 5000000 / 100.0)::numeric(18,2) AS cost
			FROM generate_series(0, %d) AS i`, schema, rows/10, rows/10, rows-1),
		"ANALYZE " + schema + ".visits",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	demo.Init(dir)
	mf := filepath.Join(dir, "datasets", "visits.yaml")
	m, _ := os.ReadFile(mf)
	os.WriteFile(mf, []byte(strings.Replace(string(m), "  file: data/visits.csv", "  postgres: "+pgDSN()+"\n  table: "+schema+".visits", 1)), 0o644)
	af := filepath.Join(dir, "agreements", "partner-visits-research.yaml")
	a, _ := os.ReadFile(af)
	os.WriteFile(af, []byte(strings.Replace(string(a), "epsilon: 100\n", "epsilon: 1000000\n", 1)), 0o644)
	h, err := startHarness(dir, "")
	if err != nil {
		b.Fatal(err)
	}
	defer h.stop()
	raw := "SELECT diagnosis, count(*), sum(cost) FROM " + schema + ".visits GROUP BY diagnosis"
	sql := "SELECT diagnosis, count(*), sum(cost) FROM visits GROUP BY diagnosis"
	b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
		var tr, td []time.Duration
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if _, err := conn.Exec(ctx, raw); err != nil {
				b.Fatal(err)
			}
			tr = append(tr, time.Since(t0))
			t0 = time.Now()
			postQuery(b, h.url, h.tokens["analyst@partner"], fmt.Sprintf("%s -- %d", sql, i))
			td = append(td, time.Since(t0))
		}
		b.ReportMetric(ms(p50(tr)), "raw-pg-p50-ms")
		b.ReportMetric(ms(p50(td)), "dp-pg-p50-ms")
		b.ReportMetric(pairedRatio(td, tr), "dp/raw")
	})
}
