package sqlop

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/engine/duckdb"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// The adversarial table: values at every edge an operation can trip on.
var totalManifest = &workspace.Manifest{
	Name: "x", Owner: "o", PrivacyUnit: "u",
	Columns: []workspace.Column{
		{Name: "u", Type: "text", Class: workspace.ClassIdentifier},
		{Name: "i", Type: "integer", Class: workspace.ClassAttribute},
		{Name: "d", Type: "double", Class: workspace.ClassAttribute},
		{Name: "n", Type: "decimal", Class: workspace.ClassAttribute},
		{Name: "s", Type: "text", Class: workspace.ClassAttribute},
		{Name: "dt", Type: "date", Class: workspace.ClassAttribute},
		{Name: "b", Type: "boolean", Class: workspace.ClassAttribute},
	},
}

var totalRows = []string{
	`u1,0,0,0,,2024-01-01,true`,
	`u2,-1,-1,-1,a\,0001-01-01,false`,
	`u3,9223372036854775807,1e300,9999999999999999.99,abc,9999-12-31,true`,
	`u4,-9223372036854775807,-1e300,-9999999999999999.99,%_,1970-01-01,false`,
	`u5,1,1e-300,0.01,12,2000-02-29,true`,
	`u6,,,,,,`,
	`u7,2147483647,2.5,0.5,0,2024-12-31,true`,
}

// Operand templates per type; {agg} variants wrap them in aggregates so the
// expression sits above an aggregate, where DuckDB's try() cannot go.
var (
	numOperands = []string{"i", "d", "n", "(i * 3)", "(i + i)", "(d * d)", "(- i)", "(i - 1)", "0", "-1", "1e308"}
	aggOperands = []string{"sum(i)", "max(d)", "min(i)", "avg(n)", "count(*)", "(sum(i) * sum(i))"}
	subOperands = []string{"CASE WHEN i IN (SELECT i FROM x) THEN i END", "CASE WHEN EXISTS (SELECT 1 FROM x) THEN d END"}
	txtOperands = []string{"s", "(s || 'x')", "''"}
	dateOps     = []string{"dt", "(dt + i)", "(dt - 1)"}
)

// funcCases are templates per scalar function: N a number, T text, D a date.
var funcCases = map[string][]string{
	"lower": {"lower(T)"}, "upper": {"upper(T)"}, "length": {"length(T)"}, "char_length": {"char_length(T)"},
	"substr": {"substr(T, N)", "substr(T, N, N)"}, "substring": {"substring(T, N, N)"},
	"btrim": {"btrim(T)", "btrim(T, T)"}, "ltrim": {"ltrim(T)"}, "rtrim": {"rtrim(T, T)"},
	"left": {"left(T, N)"}, "right": {"right(T, N)"}, "replace": {"replace(T, T, T)"},
	"concat": {"concat(T, N)"}, "split_part": {"split_part(T, ',', N)"},
	"coalesce": {"coalesce(N, N)"}, "nullif": {"nullif(N, N)"}, "greatest": {"greatest(N, N)"}, "least": {"least(N, N)"},
	"abs": {"abs(N)"}, "round": {"round(N)", "round(N, 2)"}, "floor": {"floor(N)"}, "ceil": {"ceil(N)"}, "ceiling": {"ceiling(N)"},
	"sign": {"sign(N)"}, "sqrt": {"sqrt(N)"}, "ln": {"ln(N)"}, "exp": {"exp(N)"}, "power": {"power(N, N)"}, "mod": {"mod(N, N)"},
	"date_trunc": {"date_trunc('month', D)"}, "date_part": {"date_part('year', D)"},
}

