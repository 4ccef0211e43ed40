package query

import (
	"fmt"
	"github.com/airlock-dev/airlock/internal/engine"
	"math"
	"strconv"
	"strings"

	"github.com/airlock-dev/airlock/internal/workspace"
)

// UnitIDColumn is the hidden column the embedded engine stores beside a
// dataset's privacy unit: a dense BIGINT surrogate (0..n-1, one per distinct
// unit). DP plans for DuckDB group, join and hash by it instead of the unit
// itself. It is not a manifest column, so analyst SQL cannot name it, and
// no plan ever outputs it.
const UnitIDColumn = engine.UnitIDColumn

// StatKind is one bounded statistic the engine computes per group for a
// differentially private query. Go adds noise to each.
type StatKind string

// The statistics.
const (
	StatUnits StatKind = "units" // distinct privacy units (after L0 sampling); Linf = 1
	StatCount StatKind = "count" // rows, at most MaxRowsPerGroup per unit and group
	StatSum   StatKind = "sum"   // fixed-point sum of a column, per-unit sums clamped
	StatSumSq StatKind = "sumsq" // fixed-point sum of squares, per-unit clamped
)

// Stat is one noisy statistic: a hidden column of the engine result.
type Stat struct {
	Kind   StatKind
	Column string // for sums, and for COUNT(col) (rows where col is not NULL)
	// Linf is the most one unit can change this statistic in one group, in
	// the statistic's integer units.
	Linf float64
	// Scale converts the integer statistic back to the column's units
	// (granularity, or granularity² for squares).
	Scale float64
}

// DPOutput is one released column of a DP query.
type DPOutput struct {
	Name string
	// Key is the index into GroupBy for a group key; -1 for an aggregate.
	Key int
	// Agg is count, count_distinct, sum, avg, variance, stddev.
	Agg string
	// Stats index into DPPlan.Stats: [count] for count, [sum] for sum,
	// [sum, count] for avg, [sum, sumsq, count] for variance/stddev.
	Stats        []int
	Lower, Upper float64 // column bounds, for clamping avg/variance
	// Quantile indexes DPPlan.Quantiles when Agg is "quantile".
	Quantile int
}

// DPPlan is the engine side of a differentially private query: SQL that
// computes, per group, the bounded statistics in one pass, and how to turn
// them into released values.
type DPPlan struct {
	Dataset string
	GroupBy []string // output names of the group keys
	Stats   []Stat
	Outputs []DPOutput
	L0      int
	Linf    int        // max rows per unit and group
	Public  [][]string // public group keys, per GROUP BY column (nil = select partitions)
	OrderBy []DPOrder
	Limit   *int64
	Offset  *int64
	// Quantiles are the DP quantiles asked for; QuantileSQL computes their
	// bounded per-group histograms in a second engine pass each.
	Quantiles   []Quantile
	QuantileSQL []string
	// QuantileArgs are each quantile statement's bind parameters.
	QuantileArgs [][]any
}

// Quantile is one DP quantile of a column.
type Quantile struct {
	Column       string
	Fraction     float64
	Lower, Upper float64
}

// DPOrder orders released rows by an output column.
type DPOrder struct {
	Output int
	Desc   bool
}

// dpAggs are the aggregates a DP query may ask for.
var dpAggs = map[string]bool{"count": true, "sum": true, "avg": true, "variance": true, "stddev": true, "var_pop": true, "stddev_pop": true,
	"median": true, "percentile_cont": true}

// QuantileBins is the resolution of DP quantiles: the column's bounds are cut
// into this many equal bins and the mechanism picks one.
const QuantileBins = 256

