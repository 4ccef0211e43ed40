package query

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/workspace"
)

var visits = &workspace.Manifest{
	Name: "visits", Owner: "stmary", PrivacyUnit: "patient_id",
	Columns: []workspace.Column{
		{Name: "patient_id", Type: "text", Class: workspace.ClassIdentifier},
		{Name: "name", Type: "text", Class: workspace.ClassIdentifier},
		{Name: "zip", Type: "text", Class: workspace.ClassQuasiIdentifier},
		{Name: "birth_date", Type: "date", Class: workspace.ClassQuasiIdentifier},
		{Name: "diagnosis", Type: "text", Class: workspace.ClassSensitive},
		{Name: "hospital", Type: "text", Class: workspace.ClassAttribute},
		{Name: "region", Type: "text", Class: workspace.ClassAttribute},
		{Name: "cost", Type: "decimal", Class: workspace.ClassSensitive},
	},
}

func catalog(name string) *workspace.Manifest {
	if name == "visits" {
		return visits
	}
	return nil
}

func aggGrant() map[string]*Grant {
	return map[string]*Grant{"visits": {
		Access: AccessAggregation, Table: `"visits"`,
		Rule: workspace.Rule{
			Kind: workspace.RuleAggregation, MinUnits: 10,
			Dimensions: []string{"diagnosis", "hospital", "region"},
			Aggregates: map[string][]string{"*": {"count"}, "cost": {"sum", "avg"}, "patient_id": {"count"}},
		},
	}}
}

func listGrant() map[string]*Grant {
	return map[string]*Grant{"visits": {
		Access: AccessList, Table: `"visits"`, HMACKey: []byte("k"),
		Rule: workspace.Rule{
			Kind:  workspace.RuleList,
			Masks: map[string]workspace.Mask{"patient_id": workspace.MaskHMAC, "name": workspace.MaskRedact, "zip": workspace.MaskZip3, "birth_date": workspace.MaskYear},
		},
		RowFilter: &Op{Op: "=", L: &Col{Name: "region"}, R: &Lit{Kind: LitString, Value: "north"}},
	}}
}

