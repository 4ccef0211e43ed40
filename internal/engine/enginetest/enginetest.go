// Package enginetest is the conformance suite every engine adapter
// passes (engine/duckdb, engine/postgres): typed results, errors reduced
// to their kind without data values, deadlines that stop a query, and no
// way to write. The planner relies on exactly these properties, whichever
// engine holds a dataset.
package enginetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/engine"
)

// Secret is a data value that must never appear in an error.
const Secret = "Zebulon-Secret-4711"

// Columns are the fixture's columns, as manifest types.
var Columns = [][2]string{{"id", "integer"}, {"name", "text"}, {"amount", "decimal"}, {"ratio", "double"}, {"day", "date"}, {"seen_at", "timestamp"}, {"flag", "boolean"}}

// CSV is the fixture's rows (with a header): one row holds Secret, one is
// all NULL but its id.
const CSV = "id,name,amount,ratio,day,seen_at,flag\n" +
	"1," + Secret + ",12.50,0.25,2024-01-02,2024-01-02 03:04:05,true\n" +
	"2,Bob,7.25,,2024-02-03,2024-02-03 10:00:00,false\n" +
	"3,,,-1.5,,,\n"

// Target is an engine holding the fixture in relation Table.
type Target struct {
	Engine engine.Engine
	Table  string
}

// Run runs the suite against the engine open returns.
func Run(t *testing.T, open func(t *testing.T) Target) {
	ctx := context.Background()
	tg := open(t)
	e, tbl := tg.Engine, tg.Table
	t.Run("typed results", func(t *testing.T) {
		res, err := e.Query(ctx, "SELECT id, name, amount, ratio, day, seen_at, flag FROM "+tbl+" ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range res.Columns {
			names = append(names, c.Name)
		}
		if strings.Join(names, ",") != "id,name,amount,ratio,day,seen_at,flag" || len(res.Rows) != 3 {
			t.Fatalf("columns %v, %d rows", names, len(res.Rows))
		}
		r := res.Rows[0]
		day, _ := r[4].(time.Time)
		at, _ := r[5].(time.Time)
		if r[0] != int64(1) || r[1] != Secret || r[2] != 12.5 || r[3] != 0.25 || r[6] != true ||
			day.Format("2006-01-02") != "2024-01-02" || at.Format("2006-01-02 15:04:05") != "2024-01-02 03:04:05" {
			t.Fatalf("row %#v", r)
		}
		for i, v := range res.Rows[2][1:] {
			if i != 2 && v != nil { // ratio is set in row 3
				t.Fatalf("NULL column %s came back as %#v", names[i+1], v)
			}
		}
	})
	t.Run("non-finite doubles are NULL", func(t *testing.T) {
		res, err := e.Query(ctx, "SELECT CAST('NaN' AS DOUBLE PRECISION), CAST('Infinity' AS DOUBLE PRECISION)")
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows[0][0] != nil || res.Rows[0][1] != nil {
			t.Fatalf("got %#v: JSON and the wire cannot carry NaN or infinity", res.Rows[0])
		}
	})
	t.Run("parameters", func(t *testing.T) {
		res, err := e.Query(ctx, "SELECT name FROM "+tbl+" WHERE id = $1", int64(2))
		if err != nil || len(res.Rows) != 1 || res.Rows[0][0] != "Bob" {
			t.Fatalf("got %v, %v", res, err)
		}
	})
	t.Run("errors carry no data", func(t *testing.T) {
		for q, kinds := range map[string][]string{
			"SELECT CAST(name AS INTEGER) FROM " + tbl + " WHERE id = 1": {"conversion"},
			"SELECT nonexistent FROM " + tbl:                             {"binder"},
			"SELEC name FROM " + tbl:                                     {"syntax", "binder"},
		} {
			_, err := e.Query(ctx, q)
			var se *engine.SanitizedError
			if !errors.As(err, &se) {
				t.Errorf("%q: got %T %v, want *engine.SanitizedError", q, err, err)
				continue
			}
			if strings.Contains(err.Error(), Secret) || strings.Contains(err.Error(), "Bob") {
				t.Errorf("%q: error text leaks a value: %v", q, err)
			}
			ok := false
			for _, k := range kinds {
				ok = ok || se.Kind == k
			}
			if !ok {
				t.Errorf("%q: kind %q, want one of %v", q, se.Kind, kinds)
			}
			if se.Cause() == "" {
				t.Errorf("%q: the engine's own message is lost for the server log", q)
			}
		}
	})
	t.Run("deadline stops the query", func(t *testing.T) {
		slow := map[string]string{
			"duckdb":   "SELECT count(*) FROM range(100000000000) a, range(1000) b WHERE a.range * b.range = 7",
			"postgres": "SELECT count(*) FROM generate_series(1, 100000000000) a, generate_series(1, 1000) b WHERE a * b = 7",
		}[e.Dialect()]
		if slow == "" {
			t.Fatalf("no slow query for dialect %q", e.Dialect())
		}
		qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := e.Query(qctx, slow)
		if !errors.Is(err, engine.ErrTimeout) {
			t.Fatalf("got %v, want engine.ErrTimeout", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("the query ran %v past its 300 ms deadline", el)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		for _, q := range []string{
			"CREATE TABLE airlock_conformance_new (a INTEGER)",
			"INSERT INTO " + tbl + " (id) VALUES (4)",
			"UPDATE " + tbl + " SET name = 'x'",
			"DELETE FROM " + tbl,
			"DROP TABLE " + tbl,
		} {
			if _, err := e.Query(ctx, q); err == nil {
				t.Errorf("the engine ran %q", q)
			}
		}
		res, err := e.Query(ctx, "SELECT count(*), count(name) FROM "+tbl)
		if err != nil || res.Rows[0][0] != int64(3) || res.Rows[0][1] != int64(2) {
			t.Fatalf("after the writes: %v %v, want the fixture unchanged", res, err)
		}
	})
}