// dp plans a query under a DP rule: one dataset, no joins or derived
// tables, WHERE and GROUP BY on dimensions, each output a group key or one
// supported aggregate of a plain column.
func (p Planner) dp(q *Select, grants map[string]*Grant, scans []*Source, plan *Plan, seed uint64) (*Plan, error) {
	if len(scans) != 1 || len(q.From) != 1 || q.From[0].Dataset == nil || len(q.With) > 0 {
		return nil, ruleErr("dp.shape", "differentially private queries read one dataset directly (no joins, subqueries or CTEs)")
	}
	src := q.From[0]
	m := src.Dataset
	g := grants[m.Name]
	r := g.Rule
	if q.Having != nil {
		return nil, ruleErr("dp.having", "HAVING is not supported under differential privacy; filter the released rows yourself")
	}
	if q.Distinct {
		return nil, ruleErr("dp.shape", "SELECT DISTINCT is not supported under differential privacy")
	}
	if len(q.GroupBy) == 0 && !itemsAggregate(q.Items) {
		return nil, ruleErr("aggregation.required", "this agreement answers only differentially private aggregates (GROUP BY with COUNT, SUM, AVG, ...)")
	}
	// Column roles are those of the aggregation rule.
	c := &aggChecker{grants: map[string]*Grant{m.Name: {Access: AccessAggregation, Rule: r}}}
	if q.Where != nil {
		if err := c.expr(q.Where, ctxWhere, true); err != nil {
			return nil, err
		}
	}
	dp := &DPPlan{Dataset: m.Name, L0: r.MaxGroupsPerUnit, Linf: r.MaxRowsPerGroup, Limit: q.Limit, Offset: q.Offset}
	if dp.L0 < 1 {
		dp.L0 = 1
	}
	if dp.Linf < 1 {
		dp.Linf = 1
	}
	for i, k := range q.GroupBy {
		if err := c.expr(k, ctxGroup, true); err != nil {
			return nil, err
		}
		if HasAggregate(k) {
			return nil, ruleErr("dp.shape", "GROUP BY cannot contain an aggregate")
		}
		dp.GroupBy = append(dp.GroupBy, "__k"+strconv.Itoa(i))
	}
	statIdx := map[string]int{}
	stat := func(s Stat) int {
		key := string(s.Kind) + ":" + s.Column
		if i, ok := statIdx[key]; ok {
			return i
		}
		dp.Stats = append(dp.Stats, s)
		statIdx[key] = len(dp.Stats) - 1
		return len(dp.Stats) - 1
	}
	// Partition selection (and COUNT(DISTINCT unit)) use the unit count.
	unitStat := stat(Stat{Kind: StatUnits, Linf: 1, Scale: 1})
	for _, it := range q.Items {
		if k := keyIndex(it.Expr, q.GroupBy); k >= 0 {
			dp.Outputs = append(dp.Outputs, DPOutput{Name: it.Name, Key: k})
			continue
		}
		f, ok := it.Expr.(*Func)
		if !ok || !f.Agg {
			return nil, ruleErr("dp.output", "output %q must be a GROUP BY key or one aggregate such as COUNT(*), SUM(col), AVG(col)", it.Name)
		}
		if err := c.aggregateDP(f); err != nil {
			return nil, err
		}
		out := DPOutput{Name: it.Name, Key: -1, Agg: f.Name}
		if !dpAggs[f.Name] {
			return nil, ruleErr("dp.function", "%s is not available under differential privacy", f.Name)
		}
		count := func() int { return stat(Stat{Kind: StatCount, Linf: float64(dp.Linf), Scale: 1}) }
		countOf := func(column string) int {
			return stat(Stat{Kind: StatCount, Column: column, Linf: float64(dp.Linf), Scale: 1})
		}
		if f.Star {
			if f.Name != "count" {
				return nil, ruleErr("dp.function", "only COUNT(*) takes *")
			}
			out.Stats = []int{count()}
			dp.Outputs = append(dp.Outputs, out)
			continue
		}
		col := f.Args[0].(*Col).Origin.Column
		if f.Name == "count" {
			if f.Distinct && col.Name == m.PrivacyUnit {
				out.Agg = "count_distinct"
				out.Stats = []int{unitStat}
			} else if f.Distinct {
				return nil, ruleErr("dp.function", "COUNT(DISTINCT) is only available on the privacy unit %s", m.PrivacyUnit)
			} else {
				out.Stats = []int{countOf(col.Name)} // COUNT(col): rows where col is not NULL
			}
			dp.Outputs = append(dp.Outputs, out)
			continue
		}
		if len(col.Bounds) != 2 {
			return nil, ruleErr("dp.bounds", "column %s.%s has no bounds in its manifest; DP sums need them", m.Name, col.Name)
		}
		if f.Name == "median" || f.Name == "percentile_cont" {
			out.Agg = "quantile"
			out.Quantile = len(dp.Quantiles)
			dp.Quantiles = append(dp.Quantiles, Quantile{Column: col.Name, Fraction: f.Fraction, Lower: col.Bounds[0], Upper: col.Bounds[1]})
			dp.Outputs = append(dp.Outputs, out)
			continue
		}
		gran := col.Granularity
		if gran <= 0 {
			gran = 1
		}
		lo, hi := col.Bounds[0], col.Bounds[1]
		out.Lower, out.Upper = lo, hi
		maxAbs := math.Max(math.Abs(lo), math.Abs(hi))
		sum := stat(Stat{Kind: StatSum, Column: col.Name, Linf: float64(dp.Linf) * math.Ceil(maxAbs/gran), Scale: gran})
		switch f.Name {
		case "sum":
			out.Stats = []int{sum}
		case "avg":
			out.Stats = []int{sum, countOf(col.Name)}
		case "variance", "stddev", "var_pop", "stddev_pop":
			sq := stat(Stat{Kind: StatSumSq, Column: col.Name, Linf: float64(dp.Linf) * math.Ceil(maxAbs/gran) * math.Ceil(maxAbs/gran), Scale: gran * gran})
			out.Stats = []int{sum, sq, countOf(col.Name)}
		}
		dp.Outputs = append(dp.Outputs, out)
	}
	for _, o := range q.OrderBy {
		idx := -1
		for i, it := range q.Items {
			if exprEqual(it.Expr, o.Expr) {
				idx = i
				break
			}
		}
		if idx < 0 {
			return nil, ruleErr("dp.order_by", "ORDER BY must name an output column")
		}
		dp.OrderBy = append(dp.OrderBy, DPOrder{Output: idx, Desc: o.Desc})
	}
	// Public group keys release every combination without selection.
	if len(q.GroupBy) > 0 && len(r.PublicGroups) > 0 {
		pub := make([][]string, len(q.GroupBy))
		all := true
		for i, k := range q.GroupBy {
			col, ok := k.(*Col)
			if !ok || col.Origin == nil || len(r.PublicGroups[col.Origin.Column.Name]) == 0 {
				all = false
				break
			}
			pub[i] = r.PublicGroups[col.Origin.Column.Name]
		}
		if all {
			dp.Public = pub
		}
	}
	plan.SQL = p.dpSQL(src, g, q.Where, q.GroupBy, dp, seed)
	for _, qt := range dp.Quantiles {
		// Each statement has its own bind parameters.
		qp := p
		qp.args = &[]any{}
		dp.QuantileSQL = append(dp.QuantileSQL, qp.dpQuantileSQL(src, g, q.Where, q.GroupBy, dp, seed, qt))
		dp.QuantileArgs = append(dp.QuantileArgs, *qp.args)
	}
	plan.DP = dp
	for _, o := range dp.Outputs {
		plan.Columns = append(plan.Columns, o.Name)
		switch {
		case o.Key >= 0:
			plan.Types = append(plan.Types, describedType(exprType(q.GroupBy[o.Key], grants)))
		case o.Agg == "count" || o.Agg == "count_distinct":
			plan.Types = append(plan.Types, "integer")
		default:
			plan.Types = append(plan.Types, "double")
		}
	}
	return plan, nil
}

