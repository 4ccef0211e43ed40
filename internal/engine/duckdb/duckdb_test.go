package duckdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/engine/enginetest"
	"github.com/airlock-dev/airlock/internal/query"
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
	cols := []ColumnSpec{{Name: "id", Type: "integer"}, {Name: "name", Type: "text"}, {Name: "amount", Type: "decimal"}, {Name: "day", Type: "date"}}
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

// The privacy unit's surrogate id is dense (0..n-1, equal units share an
// id, NULL is a unit of its own) and loading does not reorder rows by unit.
func TestUnitSurrogate(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "v.csv")
	var b strings.Builder
	b.WriteString("u,g\n")
	const units = 20000
	for i := 0; i < 3*units; i++ {
		fmt.Fprintf(&b, "P%07d,%d\n", (i*7919)%units, i%5)
	}
	b.WriteString(",1\n,2\n")
	os.WriteFile(csv, []byte(b.String()), 0o600)
	d, err := Open(Config{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if err := d.LoadTable(ctx, "v", csv, []ColumnSpec{{Name: "u", Type: "text", Unit: true}, {Name: "g", Type: "integer"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Lockdown(); err != nil {
		t.Fatal(err)
	}
	id := query.QuoteIdent(query.UnitIDColumn)
	res, err := d.Query(ctx, "SELECT count(DISTINCT u), count(DISTINCT "+id+"), min("+id+"), max("+id+"), count(*) FILTER (WHERE "+id+" IS NULL), "+
		"(SELECT count(*) FROM (SELECT u FROM v GROUP BY u HAVING count(DISTINCT "+id+") > 1)) FROM v")
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Rows[0]; got[0] != int64(units) || got[1] != int64(units+1) || got[2] != int64(0) || got[3] != int64(units) || got[4] != int64(0) || got[5] != int64(0) {
		t.Fatalf("surrogate: distinct units, distinct ids (NULL unit included), min, max, NULL ids, units with >1 id = %v", got)
	}
	// The table is not reordered by unit: consecutive file rows belong to
	// different units, and so must consecutive stored rows, or the order of
	// a listed result would tell which rows share a (masked) unit.
	res, err = d.Query(ctx, "SELECT count(*) FILTER (WHERE u = prev) FROM (SELECT u, lag(u) OVER () AS prev FROM v)")
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Rows[0][0].(int64); n > units/100 {
		t.Fatalf("%d of %d stored rows follow a row of the same unit: the load grouped rows by unit", n, 3*units)
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

// BenchmarkLoadTable measures what the privacy unit's surrogate id costs at
// load time: the same Parquet file (AIRLOCK_BENCH_ROWS rows, default 1M,
// rows/10 units) loaded with and without it, alternated.
func BenchmarkLoadTable(b *testing.B) {
	rows := 1_000_000
	if s := os.Getenv("AIRLOCK_BENCH_ROWS"); s != "" {
		fmt.Sscan(s, &rows)
	}
	ctx := context.Background()
	pq := filepath.Join(b.TempDir(), "v.parquet")
	gen, err := Open(Config{})
	if err != nil {
		b.Fatal(err)
	}
	if err := gen.Exec(ctx, fmt.Sprintf(`COPY (SELECT 'P' || lpad(CAST(hash(i) %% %d AS VARCHAR), 8, '0') AS patient_id,
		'D' || CAST(hash(i * 7) %% 50 AS VARCHAR) AS diagnosis, CAST((hash(i * 13) %% 5000000) / 100.0 AS DECIMAL(18,2)) AS cost
		FROM range(%d) t(i)) TO '%s' (FORMAT parquet)`, rows/10, rows, pq)); err != nil {
		b.Fatal(err)
	}
	gen.Close()
	times := map[bool][]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, unit := range []bool{false, true} {
			d, err := Open(Config{})
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			err = d.LoadTable(ctx, "visits", pq, []ColumnSpec{{Name: "patient_id", Type: "text", Unit: unit}, {Name: "diagnosis", Type: "text"}, {Name: "cost", Type: "decimal"}})
			times[unit] = append(times[unit], time.Since(t0))
			d.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	med := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	plain, unit := med(times[false]), med(times[true])
	b.ReportMetric(float64(plain.Milliseconds()), "plain-p50-ms")
	b.ReportMetric(float64(unit.Milliseconds()), "with-unit-id-p50-ms")
	b.ReportMetric(float64(unit)/float64(plain), "ratio")
}

func TestConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) enginetest.Target {
		csv := filepath.Join(t.TempDir(), "fixture.csv")
		if err := os.WriteFile(csv, []byte(enginetest.CSV), 0o600); err != nil {
			t.Fatal(err)
		}
		d, err := Open(Config{MemoryLimit: "512MB", Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		var cols []ColumnSpec
		for _, c := range enginetest.Columns {
			cols = append(cols, ColumnSpec{Name: c[0], Type: c[1]})
		}
		if err := d.LoadTable(context.Background(), "fixture", csv, cols); err != nil {
			t.Fatal(err)
		}
		if err := d.Lockdown(); err != nil {
			t.Fatal(err)
		}
		return enginetest.Target{Engine: d, Table: `"fixture"`}
	})
}

// The differencing sketch's columns are computed at load from DuckDB's
// hash(). Histories of released cells outlive the process, so the values
// must not change between runs or builds: this pins them. If a DuckDB
// upgrade changes hash(), this fails, and the sketch scheme
// (query.SketchScheme) must get a new version so that old and new
// sketches are never compared as if alike.
func TestSketchColumnsArePinned(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "tx.csv")
	os.WriteFile(csv, []byte("account,amount,day\nA1,12.50,2024-01-02\nA1,7.25,2024-02-03\nB2,1.00,2024-02-03\n"), 0o600)
	d, err := Open(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cols := []ColumnSpec{{Name: "account", Type: "text", Unit: true}, {Name: "amount", Type: "decimal"}, {Name: "day", Type: "date"}}
	if err := d.LoadTable(context.Background(), "tx", csv, cols); err != nil {
		t.Fatal(err)
	}
	res, err := d.Query(context.Background(), "SELECT "+strings.Join(engine.SketchColumns, ", ")+" FROM tx ORDER BY account, amount")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(res.Rows)
	const want = "[[978042552 1459444823 41808476 1218336515 11518] [837538655 1039894258 1880117325 1368993098 11518] [378374918 1810582805 50516057 1581879693 25207]]"
	if got != want {
		t.Fatalf("sketch columns changed:\n got %s\nwant %s", got, want)
	}
}
