package query

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/workspace"
)

func ruleErr(rule, format string, args ...any) error {
	return refusal.New(refusal.AnalysisRule, rule, format, args...)
}

// unitRef is a distinct-unit counter the planner threads through derived
// tables up to the top block.
type unitRef struct {
	scan   *Source
	sql    string   // the unit column as visible in the current block
	sketch []string // the scan's sketch columns (engine.SketchColumns), likewise
}

// aggregation plans a query under at least one aggregation rule, in the
// manner of AWS Clean Rooms' aggregation analysis rule: columns have roles
// (dimension, join, aggregate), derived tables may only filter and project,
// and every output row must cover at least MinUnits distinct privacy units
// of every governed dataset, or it is suppressed.
func (p Planner) aggregation(q *Select, grants map[string]*Grant, scans []*Source, plan *Plan) (*Plan, error) {
	if len(q.GroupBy) == 0 && !itemsAggregate(q.Items) {
		return nil, ruleErr("aggregation.required", "this agreement answers only aggregate queries (GROUP BY with COUNT, SUM, AVG, ...)")
	}
	c := &aggChecker{grants: grants}
	if err := c.block(q, true); err != nil {
		return nil, err
	}
	units := map[*Select][]unitRef{}
	var unitsOf func(b *Select) []unitRef
	unitsOf = func(b *Select) []unitRef {
		if u, ok := units[b]; ok {
			return u
		}
		var out []unitRef
		for _, s := range b.From {
			if s.Dataset != nil {
				if g := grants[s.Dataset.Name]; g.Access == AccessAggregation {
					ref := unitRef{scan: s, sql: QuoteIdent(s.Alias) + "." + QuoteIdent(s.Dataset.PrivacyUnit)}
					for _, c := range engine.SketchColumns {
						ref.sketch = append(ref.sketch, QuoteIdent(s.Alias)+"."+QuoteIdent(c))
					}
					out = append(out, ref)
				}
				continue
			}
			for k, u := range unitsOf(s.Sub) {
				ref := unitRef{scan: u.scan, sql: QuoteIdent(s.Alias) + "." + QuoteIdent(hiddenUnit(k))}
				for j := range u.sketch {
					ref.sketch = append(ref.sketch, QuoteIdent(s.Alias)+"."+QuoteIdent(hiddenSketch(k, j)))
				}
				out = append(out, ref)
			}
		}
		units[b] = out
		return out
	}
	derivedExtra := derivedHidden(unitsOf, false)
	g := p.newGen(grants, derivedExtra)
	top := unitsOf(q)
	var extra []string
	for k, u := range top {
		extra = append(extra, "COUNT(DISTINCT "+u.sql+") AS "+QuoteIdent("__n"+strconv.Itoa(k)))
		plan.UnitColumns = append(plan.UnitColumns, len(visibleNames(q.Items))+k)
		min := grants[u.scan.Dataset.Name].Rule.MinUnits
		if min < 1 {
			min = 1
		}
		plan.MinUnits = append(plan.MinUnits, min)
	}
	// The threshold is part of HAVING, and the analyst's HAVING is
	// evaluated only on groups that meet it (CASE evaluates lazily), so no
	// condition, error or count ever reads a group that is withheld. Go
	// checks the counts again on the small result.
	var met []string
	for k := range top {
		met = append(met, "COUNT(DISTINCT "+top[k].sql+") >= "+strconv.Itoa(plan.MinUnits[k]))
	}
	having := q.Having
	plan.HavingColumn = -1
	havingSQL := ""
	if len(met) > 0 {
		cond := &Raw{SQL: map[string]string{string(DuckDB): strings.Join(met, " AND "), string(Postgres): strings.Join(met, " AND ")}}
		switch {
		case having == nil:
			q.Having = cond
		case wantSketches(top, grants):
			// Every group that meets the threshold is a cell the
			// differencing check compares, whether or not the analyst's
			// HAVING (or LIMIT) releases it: otherwise whether a query
			// is refused would tell whether a HAVING on the hidden
			// values held. The HAVING is a hidden column, evaluated (as
			// below) only on groups that meet the threshold; Go filters.
			q.Having = cond
			hg := p.newGen(grants, derivedExtra)
			hg.expr(&Case{Whens: []When{{Cond: cond, Then: having}}, Else: &Lit{Kind: LitBool, Value: "false"}})
			havingSQL = hg.b.String()
		default:
			q.Having = &Case{Whens: []When{{Cond: cond, Then: having}}, Else: &Lit{Kind: LitBool, Value: "false"}}
		}
	}
	// The group keys, hidden, match each output row to its sketch.
	visible := len(visibleNames(q.Items))
	if wantSketches(top, grants) {
		plan.KeyColumn = visible + len(extra)
		for i, e := range q.GroupBy {
			kg := p.newGen(grants, derivedExtra)
			kg.expr(e)
			extra = append(extra, kg.b.String()+" AS "+QuoteIdent("__k"+strconv.Itoa(i)))
		}
		plan.KeyColumns = len(q.GroupBy)
		// And each group's row count, which its sketch must match: a
		// group whose rows the sketch query splits differently (another
		// representative key, as -0.0 and 0.0 are one group) fails
		// closed instead of being compared half.
		plan.RowsColumn = visible + len(extra)
		extra = append(extra, "COUNT(*) AS "+QuoteIdent("__rows"))
	}
	if havingSQL != "" {
		plan.HavingColumn = visible + len(extra)
		extra = append(extra, havingSQL+" AS "+QuoteIdent("__having"))
	}
	// LIMIT and OFFSET count released rows, so they run after suppression.
	lim, off := q.Limit, q.Offset
	q.Limit, q.Offset = nil, nil
	restore := totalOrder(q)
	g.selectSQL(q, extra)
	restore()
	q.Limit, q.Offset = lim, off
	q.Having = having
	plan.Limit, plan.Offset = lim, off
	plan.SQL = g.b.String()
	p.sketches(q, grants, top, unitsOf, plan)
	plan.Columns = visibleNames(q.Items)
	plan.Types = itemTypes(q.Items, grants)
	return plan, nil
}