func plan(t *testing.T, sql string, grants map[string]*Grant) (*Plan, error) {
	t.Helper()
	q, err := Parse(sql, catalog, nil)
	if err != nil {
		return nil, err
	}
	return Planner{Dialect: DuckDB}.Plan(q, grants)
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, sql string
		grants    map[string]*Grant
		code      refusal.Code
		rule      string
	}{
		{"two statements", "SELECT count(*) FROM visits; SELECT 1 FROM visits", aggGrant(), refusal.BadSQL, "sql.single_statement"},
		{"insert", "INSERT INTO visits VALUES (1)", aggGrant(), refusal.BadSQL, "sql.select_only"},
		{"drop", "DROP TABLE visits", aggGrant(), refusal.BadSQL, "sql.select_only"},
		{"copy", "COPY visits TO '/tmp/x'", aggGrant(), refusal.BadSQL, "sql.select_only"},
		{"catalog", "SELECT count(*) FROM information_schema.tables", aggGrant(), refusal.Forbidden, "catalog.hidden"},
		{"pg_catalog", "SELECT count(*) FROM pg_catalog.pg_class", aggGrant(), refusal.Forbidden, "catalog.hidden"},
		{"table function", "SELECT * FROM read_csv('/etc/passwd')", aggGrant(), refusal.Forbidden, "sql.table_function"},
		{"unknown table", "SELECT count(*) FROM patients", aggGrant(), refusal.NotFound, "catalog.unknown_dataset"},
		{"function", "SELECT current_setting('x') FROM visits", aggGrant(), refusal.Forbidden, "sql.function"},
		{"qualified function", "SELECT pg_catalog.version() FROM visits", aggGrant(), refusal.Forbidden, "sql.function"},
		{"raw rows", "SELECT diagnosis FROM visits", aggGrant(), refusal.AnalysisRule, "aggregation.required"},
		{"identifier group", "SELECT patient_id, count(*) FROM visits GROUP BY patient_id", aggGrant(), refusal.AnalysisRule, "aggregation.identifier"},
		{"non-dimension where", "SELECT count(*) FROM visits WHERE zip = '12345'", aggGrant(), refusal.AnalysisRule, "aggregation.dimension"},
		{"identifier where", "SELECT count(*) FROM visits WHERE name LIKE 'A%'", aggGrant(), refusal.AnalysisRule, "aggregation.identifier"},
		{"max on sensitive", "SELECT max(cost) FROM visits", aggGrant(), refusal.AnalysisRule, "aggregation.raw_value"},
		{"min on identifier", "SELECT hospital, min(name) FROM visits GROUP BY hospital", aggGrant(), refusal.AnalysisRule, "aggregation.raw_value"},
		{"string_agg", "SELECT hospital, string_agg(name, ',') FROM visits GROUP BY hospital", aggGrant(), refusal.AnalysisRule, "aggregation.raw_value"},
		{"unlisted aggregate", "SELECT hospital, stddev(cost) FROM visits GROUP BY hospital", aggGrant(), refusal.AnalysisRule, "aggregation.function"},
		{"expression arg", "SELECT sum(CASE WHEN name = 'x' THEN cost END) FROM visits", aggGrant(), refusal.AnalysisRule, "aggregation.argument"},
		{"filter clause", "SELECT count(*) FILTER (WHERE name = 'x') FROM visits", aggGrant(), refusal.AnalysisRule, "aggregation.filter"},
		{"nested aggregation", "SELECT count(*) FROM (SELECT hospital, count(*) AS n FROM visits GROUP BY hospital) t", aggGrant(), refusal.AnalysisRule, "aggregation.nested"},
		{"subquery filter", "SELECT count(*) FROM visits WHERE hospital IN (SELECT hospital FROM visits)", aggGrant(), refusal.AnalysisRule, "aggregation.subquery_filter"},
		{"derived from identifier", "SELECT count(*) FROM (SELECT upper(name) AS n FROM visits) t GROUP BY n", aggGrant(), refusal.AnalysisRule, "aggregation.identifier"},
		{"window", "SELECT row_number() OVER () FROM visits", aggGrant(), refusal.BadSQL, "sql.window"},
		{"union", "SELECT count(*) FROM visits UNION SELECT count(*) FROM visits", aggGrant(), refusal.BadSQL, "sql.set_operation"},
		{"cast probe", "SELECT count(*) FROM visits WHERE CAST(name AS integer) = 1", aggGrant(), refusal.AnalysisRule, "aggregation.identifier"},
		{"now", "SELECT count(*) FROM visits WHERE current_user = 'x'", aggGrant(), refusal.Forbidden, "sql.function"},
		{"no from", "SELECT 1", aggGrant(), refusal.BadSQL, "sql.from"},
		{"select into", "SELECT * INTO t FROM visits", listGrant(), refusal.BadSQL, "sql.select_into"},
		// The engine's hidden surrogate of the privacy unit is not a column
		// of the dataset, whatever the grant.
		{"hidden unit id", "SELECT " + UnitIDColumn + " FROM visits", listGrant(), refusal.BadSQL, "sql.unknown_column"},
		{"hidden unit id qualified", "SELECT count(*) FROM visits v WHERE v." + UnitIDColumn + " = 1", aggGrant(), refusal.BadSQL, "sql.unknown_column"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := plan(t, tc.sql, tc.grants)
			var r *refusal.Error
			if !errors.As(err, &r) {
				t.Fatalf("got %v, want refusal %s/%s", err, tc.code, tc.rule)
			}
			if r.Code != tc.code || r.Rule != tc.rule {
				t.Fatalf("got %s/%s (%s), want %s/%s", r.Code, r.Rule, r.Message, tc.code, tc.rule)
			}
		})
	}
}

func TestAggregationPlanCountsUnits(t *testing.T) {
	t.Parallel()
	p, err := plan(t, "SELECT diagnosis, count(*) AS n, avg(cost) FROM visits WHERE region = 'north' GROUP BY diagnosis ORDER BY n DESC LIMIT 5", aggGrant())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.SQL, `COUNT(DISTINCT "visits"."patient_id") AS "__n0"`) {
		t.Fatalf("no unit count in %s", p.SQL)
	}
	if strings.Contains(p.SQL, "LIMIT") {
		t.Fatalf("LIMIT must run after suppression, got %s", p.SQL)
	}
	if p.Limit == nil || *p.Limit != 5 || len(p.UnitColumns) != 1 || p.UnitColumns[0] != 3 || p.MinUnits[0] != 10 {
		t.Fatalf("got limit %v unit cols %v min %v", p.Limit, p.UnitColumns, p.MinUnits)
	}
	if got, want := strings.Join(p.Columns, ","), "diagnosis,n,avg"; got != want {
		t.Fatalf("columns %s, want %s", got, want)
	}
}