func keyIndex(e Expr, keys []Expr) int {
	for i, k := range keys {
		if exprEqual(e, k) {
			return i
		}
	}
	return -1
}

// aggregateDP checks an aggregate under the DP rule's column roles.
func (c *aggChecker) aggregateDP(f *Func) error {
	if RawValueAggregates[f.Name] && f.Name != "median" && f.Name != "percentile_cont" {
		for _, a := range f.Args {
			for _, o := range origins(a) {
				if o.Column.Class != workspace.ClassAttribute {
					return ruleErr("aggregation.raw_value", "%s returns an input value and is never allowed on %s column %s.%s", f.Name, o.Column.Class, o.Scan.Dataset.Name, o.Column.Name)
				}
			}
		}
	}
	if !dpAggs[f.Name] {
		return ruleErr("dp.function", "%s is not available under differential privacy", f.Name)
	}
	if f.Star {
		return c.aggregate(f)
	}
	if len(f.Args) != 1 {
		return ruleErr("dp.function", "%s is not available under differential privacy", f.Name)
	}
	col, ok := f.Args[0].(*Col)
	if !ok || col.Origin == nil {
		return ruleErr("aggregation.argument", "aggregate arguments must be plain columns, e.g. %s(cost)", f.Name)
	}
	g := c.grantOf(col.Origin)
	name := col.Origin.Column.Name
	want := f.Name
	switch want {
	case "var_pop":
		want = "variance"
	case "stddev_pop":
		want = "stddev"
	}
	if !contains(g.Rule.Aggregates[name], want) {
		return ruleErr("aggregation.function", "%s(%s.%s) is not allowed by the agreement", f.Name, col.Origin.Scan.Dataset.Name, name)
	}
	return nil
}