func hiddenUnit(k int) string { return "__u" + strconv.Itoa(k) }

func hiddenSketch(k, j int) string { return "__u" + strconv.Itoa(k) + "_s" + strconv.Itoa(j) }

// derivedHidden is the hidden items a derived table carries up: each
// governed scan's unit and, for a sketch query, its sketch columns.
func derivedHidden(unitsOf func(*Select) []unitRef, sketch bool) func(*Select) []string {
	return func(b *Select) []string {
		var out []string
		for k, u := range unitsOf(b) {
			out = append(out, u.sql+" AS "+QuoteIdent(hiddenUnit(k)))
			if sketch {
				for j, c := range u.sketch {
					out = append(out, c+" AS "+QuoteIdent(hiddenSketch(k, j)))
				}
			}
		}
		return out
	}
}

func wantSketches(top []unitRef, grants map[string]*Grant) bool {
	for _, u := range top {
		if grants[u.scan.Dataset.Name].SketchBuckets > 0 {
			return true
		}
	}
	return false
}

// sketches plans one sketch query per governed scan whose grant asks for
// the differencing check: the same FROM, WHERE and GROUP BY as the
// answer, grouped further by the unit's bucket, summing the rows' sketch
// columns and counting the rows (the answer's hidden __rows must match). It has no HAVING: the cells are matched to the released rows
// afterwards. Its bind parameters are its own.
func (p Planner) sketches(q *Select, grants map[string]*Grant, top []unitRef, unitsOf func(*Select) []unitRef, plan *Plan) {
	for k, u := range top {
		g := grants[u.scan.Dataset.Name]
		if g.SketchBuckets <= 0 {
			continue
		}
		sp := p
		args := []any{}
		sp.args = &args
		sg := sp.newGen(grants, derivedHidden(unitsOf, true))
		sg.scan = func(s *Source) string {
			if grants[s.Dataset.Name].Access == AccessAggregation {
				return sp.sketchScanSQL(s, grants[s.Dataset.Name])
			}
			return sp.scanSQL(s, grants[s.Dataset.Name])
		}
		bucket := "(" + u.sketch[4] + " & " + strconv.Itoa(g.SketchBuckets-1) + ")"
		sq := *q
		sq.Items = nil
		for i, e := range q.GroupBy {
			sq.Items = append(sq.Items, Item{Expr: e, Name: "__k" + strconv.Itoa(i)})
		}
		sq.GroupBy = append(slices.Clone(q.GroupBy), &Raw{SQL: map[string]string{string(DuckDB): bucket, string(Postgres): bucket}})
		sq.Having, sq.OrderBy, sq.Limit, sq.Offset, sq.Distinct = nil, nil, nil, nil, false
		extra := []string{bucket + " AS __b"}
		for j := range 4 {
			extra = append(extra, "CAST(sum("+u.sketch[j]+") % "+strconv.Itoa(1<<31-1)+" AS BIGINT) AS __s"+strconv.Itoa(j))
		}
		extra = append(extra, "COUNT(*) AS __n")
		sg.selectSQL(&sq, extra)
		plan.Sketches = append(plan.Sketches, SketchQuery{Dataset: u.scan.Dataset.Name, SQL: sg.b.String(), Args: args,
			Buckets: g.SketchBuckets, MinUnits: plan.MinUnits[k], Unit: k, Scheme: SketchScheme(p.Dialect)})
	}
}

