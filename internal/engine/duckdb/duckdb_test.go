package duckdb

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/engine"
)

const secret = "Zebulon-Secret-4711"

func lockedDB(t *testing.T) (*DB, string) {
	t.Helper()
	dir := t.TempDir()
	csv := filepath.Join(dir, "people.csv")
	if err := os.WriteFile(csv, []byte("id,name,amount,day\n1,"+secret+",12.50,2024-01-02\n2,Bob,7.25,2024-02-03\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Open(Config{MemoryLimit: "512MB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx := context.Background()
	cols := []ColumnSpec{{"id", "integer"}, {"name", "text"}, {"amount", "decimal"}, {"day", "date"}}
	if err := d.LoadTable(ctx, "people", csv, cols); err != nil {
		t.Fatal(err)
	}
	pq := filepath.Join(dir, "people.parquet")
	if err := d.Exec(ctx, "COPY people TO '"+pq+"' (FORMAT parquet)"); err != nil {
		t.Fatal(err)
	}
	if err := d.LoadTable(ctx, "people_pq", pq, cols); err != nil {
		t.Fatal(err)
	}
	if err := d.Lockdown(); err != nil {
		t.Fatal(err)
	}
	return d, dir
}

func TestTypedResults(t *testing.T) {
	d, _ := lockedDB(t)
	for _, table := range []string{"people", "people_pq"} {
		res, err := d.Query(context.Background(), "SELECT id, name, amount, day, count(*) OVER () AS n FROM "+table+" ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) != 2 {
			t.Fatalf("%s: got %d rows, want 2", table, len(res.Rows))
		}
		r := res.Rows[1]
		if r[0] != int64(2) || r[1] != "Bob" || r[2] != 7.25 || r[4] != int64(2) {
			t.Fatalf("%s: got row %#v", table, r)
		}
		if day, ok := r[3].(time.Time); !ok || day.Format("2006-01-02") != "2024-02-03" {
			t.Fatalf("%s: got day %#v", table, r[3])
		}
	}
}

func TestLockdownRefusesOutsideAccess(t *testing.T) {
	d, dir := lockedDB(t)
	outside := filepath.Join(dir, "people.csv")
	attacks := []string{
		"SELECT * FROM read_csv('" + outside + "')",
		"SELECT * FROM read_text('" + outside + "')",
		"SELECT * FROM read_blob('" + outside + "')",
		"SELECT * FROM read_parquet('" + filepath.Join(dir, "people.parquet") + "')",
		"SELECT * FROM glob('" + dir + "/*')",
		"SELECT * FROM '" + outside + "'",
		"COPY people TO '" + filepath.Join(dir, "out.csv") + "'",
		"ATTACH '" + filepath.Join(dir, "x.db") + "' AS x",
		"INSTALL httpfs",
		"LOAD httpfs",
		"SET enable_external_access = true",
		"SET lock_configuration = false",
		"SET memory_limit = '100GB'",
		"RESET enable_external_access",
		"EXPORT DATABASE '" + filepath.Join(dir, "export") + "'",
		"SELECT * FROM read_parquet('http://127.0.0.1:1/x.parquet')",
	}
	for _, a := range attacks {
		_, err := d.Query(context.Background(), a)
		if err == nil {
			t.Errorf("locked engine ran %q", a)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%q: error leaks data: %v", a, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out.csv")); err == nil {
		t.Fatal("COPY wrote a file after lockdown")
	}
}

func TestErrorsAreSanitized(t *testing.T) {
	d, _ := lockedDB(t)
	for _, q := range []string{
		"SELECT CAST(name AS INTEGER) FROM people",
		"SELECT CAST(name AS DATE) FROM people",
		"SELECT 1 / (id - id) FROM people WHERE name = '" + secret + "'",
		"SELECT nonexistent FROM people",
	} {
		_, err := d.Query(context.Background(), q)
		if err == nil {
			continue // DuckDB returns NULL for some of these; nothing to leak
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "Bob") {
			t.Errorf("%q: error leaks a value: %v", q, err)
		}
		var se *engine.SanitizedError
		if !errors.As(err, &se) {
			t.Errorf("%q: got %T, want *engine.SanitizedError", q, err)
		}
	}
}

func TestTimeoutStopsQuery(t *testing.T) {
	d, _ := lockedDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := d.Query(ctx, "SELECT count(*) FROM range(100000000000) a, range(1000) b WHERE a.range * b.range = 7")
	if !errors.Is(err, engine.ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("query ran %v past its 300ms deadline", el)
	}
}

func BenchmarkSmallQuery(b *testing.B) {
	d, err := Open(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	if err := d.Exec(context.Background(), "CREATE TABLE t AS SELECT range AS id, range % 10 AS g FROM range(1000)"); err != nil {
		b.Fatal(err)
	}
	d.Lockdown()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Query(context.Background(), "SELECT g, count(*) FROM t GROUP BY g"); err != nil {
			b.Fatal(err)
		}
	}
}