// dpSQL writes the bounded-contribution query. One engine statement; only
// one row per group reaches Go:
//
//	__t    the grant's rows after WHERE: unit, group keys, summed columns
//	__kept at most L0 groups per unit, chosen by a hash seeded per query
//	__pu   per unit and group: row count and clamped sums
//	final  per group: totals with each unit's row count capped at L∞
//
// DuckDB drops the groups a unit may not keep before grouping by unit and
// group, so the costly (unit, group) aggregation sees only kept rows; see
// l0Filter. PostgreSQL samples after that aggregation (l0Sample).
func (p Planner) dpSQL(src *Source, g *Grant, where Expr, keys []Expr, dp *DPPlan, seed uint64) string {
	m := src.Dataset
	alias := QuoteIdent(src.Alias)
	// __t carries the raw columns; clamping and fixed-point conversion run
	// in __pu, on kept rows only.
	// SQL NULL semantics: a NULL value is not a row of that column. Its
	// sum skips it (GREATEST and LEAST would otherwise turn NULL into the
	// lower bound) and COUNT(col) does not count it.
	var cols []string
	perUnit := map[int][]string{} // stat -> its per-unit aggregates in __pu
	for i, s := range dp.Stats {
		if s.Column == "" {
			continue
		}
		c := QuoteIdent("__c" + strconv.Itoa(i))
		cols = append(cols, alias+"."+QuoteIdent(s.Column)+" AS "+c)
		si, ni := QuoteIdent("__s"+strconv.Itoa(i)), QuoteIdent("__n"+strconv.Itoa(i))
		if s.Kind == StatCount {
			perUnit[i] = []string{"COUNT(" + c + ") AS " + si}
			continue
		}
		lo, hi := boundsOf(m, s.Column)
		clamped := fmt.Sprintf("LEAST(GREATEST(%s, %s), %s)", c, num(lo), num(hi))
		fixed := func(gran float64) string {
			return "CAST(round(" + clamped + " / " + strconv.FormatFloat(gran, 'g', -1, 64) + ") AS BIGINT)"
		}
		e := fixed(s.Scale)
		if s.Kind == StatSumSq {
			e = fixed(math.Sqrt(s.Scale)) + " * " + fixed(math.Sqrt(s.Scale))
		}
		perUnit[i] = []string{"SUM(CASE WHEN " + c + " IS NOT NULL THEN " + e + " END) AS " + si, "COUNT(" + c + ") AS " + ni}
	}
	kq := keyNames(len(keys))
	var b strings.Builder
	w := func(s ...string) {
		for _, x := range s {
			b.WriteString(x)
		}
	}
	w("WITH ", p.dpRows(src, g, where, keys, seed, cols))
	rows := "__t"
	if len(keys) > 0 && p.Dialect == DuckDB {
		w(p.l0Filter(dp.L0))
		rows = "__kept"
	}
	w(", __pu AS (SELECT __unit")
	for _, k := range kq {
		w(", ", k)
	}
	w(", COUNT(*) AS __rows")
	for i := range dp.Stats {
		for _, e := range perUnit[i] {
			w(", ", e)
		}
	}
	w(" FROM ", rows, " GROUP BY __unit")
	for _, k := range kq {
		w(", ", k)
	}
	w(")")
	from := "__pu"
	if len(keys) > 0 && p.Dialect != DuckDB {
		w(p.l0Sample(len(keys), dp.L0, seed))
		from = "__b"
	}
	w(" SELECT ")
	for _, k := range kq {
		w(k, ", ")
	}
	for i, s := range dp.Stats {
		if i > 0 {
			w(", ")
		}
		switch s.Kind {
		case StatUnits:
			w("COUNT(*)")
		case StatCount:
			rows := "__rows"
			if s.Column != "" {
				rows = QuoteIdent("__s" + strconv.Itoa(i))
			}
			w("SUM(LEAST(", rows, ", ", strconv.Itoa(dp.Linf), "))")
		case StatSum, StatSumSq:
			// One bounding for every statistic of a group: the count takes at
			// most L∞ of a unit's rows, so the sum takes the unit's mean times
			// that many rows (the expected sum of L∞ rows drawn from them).
			// Summing all rows instead made AVG about twice too high.
			lim := strconv.FormatFloat(s.Linf, 'f', 0, 64)
			lower := "-" + lim
			if s.Kind == StatSumSq || boundsNonNeg(m, s.Column) {
				lower = "0"
			}
			si, ni := QuoteIdent("__s"+strconv.Itoa(i)), QuoteIdent("__n"+strconv.Itoa(i))
			scaled := "CAST(round(COALESCE(" + si + ", 0) * LEAST(" + ni + ", " + strconv.Itoa(dp.Linf) + ") / GREATEST(" + ni + ", 1)) AS BIGINT)"
			w("SUM(LEAST(GREATEST(", scaled, ", ", lower, "), ", lim, "))")
		}
		w(" AS ", QuoteIdent("__t"+strconv.Itoa(i)))
	}
	w(" FROM ", from)
	if len(keys) > 0 {
		if p.Dialect == DuckDB {
			w(" WHERE ", l0Exact("__pu", dp.L0))
		}
		w(" GROUP BY ", strings.Join(kq, ", "))
	}
	return b.String()
}

func keyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = QuoteIdent("__k" + strconv.Itoa(i))
	}
	return out
}

// dpRows writes the CTE __t: the rows the grant and WHERE admit, as
// (__unit, __k0.., extra...). In DuckDB __unit is the dense surrogate
// UnitIDColumn and __h the seeded hash of (unit, keys) that ranks a unit's
// groups; __t is inlined at each use (NOT MATERIALIZED): rescanning the
// table is cheaper than the copy DuckDB would otherwise materialize for a
// CTE used more than once.
func (p Planner) dpRows(src *Source, g *Grant, where Expr, keyExprs []Expr, seed uint64, extra []string) string {
	keys := make([]string, len(keyExprs))
	for i, k := range keyExprs {
		kg := &gen{d: p.Dialect, bind: p.bind}
		kg.expr(k)
		keys[i] = kg.b.String()
	}
	alias := QuoteIdent(src.Alias)
	unit := alias + "." + QuoteIdent(src.Dataset.PrivacyUnit)
	var hidden []string
	if p.Dialect == DuckDB {
		unit = alias + "." + QuoteIdent(UnitIDColumn)
		hidden = []string{QuoteIdent(UnitIDColumn)}
	}
	var b strings.Builder
	b.WriteString("__t AS ")
	if p.Dialect == DuckDB {
		b.WriteString("NOT MATERIALIZED ")
	}
	b.WriteString("(SELECT " + unit + " AS __unit")
	for i, name := range keyNames(len(keys)) {
		b.WriteString(", " + keys[i] + " AS " + name)
	}
	if p.Dialect == DuckDB {
		b.WriteString(", " + duckHash(append([]string{unit}, keys...), seed) + " AS __h")
	}
	for _, e := range extra {
		b.WriteString(", " + e)
	}
	b.WriteString(" FROM " + p.scanSQL(src, g, hidden...))
	if where != nil {
		fg := &gen{d: p.Dialect, bind: p.bind}
		fg.expr(where)
		b.WriteString(" WHERE " + fg.b.String())
	}
	b.WriteString(")")
	return b.String()
}

// duckHash is a seeded 64-bit hash of a tuple in DuckDB. DuckDB's own
// hash(x, ..., seed) folds the seed in last by XOR, so the order it puts a
// unit's groups in barely depends on the seed (one of three groups came
// first half the time); hashing the XOR again mixes the seed into every bit.
func duckHash(args []string, seed uint64) string {
	return "hash(xor(hash(" + strings.Join(args, ", ") + "), " + strconv.FormatUint(seed, 10) + "::UBIGINT))"
}

// pgHash is PostgreSQL's seeded 64-bit hash of a tuple: hashtextextended
// over the values' text joined by '|', much cheaper than md5.
func pgHash(args []string, seed int64) string {
	var parts []string
	for _, a := range args {
		parts = append(parts, "COALESCE(CAST("+a+" AS text), '')")
	}
	return "hashtextextended(" + strings.Join(parts, " || '|' || ") + ", " + strconv.FormatInt(seed, 10) + ")"
}

// l0RoundsMax is the largest L0 for which l0Filter finds each unit's
// threshold by repeated minimums; each round costs one scan and one join,
// so above it one pass over the distinct (unit, group) hashes with a
// bottom-L0 list is cheaper (measured in docs/benchmarks.md).
const l0RoundsMax = 8

