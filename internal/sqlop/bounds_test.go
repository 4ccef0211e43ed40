package sqlop

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/engine/duckdb"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/workspace"
)

var boundsManifest = &workspace.Manifest{
	Name: "t", Owner: "o", PrivacyUnit: "u",
	Columns: []workspace.Column{
		{Name: "u", Type: "text", Class: workspace.ClassIdentifier},
		{Name: "g", Type: "text", Class: workspace.ClassAttribute},
		{Name: "v", Type: "decimal", Class: workspace.ClassSensitive, Bounds: []float64{0, 100}, Granularity: 0.01},
	},
}

func boundsGrant(l0, linf int) map[string]*query.Grant {
	return map[string]*query.Grant{"t": {Access: query.AccessDP, Table: `"t"`, Rule: workspace.Rule{
		Kind: workspace.RuleDP, MaxGroupsPerUnit: l0, MaxRowsPerGroup: linf,
		Dimensions: []string{"g"}, Aggregates: map[string][]string{"*": {"count"}, "v": {"sum"}, "u": {"count"}},
	}}}
}

// boundsEngine is where the bounded-contribution SQL runs in these tests.
type boundsEngine struct {
	engine.Engine
	dialect query.Dialect
	table   string
}

// loadBounds writes rows "u,g,v" to a CSV and loads it as table t.
func loadBounds(t *testing.T, rows []string) *duckdb.DB {
	t.Helper()
	f := filepath.Join(t.TempDir(), "t.csv")
	os.WriteFile(f, []byte("u,g,v\n"+strings.Join(rows, "\n")+"\n"), 0o644)
	d, err := duckdb.Open(duckdb.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.LoadTable(context.Background(), "t", f, []duckdb.ColumnSpec{{Name: "u", Type: "text", Unit: true}, {Name: "g", Type: "text"}, {Name: "v", Type: "decimal"}}); err != nil {
		t.Fatal(err)
	}
	d.Lockdown()
	return d
}

// stats runs the bounded-contribution SQL and returns per group the
// statistics (units, count, sum) before noise.
func stats(t *testing.T, d *duckdb.DB, l0, linf int, seed uint64) map[string][]int64 {
	t.Helper()
	return statsOn(t, boundsEngine{d, query.DuckDB, `"t"`}, l0, linf, seed)
}

func statsOn(t *testing.T, d boundsEngine, l0, linf int, seed uint64) map[string][]int64 {
	t.Helper()
	out := map[string][]int64{}
	for _, r := range boundedRows(t, d, "SELECT g, count(DISTINCT u), count(*), sum(v) FROM t GROUP BY g", l0, linf, seed) {
		var vals []int64
		for _, v := range r[1:] {
			vals = append(vals, toBig(v).Int64())
		}
		out[r[0].(string)] = vals
	}
	return out
}

// boundedRows runs sql's bounded-contribution SQL (before noise) on d.
func boundedRows(t *testing.T, d boundsEngine, sql string, l0, linf int, seed uint64) [][]any {
	t.Helper()
	q, err := query.Parse(sql, func(string) *workspace.Manifest { return boundsManifest }, nil)
	if err != nil {
		t.Fatal(err)
	}
	grants := boundsGrant(l0, linf)
	grants["t"].Table = d.table
	p, err := query.Planner{Dialect: d.dialect, Seed: func() uint64 { return seed }}.Plan(q, grants)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Query(context.Background(), p.SQL, p.Args...)
	if err != nil {
		t.Fatal(err)
	}
	return res.Rows
}

func TestContributionBounds(t *testing.T) {
	checkContributionBounds(t, func(rows []string) boundsEngine { return boundsEngine{loadBounds(t, rows), query.DuckDB, `"t"`} })
}

func TestContributionBoundsPostgres(t *testing.T) {
	checkContributionBounds(t, func(rows []string) boundsEngine { return loadBoundsPG(t, rows) })
}

func checkContributionBounds(t *testing.T, load func([]string) boundsEngine) {
	const l0, linf = 3, 5
	var base []string
	for i := 0; i < 1000; i++ {
		base = append(base, fmt.Sprintf("u%d,g%d,%d.50", i, i%20, i%100))
	}
	// A unit with 10,000 rows over 50 groups and values far above the bound.
	heavy := append([]string(nil), base...)
	for i := 0; i < 10000; i++ {
		heavy = append(heavy, fmt.Sprintf("H,g%d,1000000", i%50))
	}
	without := statsOn(t, load(base), l0, linf, 7)
	with := statsOn(t, load(heavy), l0, linf, 7)
	changed := 0
	for g, w := range with {
		o := without[g] // zero if the group exists only because of H
		if o == nil {
			o = []int64{0, 0, 0}
		}
		du, dc, ds := w[0]-o[0], w[1]-o[1], w[2]-o[2]
		if du != 0 || dc != 0 || ds != 0 {
			changed++
		}
		if du > 1 || dc > linf || ds > linf*100*100 {
			t.Fatalf("group %s: the heavy unit moved units by %d, count by %d, sum by %d (fixed point); bounds 1, %d, %d", g, du, dc, ds, linf, linf*100*100)
		}
	}
	if changed > l0 {
		t.Fatalf("the heavy unit changed %d groups, more than L0=%d", changed, l0)
	}
}

func TestL0SamplingIsUniform(t *testing.T) {
	checkL0Uniform(t, func(rows []string) boundsEngine { return boundsEngine{loadBounds(t, rows), query.DuckDB, `"t"`} }, 1200)
}

func TestL0SamplingIsUniformPostgres(t *testing.T) {
	checkL0Uniform(t, func(rows []string) boundsEngine { return loadBoundsPG(t, rows) }, 300)
}

func checkL0Uniform(t *testing.T, load func([]string) boundsEngine, runs int) {
	// One unit in n groups, L0 = l0: each group must be kept l0/n of the
	// time. (3, 1) caught DuckDB's hash(..., seed), whose seed only XORs
	// in: one of the three groups was kept 51% of the time.
	for _, c := range []struct{ groups, l0 int }{{6, 3}, {3, 1}} {
		var rows []string
		for g := 0; g < c.groups; g++ {
			rows = append(rows, fmt.Sprintf("H,g%d,1", g))
		}
		d := load(rows)
		kept := map[string]int{}
		for seed := uint64(0); seed < uint64(runs); seed++ {
			s := statsOn(t, d, c.l0, 1, seed*2654435761+1)
			if len(s) != c.l0 {
				t.Fatalf("seed %d kept %d groups, want exactly %d", seed, len(s), c.l0)
			}
			for g := range s {
				kept[g]++
			}
		}
		// Binomial(runs, p): allow 5 sd.
		p := float64(c.l0) / float64(c.groups)
		for g := 0; g < c.groups; g++ {
			n := kept[fmt.Sprintf("g%d", g)]
			if math.Abs(float64(n)-float64(runs)*p) > 5*math.Sqrt(float64(runs)*p*(1-p)) {
				t.Fatalf("%d groups, L0 %d: group g%d kept %d of %d times; sampling is not uniform: %v", c.groups, c.l0, g, n, runs, kept)
			}
		}
	}
}

// TestWholeQueryPrivacyAudit runs a complete DP count (bounded SQL, noise,
// release) on neighbouring datasets, one with an extra unit of 10,000 rows
// with extreme values, many times, and checks that the privacy loss
// estimated from threshold events stays within the query's claimed ε.
func TestWholeQueryPrivacyAudit(t *testing.T) {
	for _, mech := range []string{"gaussian", "laplace"} {
		t.Run(mech, func(t *testing.T) { wholeQueryAudit(t, mech) })
	}
}

func wholeQueryAudit(t *testing.T, mech string) {
	const l0, linf = 1, 5
	var base []string
	for i := 0; i < 200; i++ {
		base = append(base, fmt.Sprintf("u%d,g,%d", i, i%100))
	}
	heavy := append([]string(nil), base...)
	for i := 0; i < 10000; i++ {
		heavy = append(heavy, "H,g,1000000")
	}
	rule := boundsGrant(l0, linf)["t"].Rule
	rule.EpsilonPerQuery, rule.DeltaPerQuery, rule.Noise = 1, 1e-6, mech
	q, _ := query.Parse("SELECT count(*) FROM t", func(string) *workspace.Manifest { return boundsManifest }, nil)
	plan := func(d *duckdb.DB) (*query.Plan, [][]any) {
		p, err := query.Planner{Dialect: query.DuckDB}.Plan(q, map[string]*query.Grant{"t": {Access: query.AccessDP, Table: `"t"`, Rule: rule}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := d.Query(context.Background(), p.SQL, p.Args...)
		if err != nil {
			t.Fatal(err)
		}
		return p, res.Rows
	}
	p0, rows0 := plan(loadBounds(t, base))
	_, rows1 := plan(loadBounds(t, heavy))
	cost := dp.CostOf(dp.MechanismOf(rule.Noise), rule.EpsilonPerQuery, rule.DeltaPerQuery, len(p0.DP.Stats), false)
	noise := noiseSpec{Noise: noiseOf(cost, p0.DP)}
	g := &Service{sampler: newTestSampler()}
	const n = 20000
	count := func(rows [][]any, thr float64) int {
		hits := 0
		for i := 0; i < n; i++ {
			r := release(p0.DP, engineResult(rows), noise, 0, g.sampler, nil)
			if float64(r.Rows[0][0].(int64)) >= thr {
				hits++
			}
		}
		return hits
	}
	c0 := float64(toBig(rows0[0][1]).Int64())
	for _, off := range []float64{1, 3, 5} {
		a, b := count(rows0, c0+off), count(rows1, c0+off)
		pa := (float64(a) + 4*math.Sqrt(float64(a)+1)) / n
		pb := (float64(b) - 4*math.Sqrt(float64(b)+1)) / n
		if pb <= cost.Delta || pa <= 0 {
			continue
		}
		lower := math.Log((pb - cost.Delta) / pa)
		if lower > cost.Epsilon {
			t.Fatalf("threshold +%v: empirical ε lower bound %.3f exceeds the claimed %.3f", off, lower, cost.Epsilon)
		}
		t.Logf("threshold +%v: empirical ε lower bound %.3f <= claimed %.3f", off, lower, cost.Epsilon)
	}
}

// TestL0KeepsExactlyTheLowestHashes checks the DuckDB plan's L0 selection
// against its definition, computed directly: each unit keeps the L0 of its
// groups with the smallest hash(xor(hash(unit id, group), seed)), and all of them when
// it has at most L0. Units have 1 to 12 groups and repeated rows; L0 covers
// both ways the plan finds a unit's threshold (repeated minimums up to
// l0RoundsMax, a bottom-L0 list above it).
func TestL0KeepsExactlyTheLowestHashes(t *testing.T) {
	var rows []string
	for u := 0; u < 400; u++ {
		groups := 1 + (u*7)%12
		for g := 0; g < groups; g++ {
			for r := 0; r <= (u+g)%3; r++ {
				rows = append(rows, fmt.Sprintf("u%d,g%d,1", u, (u+g*5)%17))
			}
		}
	}
	d := loadBounds(t, rows)
	id := query.QuoteIdent(query.UnitIDColumn)
	for _, l0 := range []int{1, 3, 8, 9, 11} {
		for _, seed := range []uint64{1, 0xdeadbeef, 1 << 63} {
			got := stats(t, d, l0, 1, seed)
			res, err := d.Query(context.Background(), fmt.Sprintf(`SELECT g, count(*) FROM (
				SELECT g, row_number() OVER (PARTITION BY u ORDER BY h) AS r
				FROM (SELECT DISTINCT u, g, hash(xor(hash(%s, g), %d::UBIGINT)) AS h FROM t)) WHERE r <= %d GROUP BY g`, id, seed, l0))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Rows) != len(got) {
				t.Fatalf("L0=%d seed=%d: %d groups released, want %d", l0, seed, len(got), len(res.Rows))
			}
			for _, r := range res.Rows {
				g, want := r[0].(string), toBig(r[1]).Int64()
				if got[g] == nil || got[g][0] != want {
					t.Fatalf("L0=%d seed=%d group %s: %v units kept, want %d", l0, seed, g, got[g], want)
				}
			}
		}
	}
}

// TestL0HoldsUnderHashCollisions is the attack on hash-ranked L0 sampling:
// DuckDB's string hash collides for 'diagnosisgroupAA' and
// 'okebaaaa^wU_ICJq' whatever the seed, and an analyst can map two groups
// onto them with CASE. The colliding groups tie at the unit's threshold; the
// unit must still count in at most L0 = 1 group.
func TestL0HoldsUnderHashCollisions(t *testing.T) {
	collide := "CASE WHEN g = 'g0' THEN 'diagnosisgroupAA' ELSE 'okebaaaa^wU_ICJq' END"
	sql := "SELECT " + collide + " AS k, count(DISTINCT u) FROM t GROUP BY 1"
	base := []string{"A,g0,1", "B,g1,1"}
	heavy := append([]string{"H,g0,1", "H,g1,1"}, base...)
	for name, load := range map[string]func([]string) boundsEngine{
		"duckdb":   func(rows []string) boundsEngine { return boundsEngine{loadBounds(t, rows), query.DuckDB, `"t"`} },
		"postgres": func(rows []string) boundsEngine { return loadBoundsPG(t, rows) },
	} {
		without, with := load(base), load(heavy)
		for seed := uint64(1); seed <= 20; seed++ {
			units := func(d boundsEngine) int64 {
				var n int64
				for _, r := range boundedRows(t, d, sql, 1, 1, seed) {
					n += toBig(r[1]).Int64()
				}
				return n
			}
			if d := units(with) - units(without); d > 1 || d < 0 {
				t.Fatalf("%s seed %d: the unit with two colliding groups changed the unit counts by %d in total; L0 = 1", name, seed, d)
			}
		}
	}
}