var opCases = map[string][]string{
	"+": {"N + N", "D + N"}, "-": {"N - N", "D - N", "D - D"}, "*": {"N * N"}, "/": {"N / N"}, "%": {"N % N"},
	"=": {"N = N", "T = T"}, "<>": {"N <> N"}, "<": {"N < N", "D < D"}, "<=": {"T <= T"}, ">": {"N > N"}, ">=": {"D >= D"},
	"||": {"T || T", "T || N"}, "LIKE": {"T LIKE T"}, "NOT LIKE": {"T NOT LIKE T"}, "ILIKE": {"T ILIKE T"}, "NOT ILIKE": {"T NOT ILIKE T"},
	"AND": {"b AND (N > 0)", "D > '2024-01-01' AND N = 1"}, "OR": {"b OR (N > 0)"}, "IS DISTINCT FROM": {"N IS DISTINCT FROM N"}, "IS NOT DISTINCT FROM": {"T IS NOT DISTINCT FROM T"},
}

// typedLiterals put string constants where the engine converts them to
// another type on the fly.
var typedLiterals = []string{
	"dt > 'abc'", "dt = '2024-02-30'", "i = 'x'", "d < '1e999'", "i IN (1, 2)", "dt BETWEEN '2024-01-01' AND '2024-12-31'",
	"CASE WHEN b THEN i ELSE 0 END", "coalesce(dt, DATE '2024-01-01')", "b = 'yes'", "i + '1'",
	// Text meeting another type: DuckDB converts the text at run time.
	"s = 1", "s > i", "i IN (1, s)", "s BETWEEN 1 AND 2", "CASE WHEN b THEN s ELSE i END", "coalesce(s, i)", "greatest(s, d)",
	"nullif(s, i)", "s = dt", "b = s", "s IS DISTINCT FROM i", "CASE s WHEN 1 THEN 1 END", "(s || i) = 'x'",
	// A NULL first argument or branch must not hide the type of the rest.
	"coalesce(NULL, dt) = 'garbage'", "greatest(NULL, dt) IN ('garbage')", "least(NULL, i) = 'x'", "nullif(NULL, b) = 'x'",
	"CASE WHEN b THEN NULL ELSE b END = 'garbage'", "coalesce(NULL, NULL, d) > 'x'",
	// Intervals: timestamp minus timestamp.
	"(date_trunc('day', dt) - date_trunc('day', dt)) = 'garbage'", "(CAST(dt AS timestamp) - CAST(dt AS timestamp)) > 'x'",
	// Constants the engine reads differently from a lenient check
	// (Unicode space, hex floats, underflow), reached only under a CASE.
	"CASE WHEN b THEN dt > '\u00a02024-01-01' ELSE true END", "CASE WHEN b THEN i > '\u00a05' ELSE true END",
	"CASE WHEN b THEN d > '0x1p4' ELSE true END", "CASE WHEN b THEN d > '1e-400' ELSE true END", "CASE WHEN b THEN dt > ' 2024-01-01' ELSE true END",
	// Arithmetic typed from either side.
	"(0 + dt) = s", "(CAST(dt AS timestamp) - dt) = s", "(dt - CAST(dt AS timestamp)) = s", "CASE WHEN b THEN (1 + dt) > '2024-01-01' ELSE true END",
	// Dates far from the data's own.
	"(dt - 3000000) IS NULL", "(dt + 3000000) IS NULL", "(dt - 2451000) IS NULL",
}

var castTargets = []string{"integer", "bigint", "double precision", "numeric", "text", "date", "timestamp", "boolean"}

// expand fills a template's N, T and D slots from the operand lists, one
// slot varying at a time (the others take their first operand).
func expand(tmpl string, nums []string) []string {
	slots := map[byte][]string{'N': nums, 'T': txtOperands, 'D': dateOps}
	var out []string
	positions := []int{}
	for i := 0; i < len(tmpl); i++ {
		if _, ok := slots[tmpl[i]]; ok && (i == 0 || !isIdent(tmpl[i-1])) && (i+1 == len(tmpl) || !isIdent(tmpl[i+1])) {
			positions = append(positions, i)
		}
	}
	fill := func(vary int, v string) string {
		var b strings.Builder
		last := 0
		for k, p := range positions {
			b.WriteString(tmpl[last:p])
			if k == vary {
				b.WriteString(v)
			} else {
				b.WriteString(slots[tmpl[p]][0])
			}
			last = p + 1
		}
		b.WriteString(tmpl[last:])
		return b.String()
	}
	for k, p := range positions {
		for _, v := range slots[tmpl[p]] {
			out = append(out, fill(k, v))
		}
	}
	if len(positions) == 0 {
		out = append(out, tmpl)
	}
	return out
}