// l0Filter writes, for DuckDB, the CTEs that reduce __t to __kept: the rows
// of each unit's L0 groups with the smallest seeded hash __h. __thr holds
// the L0-th smallest distinct __h of every unit with more than L0 groups;
// units absent from it keep every row. Both ways of computing __thr give
// the same set, so the quantile pass (which uses the same text and seed)
// keeps exactly the groups the main pass kept.
//
// Two groups of one unit with equal hashes would both pass a threshold.
// That is not only chance: DuckDB's string hash collides for strings found
// in seconds, the seed does not change which hashes are equal, and an
// analyst can map groups to such strings with CASE. So __kept may hold more
// than L0 groups of a unit; l0Exact drops such units.
func (p Planner) l0Filter(l0 int) string {
	var b strings.Builder
	if l0 <= l0RoundsMax {
		// Round i: the smallest hash above round i-1's. A unit with fewer
		// than i groups drops out of round i, hence out of __thr.
		b.WriteString(", __r1 AS NOT MATERIALIZED (SELECT __unit, min(__h) AS __m FROM __t GROUP BY __unit)")
		for i := 2; i <= l0; i++ {
			prev, cur := "__r"+strconv.Itoa(i-1), "__r"+strconv.Itoa(i)
			b.WriteString(", " + cur + " AS NOT MATERIALIZED (SELECT __t.__unit, min(__t.__h) AS __m FROM __t JOIN " + prev +
				" ON __t.__unit = " + prev + ".__unit WHERE __t.__h > " + prev + ".__m GROUP BY __t.__unit)")
		}
		// A unit with exactly L0 groups has __m = its largest hash: all kept.
		b.WriteString(", __thr AS (SELECT * FROM __r" + strconv.Itoa(l0) + ")")
	} else {
		n := strconv.Itoa(l0)
		b.WriteString(", __thr AS (SELECT __unit, list_last(min(__h, " + n + ")) AS __m FROM (SELECT DISTINCT __unit, __h FROM __t) AS __d GROUP BY __unit HAVING count(*) > " + n + ")")
	}
	b.WriteString(", __kept AS NOT MATERIALIZED (SELECT __t.* FROM __t LEFT JOIN __thr ON __t.__unit = __thr.__unit WHERE __thr.__m IS NULL OR __t.__h <= __thr.__m)")
	return b.String()
}

// l0Exact is the condition, on rows of rel(__unit, ...) with one row per
// kept (unit, group), that drops every unit with more than l0 of them. Only
// a hash tie in l0Filter produces such a unit; it then contributes to no
// group at all, which keeps the bound exact. The main and quantile passes
// apply it to the same __kept rows, so they drop the same units. (NOT IN
// is safe here: the surrogate __unit is never NULL.)
func l0Exact(rel string, l0 int) string {
	return "__unit NOT IN (SELECT __unit FROM " + rel + " GROUP BY __unit HAVING count(*) > " + strconv.Itoa(l0) + ")"
}

// l0Sample writes, for PostgreSQL, the CTE __b: at most l0 rows per unit of
// __pu(__unit, __k0, ...), ranked by a hash seeded per query.
// The keys break hash ties, so both passes rank a unit's groups alike.
func (p Planner) l0Sample(nkeys, l0 int, seed uint64) string {
	keys := keyNames(nkeys)
	h := pgHash(append([]string{"__unit"}, keys...), int64(seed>>1))
	return ", __b AS (SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY __unit ORDER BY " + strings.Join(append([]string{h}, keys...), ", ") +
		") AS __rn FROM __pu) AS __r WHERE __rn <= " + strconv.Itoa(l0) + ")"
}