func itemsAggregate(items []Item) bool {
	for _, it := range items {
		if HasAggregate(it.Expr) {
			return true
		}
	}
	return false
}

type aggChecker struct {
	grants map[string]*Grant
	seen   map[*Select]bool
}

func (c *aggChecker) block(q *Select, top bool) error {
	if c.seen == nil {
		c.seen = map[*Select]bool{}
	}
	if c.seen[q] {
		return nil
	}
	c.seen[q] = true
	for _, cte := range q.With {
		if err := c.block(cte.Query, false); err != nil {
			return err
		}
	}
	for _, s := range q.From {
		if s.Sub != nil {
			if err := c.block(s.Sub, false); err != nil {
				return err
			}
		}
	}
	if !top {
		if len(q.GroupBy) > 0 || q.Having != nil || itemsAggregate(q.Items) || q.Distinct {
			return ruleErr("aggregation.nested", "a subquery or CTE may only filter and project rows; aggregate once, at the top")
		}
		if q.Limit != nil || q.Offset != nil {
			return ruleErr("aggregation.subquery_limit", "LIMIT and OFFSET are only allowed on the outer query")
		}
	}
	for i, s := range q.From {
		// A join's size is a function of the data; one with no equality
		// (a cross join) can make a query run out of time only when some
		// hidden row matches, as in AWS Clean Rooms joins need one.
		if i > 0 && !hasEquiJoin(s.On) {
			return ruleErr("aggregation.join", "joins need an equality between columns of both sides (JOIN ... ON a.x = b.y); cross joins are not allowed")
		}
		// Every aggregate of an inner, left or right join is a function of
		// how often each governed row appears in the joined rows, which is
		// what the differencing check compares. A full join's row count
		// also depends on how the two sides pair (one row matched, or both
		// unmatched, leaves each side's rows alike but counts 1 or 2), so
		// two answers alike to the check could differ by one hidden row.
		if i > 0 && s.Join == JoinFull {
			return ruleErr("aggregation.join", "FULL JOIN is not allowed under an aggregation rule; use JOIN, LEFT JOIN or RIGHT JOIN")
		}
	}
	for _, ce := range blockExprs(q) {
		if err := c.expr(ce.e, ce.ctx, top); err != nil {
			return err
		}
	}
	return nil
}

// hasEquiJoin reports whether a join condition requires two columns to be
// equal (at its top level or in a conjunct).
func hasEquiJoin(on Expr) bool {
	switch x := on.(type) {
	case *Op:
		switch x.Op {
		case "AND":
			return hasEquiJoin(x.L) || hasEquiJoin(x.R)
		case "=", "IS NOT DISTINCT FROM":
			_, l := x.L.(*Col)
			_, r := x.R.(*Col)
			return l && r
		}
	}
	return false
}

// expr checks one expression and everything below it.
func (c *aggChecker) expr(e Expr, ctx exprCtx, top bool) error {
	switch x := e.(type) {
	case nil:
		return nil
	case *InSub:
		return ruleErr("aggregation.subquery_filter", "IN (subquery) and EXISTS are not allowed under an aggregation rule")
	case *Func:
		if x.Agg {
			return c.aggregate(x)
		}
	case *Col:
		return c.column(x, ctx, top)
	}
	return c.children(e, ctx, top)
}

// children checks the direct children of e.
func (c *aggChecker) children(e Expr, ctx exprCtx, top bool) error {
	var kids []Expr
	switch x := e.(type) {
	case *Op:
		kids = []Expr{x.L, x.R}
	case *Not:
		kids = []Expr{x.X}
	case *Neg:
		kids = []Expr{x.X}
	case *Func:
		kids = x.Args
	case *Cast:
		kids = []Expr{x.X}
	case *Case:
		kids = append(kids, x.Operand)
		for _, w := range x.Whens {
			kids = append(kids, w.Cond, w.Then)
		}
		kids = append(kids, x.Else)
	case *In:
		kids = append([]Expr{x.X}, x.List...)
	case *Between:
		kids = []Expr{x.X, x.Lo, x.Hi}
	case *IsNull:
		kids = []Expr{x.X}
	}
	for _, k := range kids {
		if k == nil {
			continue
		}
		if err := c.expr(k, ctx, top); err != nil {
			return err
		}
	}
	return nil
}

func (c *aggChecker) grantOf(o *Origin) *Grant { return c.grants[o.Scan.Dataset.Name] }

func (c *aggChecker) column(col *Col, ctx exprCtx, top bool) error {
	if col.Origin == nil {
		// A computed column of a derived table: everything it was built
		// from must itself be usable as a dimension.
		for _, o := range col.Derived {
			if err := c.dimension(o, ctx); err != nil {
				return err
			}
		}
		return nil
	}
	if ctx == ctxSelect && !top {
		return nil // a pass-through projection; its use is checked where it is used
	}
	return c.dimension(col.Origin, ctx)
}

