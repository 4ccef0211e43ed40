package query

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/airlock-dev/airlock/internal/workspace"
)

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
	Column string // for sums
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
	keySQL := make([]string, len(q.GroupBy))
	fg := &gen{d: p.Dialect}
	for i, k := range q.GroupBy {
		if err := c.expr(k, ctxGroup, true); err != nil {
			return nil, err
		}
		if HasAggregate(k) {
			return nil, ruleErr("dp.shape", "GROUP BY cannot contain an aggregate")
		}
		fg.b.Reset()
		fg.expr(k)
		keySQL[i] = fg.b.String()
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
				out.Stats = []int{count()} // COUNT(col): rows, nulls included (bounded like COUNT(*))
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
			out.Stats = []int{sum, count()}
		case "variance", "stddev", "var_pop", "stddev_pop":
			sq := stat(Stat{Kind: StatSumSq, Column: col.Name, Linf: float64(dp.Linf) * math.Ceil(maxAbs/gran) * math.Ceil(maxAbs/gran), Scale: gran * gran})
			out.Stats = []int{sum, sq, count()}
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
	plan.SQL = p.dpSQL(src, g, q.Where, keySQL, dp, seed)
	for _, qt := range dp.Quantiles {
		dp.QuantileSQL = append(dp.QuantileSQL, p.dpQuantileSQL(src, g, q.Where, keySQL, dp, seed, qt))
	}
	plan.DP = dp
	for _, o := range dp.Outputs {
		plan.Columns = append(plan.Columns, o.Name)
		switch {
		case o.Key >= 0:
			plan.Types = append(plan.Types, exprType(q.GroupBy[o.Key], grants))
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

// dpSQL writes the bounded-contribution query: per (unit, group)
// pre-aggregation with clamped fixed-point sums, at most L0 groups per unit
// chosen by a seeded hash, then per-group totals. One engine pass; only one
// row per group reaches Go.
func (p Planner) dpSQL(src *Source, g *Grant, where Expr, keys []string, dp *DPPlan, seed uint64) string {
	m := src.Dataset
	unit := QuoteIdent(src.Alias) + "." + QuoteIdent(m.PrivacyUnit)
	var b strings.Builder
	w := func(s ...string) {
		for _, x := range s {
			b.WriteString(x)
		}
	}
	// Stage 1: per unit and group.
	w("WITH __pu AS (SELECT ", unit, " AS __unit")
	for i, k := range keys {
		w(", ", k, " AS ", QuoteIdent("__k"+strconv.Itoa(i)))
	}
	w(", COUNT(*) AS __rows")
	for i, s := range dp.Stats {
		col := QuoteIdent(src.Alias) + "." + QuoteIdent(s.Column)
		gran := strconv.FormatFloat(s.Scale, 'g', -1, 64)
		lo, hi := boundsOf(m, s.Column)
		clamped := fmt.Sprintf("LEAST(GREATEST(%s, %s), %s)", col, num(lo), num(hi))
		switch s.Kind {
		case StatSum:
			w(", SUM(CAST(round(", clamped, " / ", gran, ") AS BIGINT)) AS ", QuoteIdent("__s"+strconv.Itoa(i)))
		case StatSumSq:
			g1 := strconv.FormatFloat(math.Sqrt(s.Scale), 'g', -1, 64)
			w(", SUM(CAST(round(", clamped, " / ", g1, ") AS BIGINT) * CAST(round(", clamped, " / ", g1, ") AS BIGINT)) AS ", QuoteIdent("__s"+strconv.Itoa(i)))
		}
	}
	w(" FROM ", p.scanSQL(src, g))
	if where != nil {
		fg := &gen{d: p.Dialect}
		fg.expr(where)
		w(" WHERE ", fg.b.String())
	}
	w(" GROUP BY ", unit)
	for _, k := range keys {
		w(", ", k)
	}
	w(")")
	// Stage 2: at most L0 groups per unit. Skipped when there are no
	// groups (each unit is then in exactly one group).
	from := "__pu"
	if len(keys) > 0 {
		w(p.l0Stage(len(keys), dp.L0, seed))
		from = "__b"
	}
	// Stage 3: per group, bounded totals.
	w(" SELECT ")
	for i := range keys {
		w(QuoteIdent("__k"+strconv.Itoa(i)), ", ")
	}
	for i, s := range dp.Stats {
		if i > 0 {
			w(", ")
		}
		switch s.Kind {
		case StatUnits:
			w("COUNT(*)")
		case StatCount:
			w("SUM(LEAST(__rows, ", strconv.Itoa(dp.Linf), "))")
		case StatSum, StatSumSq:
			lim := strconv.FormatFloat(s.Linf, 'f', 0, 64)
			lower := "-" + lim
			if s.Kind == StatSumSq || boundsNonNeg(m, s.Column) {
				lower = "0"
			}
			w("SUM(LEAST(GREATEST(", QuoteIdent("__s"+strconv.Itoa(i)), ", ", lower, "), ", lim, "))")
		}
		w(" AS ", QuoteIdent("__t"+strconv.Itoa(i)))
	}
	w(" FROM ", from)
	if len(keys) > 0 {
		w(" GROUP BY ")
		for i := range keys {
			if i > 0 {
				w(", ")
			}
			w(QuoteIdent("__k" + strconv.Itoa(i)))
		}
	}
	return b.String()
}

// l0Stage writes the CTEs that keep at most l0 of each unit's groups from
// __pu(__unit, __k0, ...) into __b, chosen by a hash seeded per query. The
// quantile pass uses the same text and seed, so it keeps the same groups.
func (p Planner) l0Stage(nkeys, l0 int, seed uint64) string {
	hashArgs := []string{"__unit"}
	for i := 0; i < nkeys; i++ {
		hashArgs = append(hashArgs, QuoteIdent("__k"+strconv.Itoa(i)))
	}
	n := strconv.Itoa(l0)
	if p.Dialect == Postgres {
		var parts []string
		for _, a := range hashArgs {
			parts = append(parts, "COALESCE(CAST("+a+" AS text), '')")
		}
		// hashtextextended is PostgreSQL's seeded 64-bit text hash, much
		// cheaper than md5 for ranking a unit's groups.
		h := "hashtextextended(" + strings.Join(parts, " || '|' || ") + ", " + strconv.FormatInt(int64(seed>>1), 10) + ")"
		return ", __b AS (SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY __unit ORDER BY " + h + ") AS __rn FROM __pu) AS __r WHERE __rn <= " + n + ")"
	}
	// Bottom-L0 by a seeded hash without a sort: each unit's L0-th smallest
	// hash is its threshold; units already within L0 keep everything.
	// Faster in DuckDB than row_number() (see docs/benchmarks.md). A 64-bit
	// hash tie at the threshold inside one unit (probability below 2^-50
	// per query for units with up to ~1000 groups, seed unknown to the
	// analyst) could keep one extra group; that is accounted as part of δ.
	h := func(prefix string) string {
		var args []string
		for _, a := range hashArgs {
			args = append(args, prefix+a)
		}
		return "hash(" + strings.Join(args, ", ") + ", " + strconv.FormatUint(seed, 10) + "::UBIGINT)"
	}
	return ", __kk AS (SELECT __unit, count(*) AS __ng, list_last(min(" + h("") + ", " + n + ")) AS __thr FROM __pu GROUP BY __unit)" +
		", __b AS (SELECT __pu.* FROM __pu JOIN __kk ON __pu.__unit = __kk.__unit WHERE __kk.__ng <= " + n + " OR " + h("__pu.") + " <= __kk.__thr)"
}

// dpQuantileSQL writes the quantile pass: per group, the histogram over
// QuantileBins bins of the clamped column, where each unit keeps the same
// L0 groups as in the main pass and at most L∞ rows per group (chosen by a
// seeded hash).
func (p Planner) dpQuantileSQL(src *Source, g *Grant, where Expr, keys []string, dp *DPPlan, seed uint64, qt Quantile) string {
	m := src.Dataset
	unit := QuoteIdent(src.Alias) + "." + QuoteIdent(m.PrivacyUnit)
	col := QuoteIdent(src.Alias) + "." + QuoteIdent(qt.Column)
	width := (qt.Upper - qt.Lower) / QuantileBins
	clamped := fmt.Sprintf("LEAST(GREATEST(%s, %s), %s)", col, num(qt.Lower), num(qt.Upper))
	bin := fmt.Sprintf("LEAST(%d, CAST(floor((%s - %s) / %s) AS BIGINT))", QuantileBins-1, clamped, num(qt.Lower), num(width))
	var kcols, kparts []string
	for i, k := range keys {
		kcols = append(kcols, k+" AS "+QuoteIdent("__k"+strconv.Itoa(i)))
		kparts = append(kparts, k)
	}
	rowHash := "hash(" + strings.Join(append(append([]string{unit}, kparts...), col), ", ") + ", " + strconv.FormatUint(seed, 10) + "::UBIGINT)"
	if p.Dialect == Postgres {
		var parts []string
		for _, a := range append(append([]string{unit}, kparts...), col) {
			parts = append(parts, "COALESCE(CAST("+a+" AS text), '')")
		}
		rowHash = "hashtextextended(" + strings.Join(parts, " || '|' || ") + ", " + strconv.FormatInt(int64(seed>>2), 10) + ")"
	}
	var b strings.Builder
	b.WriteString("WITH __rows AS (SELECT " + unit + " AS __unit")
	for _, kc := range kcols {
		b.WriteString(", " + kc)
	}
	b.WriteString(", CASE WHEN " + col + " IS NULL THEN NULL ELSE " + bin + " END AS __bin")
	b.WriteString(", row_number() OVER (PARTITION BY " + strings.Join(append([]string{unit}, kparts...), ", ") + " ORDER BY " + rowHash + ") AS __r")
	b.WriteString(" FROM " + p.scanSQL(src, g))
	if where != nil {
		fg := &gen{d: p.Dialect}
		fg.expr(where)
		b.WriteString(" WHERE " + fg.b.String())
	}
	b.WriteString("), __pu AS (SELECT __unit")
	var kq []string
	for i := range keys {
		kq = append(kq, QuoteIdent("__k"+strconv.Itoa(i)))
	}
	for _, k := range kq {
		b.WriteString(", " + k)
	}
	b.WriteString(" FROM __rows GROUP BY __unit")
	for _, k := range kq {
		b.WriteString(", " + k)
	}
	b.WriteString(")")
	from := "__pu"
	if len(keys) > 0 {
		b.WriteString(p.l0Stage(len(keys), dp.L0, seed))
		from = "__b"
	}
	b.WriteString(" SELECT ")
	for _, k := range kq {
		b.WriteString("__rows." + k + ", ")
	}
	b.WriteString("__rows.__bin, count(*) FROM __rows JOIN " + from + " AS __s ON __rows.__unit = __s.__unit")
	for _, k := range kq {
		b.WriteString(" AND __rows." + k + " IS NOT DISTINCT FROM __s." + k)
	}
	b.WriteString(" WHERE __rows.__r <= " + strconv.Itoa(dp.Linf) + " AND __rows.__bin IS NOT NULL GROUP BY ")
	for _, k := range kq {
		b.WriteString("__rows." + k + ", ")
	}
	b.WriteString("__rows.__bin")
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