func isIdent(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// totalQueries are every case in scalar, aggregate and subquery context.
func totalQueries(t *testing.T) []string {
	for _, f := range query.AllowedScalarFunctions() {
		if len(funcCases[f]) == 0 {
			t.Errorf("scalar function %s has no adversarial case in funcCases: add one", f)
		}
	}
	for _, op := range query.AllowedOperators() {
		if len(opCases[op]) == 0 {
			t.Errorf("operator %s has no adversarial case in opCases: add one", op)
		}
	}
	var exprs []string
	for _, cases := range [](map[string][]string){funcCases, opCases} {
		for _, tmpls := range cases {
			for _, tm := range tmpls {
				exprs = append(exprs, expand(tm, numOperands)...)
			}
		}
	}
	exprs = append(exprs, typedLiterals...)
	for _, typ := range castTargets {
		for _, v := range append(append(append([]string{"'abc'", "'2024-01-01'", "'12'", "'1e400'", "true"}, numOperands...), txtOperands...), dateOps...) {
			exprs = append(exprs, "CAST("+v+" AS "+typ+")")
		}
	}
	var qs []string
	for _, e := range exprs {
		qs = append(qs,
			"SELECT "+e+" AS r FROM x",
			"SELECT count(*) AS r FROM x WHERE ("+e+") IS NULL",
			"SELECT count(*) AS r FROM x GROUP BY ("+e+")",
			"SELECT sum(CASE WHEN ("+e+") IS NULL THEN 1 ELSE 0 END) AS r FROM x")
	}
	// Above aggregates and subqueries.
	for _, cases := range [](map[string][]string){funcCases, opCases} {
		for _, tmpls := range cases {
			for _, tm := range tmpls {
				if !strings.Contains(tm, "N") || strings.Contains(tm, "T") || strings.Contains(tm, "D") {
					continue
				}
				for _, e := range expand(tm, aggOperands) {
					qs = append(qs, "SELECT "+e+" AS r FROM x", "SELECT count(*) AS r FROM x HAVING ("+e+") IS NOT NULL")
				}
				for _, e := range expand(tm, subOperands) {
					qs = append(qs, "SELECT "+e+" AS r FROM x")
				}
			}
		}
	}
	return qs
}

type totalEngine struct {
	name     string
	dialect  query.Dialect
	run      func(sql string, args ...any) error
	table    string // x with the adversarial rows
	empty    string // x with no rows
	refusals int
	collect  func([][]any) // if set, receives each run's rows
}

// TestGeneratedSQLIsTotal: whatever the analyst writes, whether the engine
// fails must not depend on the data. Every allow-listed function, operator
// and cast, fed the edges of its domain in scalar, aggregate and subquery
// context, either fails on the empty table too (a static error, a function
// of the query text) or succeeds on the adversarial one.
func TestGeneratedSQLIsTotal(t *testing.T) {
	qs := totalQueries(t)
	engines := []*totalEngine{duckTotal(t), pgTotal(t)}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			static := 0
			for _, sql := range qs {
				full, args, ferr := e.plan(sql, e.table)
				if ferr != nil {
					if refusal.As(ferr).Code == refusal.Internal {
						t.Fatalf("%s: %v", sql, ferr)
					}
					e.refusals++ // refused before anything ran: static
					continue
				}
				empty, emptyArgs, _ := e.plan(sql, e.empty)
				errFull, errEmpty := e.run(full, args...), e.run(empty, emptyArgs...)
				switch {
				case errFull != nil && errEmpty == nil:
					t.Errorf("data-dependent engine error (an oracle):\n  query %s\n  engine SQL %s\n  error %v", sql, full, errFull)
				case errFull != nil:
					static++
				}
			}
			t.Logf("%d queries: %d refused by the planner, %d static engine errors, the rest answered", len(qs), e.refusals, static)
			if static > len(qs)/10 {
				t.Errorf("%d of %d cases fail statically: the cases no longer exercise the engine", static, len(qs))
			}
		})
	}
}