func (c *aggChecker) dimension(o *Origin, ctx exprCtx) error {
	g := c.grantOf(o)
	if g.Access != AccessAggregation {
		return nil
	}
	name := o.Column.Name
	qual := o.Scan.Dataset.Name + "." + name
	if ctx == ctxJoin && setOf(g.Rule.JoinColumns)[name] {
		return nil
	}
	if o.Column.Class == workspace.ClassIdentifier {
		return ruleErr("aggregation.identifier", "identifier column %s can only be counted, never shown, filtered or grouped", qual)
	}
	if !setOf(g.Rule.Dimensions)[name] {
		where := map[exprCtx]string{ctxWhere: "WHERE", ctxGroup: "GROUP BY", ctxSelect: "the select list outside an aggregate", ctxHaving: "HAVING outside an aggregate", ctxOrder: "ORDER BY outside an aggregate", ctxJoin: "a join condition"}[ctx]
		return ruleErr("aggregation.dimension", "column %s is not a dimension of the agreement and cannot be used in %s", qual, where)
	}
	return nil
}

func (c *aggChecker) aggregate(f *Func) error {
	if f.Star {
		// COUNT(*) counts rows of the governed datasets; the rule must allow it
		// for each of them.
		for name, g := range c.grants {
			if g.Access == AccessAggregation && !contains(g.Rule.Aggregates["*"], "count") {
				return ruleErr("aggregation.function", "COUNT(*) is not allowed on %s", name)
			}
		}
		return nil
	}
	if RawValueAggregates[f.Name] {
		for _, a := range f.Args {
			for _, o := range origins(a) {
				if c.grantOf(o).Access == AccessAggregation && o.Column.Class != workspace.ClassAttribute {
					return ruleErr("aggregation.raw_value", "%s returns an input value and is never allowed on %s column %s.%s", f.Name, o.Column.Class, o.Scan.Dataset.Name, o.Column.Name)
				}
			}
		}
	}
	if len(f.Args) != 1 {
		return ruleErr("aggregation.function", "%s is not an allowed aggregate", f.Name)
	}
	col, ok := f.Args[0].(*Col)
	if !ok {
		return ruleErr("aggregation.argument", "aggregate arguments must be plain columns, e.g. %s(cost)", f.Name)
	}
	if f.Distinct && f.Name != "count" {
		return ruleErr("aggregation.function", "DISTINCT is only allowed in COUNT")
	}
	origins := col.Derived
	if col.Origin != nil {
		origins = []*Origin{col.Origin}
	} else if len(origins) > 0 {
		return ruleErr("aggregation.argument", "aggregate arguments must be plain columns, e.g. %s(cost)", f.Name)
	}
	for _, o := range origins {
		g := c.grantOf(o)
		if g.Access != AccessAggregation {
			continue
		}
		qual := o.Scan.Dataset.Name + "." + o.Column.Name
		if RawValueAggregates[f.Name] && o.Column.Class != workspace.ClassAttribute {
			return ruleErr("aggregation.raw_value", "%s returns an input value and is never allowed on %s column %s", f.Name, o.Column.Class, qual)
		}
		if !contains(g.Rule.Aggregates[o.Column.Name], f.Name) {
			return ruleErr("aggregation.function", "%s(%s) is not allowed by the agreement", f.Name, qual)
		}
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// KeyedHashSQL renders a keyed pseudonym of col: NMAC-style nested SHA-256
// with two keys derived from the agreement's key, truncated to 96 bits. The
// same value gives the same pseudonym under one agreement (so masked columns
// still join and count) and unrelated ones across agreements. Both engines
// produce identical text. bind renders a key: in PostgreSQL as a bind
// parameter, so the keys never appear in the owner's statement text, logs
// or pg_stat_statements; in the embedded DuckDB as a literal.
func KeyedHashSQL(d Dialect, key []byte, col string, bind func(string) string) string {
	k1, k2 := deriveMaskKeys(key)
	if d == Postgres {
		inner := fmt.Sprintf("encode(sha256(convert_to(CAST(%s AS text) || CAST(%s AS text), 'UTF8')), 'hex')", bind(k1), col)
		return fmt.Sprintf("substr(encode(sha256(convert_to(CAST(%s AS text) || %s, 'UTF8')), 'hex'), 1, 24)", bind(k2), inner)
	}
	inner := fmt.Sprintf("sha256(%s || CAST(%s AS VARCHAR))", bind(k1), col)
	return fmt.Sprintf("substr(sha256(%s || %s), 1, 24)", bind(k2), inner)
}