func TestAggregationThroughCTE(t *testing.T) {
	t.Parallel()
	p, err := plan(t, "WITH x AS (SELECT hospital, cost FROM visits WHERE region = 'north') SELECT hospital, sum(cost) FROM x GROUP BY hospital", aggGrant())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.SQL, `"visits"."patient_id" AS "__u0"`) || !strings.Contains(p.SQL, `COUNT(DISTINCT "x"."__u0")`) {
		t.Fatalf("unit not threaded through CTE: %s", p.SQL)
	}
}

func TestListPlanMasks(t *testing.T) {
	t.Parallel()
	p, err := plan(t, "SELECT * FROM visits WHERE zip LIKE '123%' LIMIT 10", listGrant())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`CAST(NULL AS VARCHAR) AS "name"`, `sha256(`, `WHERE ("region" = 'north')`, `date_trunc('year', "birth_date")`, `|| 'XX')`} {
		if !strings.Contains(p.SQL, want) {
			t.Errorf("SQL lacks %q:\n%s", want, p.SQL)
		}
	}
	if strings.Contains(p.SQL, `, "name" AS "name"`) {
		t.Errorf("raw name column leaked into SQL: %s", p.SQL)
	}
}

func TestLiteralsCannotEscape(t *testing.T) {
	t.Parallel()
	p, err := plan(t, `SELECT count(*) FROM visits WHERE hospital = 'x'' OR 1=1 --'`, aggGrant())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.SQL, `'x'' OR 1=1 --'`) {
		t.Fatalf("literal not re-quoted: %s", p.SQL)
	}
}

func TestParamsBind(t *testing.T) {
	t.Parallel()
	q, err := Parse("SELECT hospital, count(*) FROM visits WHERE region = $1 GROUP BY hospital LIMIT $2", catalog, []any{"north", int64(3)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Planner{Dialect: Postgres}.Plan(q, aggGrant())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.SQL, `= CAST($1 AS text)`) || len(p.Args) != 1 || p.Args[0] != "north" || p.Limit == nil || *p.Limit != 3 {
		t.Fatalf("params not bound: %s limit %v", p.SQL, p.Limit)
	}
}

func FuzzParsePlan(f *testing.F) {
	for _, s := range []string{
		"SELECT diagnosis, count(*) FROM visits GROUP BY 1",
		"WITH a AS (SELECT * FROM visits) SELECT count(*) FROM a",
		"SELECT * FROM visits v JOIN visits w USING (patient_id)",
		"SELECT 'a''b', -1, 2.5e3 FROM visits",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		q, err := Parse(sql, catalog, nil)
		if err != nil {
			return
		}
		for _, g := range []map[string]*Grant{aggGrant(), listGrant()} {
			p, err := Planner{Dialect: DuckDB}.Plan(q, g)
			if err != nil {
				continue
			}
			// Whatever the input, generated SQL must parse as one SELECT.
			if _, err := Parse(strings.ReplaceAll(p.SQL, `"cte_`, `"`), func(string) *workspace.Manifest { return nil }, nil); err != nil {
				var r *refusal.Error
				if errors.As(err, &r) && r.Rule == "sql.single_statement" {
					t.Fatalf("generated SQL is several statements: %s", p.SQL)
				}
			}
		}
	})
}

// A number literal whose text is not of the numeric grammar is never
// written unquoted (it would be an identifier); NaN parameters are refused.
func TestNonNumericNumberTextIsNeverSQL(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"NaN", "+Inf", "-Inf", "inf", "1e5) OR (1"} {
		g := &gen{d: DuckDB}
		g.lit(&Lit{Kind: LitFloat, Value: v})
		if got := g.b.String(); got != "NULL" {
			t.Errorf("number text %q written as %q", v, got)
		}
	}
	if _, err := literalOf(math.NaN()); err == nil {
		t.Error("a NaN parameter was accepted")
	}
}
