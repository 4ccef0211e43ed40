package sqlop

import (
	"testing"

	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// The DP answer cache serves a stored answer only to the same bound query
// under the same rule: literals count exactly as written (in PostgreSQL
// they are bind parameters, so they must be in the key), parameters of
// different types or splits differ, and a changed rule is a new key.
func TestCacheKeyIsTheBoundQuery(t *testing.T) {
	grants := func() map[string]*query.Grant {
		g := boundsGrant(3, 3)
		g["t"].Rule.Aggregates = map[string][]string{"*": {"count"}, "v": {"sum", "median", "percentile_cont", "stddev", "variance"}}
		return g
	}
	ag := &workspace.Agreement{ID: "a", Rules: map[string]workspace.Rule{"t": grants()["t"].Rule}}
	key := store.BudgetKey{Agreement: "a"}
	fp := func(d query.Dialect, sql string, params ...any) string {
		t.Helper()
		q, err := query.Parse(sql, func(string) *workspace.Manifest { return boundsManifest }, params)
		if err != nil {
			t.Fatal(err)
		}
		p, err := query.Planner{Dialect: d, Seed: func() uint64 { return 0 }}.Plan(q, grants())
		if err != nil {
			t.Fatal(err)
		}
		return dpFingerprint(ag, key, p)
	}
	for _, d := range []query.Dialect{query.DuckDB, query.Postgres} {
		same := fp(d, "SELECT g, count(*) FROM t WHERE g = 'I10' GROUP BY g")
		if again := fp(d, "select g,  COUNT(*) from t where g = 'I10' group by g"); again != same {
			t.Errorf("%s: the same bound query has two keys", d)
		}
		for _, other := range []string{
			fp(d, "SELECT g, count(*) FROM t WHERE g = 'i10' GROUP BY g"),
			// Same statistics, different answers made of them.
			fp(d, "SELECT g, count(*) AS n FROM t WHERE g = 'I10' GROUP BY g"),
			fp(d, "SELECT count(*), g FROM t WHERE g = 'I10' GROUP BY g"),
			fp(d, "SELECT g, count(*) FROM t WHERE g = 'I10' GROUP BY g ORDER BY g LIMIT 1"),
			fp(d, "SELECT g, count(*) FROM t WHERE g = $1 GROUP BY g", "I10 "),
			fp(d, "SELECT g, count(*) FROM t WHERE g IN ($1, $2) GROUP BY g", "a b", "c"),
		} {
			if other == same {
				t.Errorf("%s: different queries share a cache key", d)
			}
		}
		if fp(d, "SELECT g, count(*) FROM t WHERE g IN ($1, $2) GROUP BY g", "a b", "c") == fp(d, "SELECT g, count(*) FROM t WHERE g IN ($1, $2) GROUP BY g", "a", "b c") {
			t.Errorf("%s: parameters [a b, c] and [a, b c] share a key", d)
		}
	}
	// median and p95 (and stddev and variance) share their statistics.
	if fp(query.DuckDB, "SELECT median(v) FROM t") == fp(query.DuckDB, "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY v) FROM t") {
		t.Errorf("median and p95 share a cache key")
	}
	if fp(query.DuckDB, "SELECT stddev(v) FROM t") == fp(query.DuckDB, "SELECT variance(v) FROM t") {
		t.Errorf("stddev and variance share a cache key")
	}
	before := fp(query.DuckDB, "SELECT g, count(*) FROM t GROUP BY g")
	r := ag.Rules["t"]
	r.EpsilonPerQuery = 0.5
	ag.Rules["t"] = r
	if fp(query.DuckDB, "SELECT g, count(*) FROM t GROUP BY g") == before {
		t.Errorf("a changed rule keeps the old key")
	}
}
