package server_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"

	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/workspace"
)

var pgTypes = map[string]string{"text": "text", "integer": "bigint", "double": "double precision", "decimal": "numeric(18,2)", "date": "date", "timestamp": "timestamp", "boolean": "boolean"}

// pgWorkspace writes the demo workspace with both datasets left in
// PostgreSQL: the CSVs are copied into tables of a fresh schema and the
// manifests point at them. It shares the mask key of keyFrom, so keyed
// pseudonyms match the DuckDB copy's. prepare, if set, edits the demo
// workspace before its data is copied.
func pgWorkspace(t *testing.T, keyFrom string, prepare func(dir string)) string {
	t.Helper()
	ctx := context.Background()
	schema := fmt.Sprintf("owner_%d", time.Now().UnixNano())
	conn, err := pgx.Connect(ctx, pgDSN())
	if err != nil {
		t.Fatalf("PostgreSQL at %s: %v", pgDSN(), err)
	}
	defer conn.Close(ctx)
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), pgDSN()); err == nil {
			c.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	dir := t.TempDir()
	if err := demo.Init(dir); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(dir)
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"visits", "transactions"} {
		mf := filepath.Join(dir, "datasets", name+".yaml")
		b, _ := os.ReadFile(mf)
		var m workspace.Manifest
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		var cols []string
		for _, c := range m.Columns {
			cols = append(cols, c.Name+" "+pgTypes[c.Type])
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.%s (%s)", schema, name, strings.Join(cols, ", "))); err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(filepath.Join(dir, m.Source.File))
		_, err := conn.PgConn().CopyFrom(ctx, f, fmt.Sprintf("COPY %s.%s FROM STDIN (FORMAT csv, HEADER true)", schema, name))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.Replace(b, []byte("  file: "+m.Source.File), []byte("  postgres: "+pgDSN()+"\n  table: "+schema+"."+name), 1)
		os.WriteFile(mf, b, 0o644)
	}
	os.MkdirAll(filepath.Join(dir, ".airlock"), 0o700)
	key, _ := os.ReadFile(filepath.Join(keyFrom, ".airlock", "mask.key"))
	os.WriteFile(filepath.Join(dir, ".airlock", "mask.key"), key, 0o600)
	return dir
}

func TestPostgresDatasetsGovernedInPlace(t *testing.T) {
	// As on the shared node, the cases below would difference each other;
	// TestDifferencingOnPostgres keeps the check on.
	dir := pgWorkspace(t, shared.dir, differencingOff)
	h, err := startHarness(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	if h.node.Engine == nil || len(h.node.PGEngines) != 1 {
		t.Fatalf("datasets are not routed to PostgreSQL")
	}
	t.Run("same governed results as DuckDB", func(t *testing.T) {
		// Fresh nodes on both sides, first: aggregation answers depend on
		// what each agreement released before (the differencing check).
		duck := newHarness(t, func(dir string) {
			key, _ := os.ReadFile(filepath.Join(shared.dir, ".airlock", "mask.key"))
			os.MkdirAll(filepath.Join(dir, ".airlock"), 0o700)
			os.WriteFile(filepath.Join(dir, ".airlock", "mask.key"), key, 0o600)
		})
		for _, c := range []struct{ principal, purpose, sql string }{
			{"fraud@partnerbank", "fraud_detection", "SELECT country, is_fraud, count(*), sum(amount), count(DISTINCT account_id) FROM transactions GROUP BY 1, 2 ORDER BY 1, 2"},
			{"fraud@partnerbank", "fraud_detection", "SELECT mcc, avg(amount) FROM transactions WHERE country IN ('DE', 'NL') GROUP BY mcc ORDER BY mcc"},
			{"internal@stmary", "care_quality", "SELECT patient_id, name, birth_date, zip, diagnosis, cost FROM visits ORDER BY visit_date, patient_id, diagnosis, cost LIMIT 50"},
			{"internal@stmary", "care_quality", "SELECT diagnosis, count(*) FROM visits GROUP BY diagnosis ORDER BY diagnosis"},
			{"steward@northbank", "", "SELECT merchant, count(*) FROM transactions GROUP BY merchant ORDER BY merchant LIMIT 20"},
		} {
			a := duck.query(t, c.principal, c.purpose, "", c.sql)
			b := h.query(t, c.principal, c.purpose, "", c.sql)
			if a.Status != 200 || b.Status != 200 {
				t.Fatalf("%s: DuckDB %d %s / PostgreSQL %d %s", c.sql, a.Status, a.Body, b.Status, b.Body)
			}
			if !sameRows(a.Rows, b.Rows) {
				t.Fatalf("%s: results differ\nDuckDB:     %v\nPostgreSQL: %v", c.sql, head(a.Rows), head(b.Rows))
			}
		}
	})
	t.Run("attack suite", func(t *testing.T) {
		b, _ := os.ReadFile("../../testdata/attacks.yaml")
		var suite struct {
			Cases []attackCase `yaml:"cases"`
		}
		yaml.Unmarshal(b, &suite)
		runAttacks(t, h, suite.Cases)
	})
	t.Run("differential privacy in PostgreSQL", func(t *testing.T) {
		r := h.query(t, "analyst@partner", "research", "", "SELECT diagnosis, count(*), avg(cost) FROM visits GROUP BY diagnosis")
		if r.Status != 200 || len(r.Rows) < 10 || len(r.Rows) >= 40 {
			t.Fatalf("%d of 40 groups released, want some dropped: %s", len(r.Rows), r.Body)
		}
	})
}

func head(rows [][]any) [][]any {
	if len(rows) > 3 {
		return rows[:3]
	}
	return rows
}

func sameRows(a, b [][]any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			x, y := a[i][j], b[i][j]
			fx, okx := x.(float64)
			fy, oky := y.(float64)
			if okx && oky {
				if math.Abs(fx-fy) > 1e-6*math.Max(1, math.Abs(fx)) {
					return false
				}
				continue
			}
			if fmt.Sprint(x) != fmt.Sprint(y) {
				return false
			}
		}
	}
	return true
}