func (e *totalEngine) plan(sql, table string) (string, []any, error) {
	q, err := query.Parse(sql, func(string) *workspace.Manifest { return totalManifest }, nil)
	if err != nil {
		return "", nil, err
	}
	p, err := query.Planner{Dialect: e.dialect}.Plan(q, map[string]*query.Grant{"x": {Access: query.AccessOwner, Table: table}})
	if err != nil {
		return "", nil, err
	}
	return p.SQL, p.Args, nil
}

func duckTotal(t *testing.T) *totalEngine {
	dir := t.TempDir()
	full, empty := filepath.Join(dir, "x.csv"), filepath.Join(dir, "x0.csv")
	head := "u,i,d,n,s,dt,b\n"
	os.WriteFile(full, []byte(head+strings.Join(totalRows, "\n")+"\n"), 0o644)
	os.WriteFile(empty, []byte(head), 0o644)
	d, err := duckdb.Open(duckdb.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	var specs []duckdb.ColumnSpec
	for _, c := range totalManifest.Columns {
		specs = append(specs, duckdb.ColumnSpec{Name: c.Name, Type: c.Type, Unit: c.Name == "u"})
	}
	for name, file := range map[string]string{"x": full, "x0": empty} {
		if err := d.LoadTable(context.Background(), name, file, specs); err != nil {
			t.Fatal(err)
		}
	}
	d.Lockdown()
	e := &totalEngine{name: "duckdb", dialect: query.DuckDB, table: `"x"`, empty: `"x0"`}
	e.run = func(sql string, args ...any) error {
		r, err := d.Query(context.Background(), sql, args...)
		if err == nil && e.collect != nil {
			e.collect(r.Rows)
		}
		return err
	}
	return e
}

func pgTotal(t *testing.T) *totalEngine {
	ctx := context.Background()
	ddl := "(u text, i bigint, d double precision, n numeric(18,2), s text, dt date, b boolean)"
	schema, conn := pgScratch(t, "CREATE TABLE %[1]s.x "+ddl+"; CREATE TABLE %[1]s.x0 "+ddl)
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(strings.Join(totalRows, "\n")+"\n"), "COPY "+schema+".x FROM STDIN (FORMAT csv)"); err != nil {
		t.Fatal(err)
	}
	pg := pgTestEngine(t)
	e := &totalEngine{name: "postgres", dialect: query.Postgres, table: schema + `."x"`, empty: schema + `."x0"`}
	e.run = func(sql string, args ...any) error {
		r, err := pg.Query(ctx, sql, args...)
		if err == nil && e.collect != nil {
			e.collect(r.Rows)
		}
		return err
	}
	return e
}

// Non-finite results (DOUBLE division by zero above aggregates) are
// released as NULL by both engine adapters: JSON cannot carry them, and an
// encoder failing mid-answer would be one more data-dependent outcome.
func TestNonFiniteResultsAreNull(t *testing.T) {
	for _, e := range []*totalEngine{duckTotal(t), pgTotal(t)} {
		for _, sql := range []string{
			"SELECT sum(d) / (count(*) - count(*)) AS r FROM x",
			"SELECT max(d) * max(d) AS r FROM x",
			"SELECT CAST(max(d) AS double precision) * 1e10 AS r FROM x",
		} {
			full, args, err := e.plan(sql, e.table)
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			var rows [][]any
			e.collect = func(r [][]any) { rows = r }
			if err := e.run(full, args...); err != nil {
				t.Fatalf("%s on %s: %v", sql, e.name, err)
			}
			for _, r := range rows {
				if f, ok := r[0].(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
					t.Fatalf("%s on %s released %v", sql, e.name, f)
				}
			}
		}
	}
}