// dpQuantileSQL writes the quantile pass: per group, the histogram over
// QuantileBins bins of the clamped column, where each unit keeps the same
// L0 groups as in the main pass and at most L∞ rows per group (chosen by a
// seeded hash of the row's unit, keys and value).
func (p Planner) dpQuantileSQL(src *Source, g *Grant, where Expr, keys []Expr, dp *DPPlan, seed uint64, qt Quantile) string {
	width := (qt.Upper - qt.Lower) / QuantileBins
	clamped := fmt.Sprintf("LEAST(GREATEST(__c, %s), %s)", num(qt.Lower), num(qt.Upper))
	bin := fmt.Sprintf("LEAST(%d, CAST(floor((%s - %s) / %s) AS BIGINT))", QuantileBins-1, clamped, num(qt.Lower), num(width))
	extra := []string{QuoteIdent(src.Alias) + "." + QuoteIdent(qt.Column) + " AS __c"}
	kq := keyNames(len(keys))
	partition := strings.Join(append([]string{"__unit"}, kq...), ", ")
	var b strings.Builder
	b.WriteString("WITH " + p.dpRows(src, g, where, keys, seed, extra))
	rows := "__t"
	if len(keys) > 0 {
		if p.Dialect == DuckDB {
			b.WriteString(p.l0Filter(dp.L0))
			rows = "__kept"
		} else {
			b.WriteString(", __pu AS (SELECT " + partition + " FROM __t GROUP BY " + partition + ")")
			b.WriteString(p.l0Sample(len(keys), dp.L0, seed))
			// "=" on the unit keeps this a hash join in PostgreSQL (IS NOT
			// DISTINCT FROM is not hashable); rows with a NULL unit, which
			// validation flags, then stay out of the histogram.
			b.WriteString(", __tk AS (SELECT __t.* FROM __t JOIN __b ON __t.__unit = __b.__unit")
			for _, k := range kq {
				b.WriteString(" AND __t." + k + " IS NOT DISTINCT FROM __b." + k)
			}
			b.WriteString(")")
			rows = "__tk"
		}
	}
	// The row hash ranks a group's rows for the L∞ cap.
	var rowHash string
	if p.Dialect == DuckDB {
		rowHash = duckHash(append(append([]string{"__unit"}, kq...), "__c"), seed)
	} else {
		rowHash = pgHash(append(append([]string{"__unit"}, kq...), "__c"), int64(seed>>2))
	}
	sel := append(append([]string{}, kq...), "CASE WHEN __c IS NULL THEN NULL ELSE "+bin+" END AS __bin",
		"row_number() OVER (PARTITION BY "+partition+" ORDER BY "+rowHash+") AS __r")
	b.WriteString(", __rows AS (SELECT __unit, " + strings.Join(sel, ", ") + " FROM " + rows + ")")
	group := strings.Join(append(append([]string{}, kq...), "__bin"), ", ")
	b.WriteString(" SELECT " + group + ", count(*) FROM __rows WHERE __r <= " + strconv.Itoa(dp.Linf) + " AND __bin IS NOT NULL")
	if len(keys) > 0 && p.Dialect == DuckDB {
		// __r = 1 is one row per kept (unit, group), as __pu is in the main pass.
		b.WriteString(" AND " + l0Exact("(SELECT __unit FROM __rows WHERE __r = 1) AS __g", dp.L0))
	}
	b.WriteString(" GROUP BY " + group)
	return b.String()
}

func boundsOf(m *workspace.Manifest, col string) (float64, float64) {
	for _, c := range m.Columns {
		if c.Name == col && len(c.Bounds) == 2 {
			return c.Bounds[0], c.Bounds[1]
		}
	}
	return 0, 0
}

func boundsNonNeg(m *workspace.Manifest, col string) bool {
	lo, _ := boundsOf(m, col)
	return lo >= 0
}

func num(f float64) string { return "(" + strconv.FormatFloat(f, 'g', -1, 64) + ")" }

// exprEqual compares two expressions structurally.
func exprEqual(a, b Expr) bool {
	switch x := a.(type) {
	case *Col:
		y, ok := b.(*Col)
		return ok && x.Source == y.Source && x.Name == y.Name
	case *Lit:
		y, ok := b.(*Lit)
		return ok && *x == *y
	case *Op:
		y, ok := b.(*Op)
		return ok && x.Op == y.Op && exprEqual(x.L, y.L) && exprEqual(x.R, y.R)
	case *Func:
		y, ok := b.(*Func)
		if !ok || x.Name != y.Name || x.Star != y.Star || x.Distinct != y.Distinct || len(x.Args) != len(y.Args) || x.Fraction != y.Fraction {
			return false
		}
		for i := range x.Args {
			if !exprEqual(x.Args[i], y.Args[i]) {
				return false
			}
		}
		return true
	case *Cast:
		y, ok := b.(*Cast)
		return ok && x.Type == y.Type && exprEqual(x.X, y.X)
	case *Neg:
		y, ok := b.(*Neg)
		return ok && exprEqual(x.X, y.X)
	case *Not:
		y, ok := b.(*Not)
		return ok && exprEqual(x.X, y.X)
	}
	return a == b
}
