package query

import (
	"github.com/airlock-dev/airlock/internal/engine"
	"sort"
	"strconv"
	"strings"

	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Access is how a principal may read one dataset in one request.
type Access string

// The access kinds, from most to least direct.
const (
	AccessOwner       Access = "owner"       // the owner's own staff: rows as stored
	AccessList        Access = "list"        // row level through masks and filters
	AccessAggregation Access = "aggregation" // aggregates over groups of >= MinUnits units
	AccessDP          Access = "dp"          // differentially private aggregates
)

// Grant is the resolved permission for one dataset: the access kind, the
// rule that shapes it and the row filter bound to the principal.
type Grant struct {
	Access    Access
	Rule      workspace.Rule
	RowFilter Expr   // over the dataset's columns; nil = all rows
	HMACKey   []byte // per-agreement key for hmac masks
	// Table is the engine's name for the dataset (a DuckDB table, or a
	// PostgreSQL relation for datasets governed in place).
	Table string
	// SketchBuckets, when positive, asks an aggregation plan for the
	// differencing sketches of the dataset's cells at this many buckets
	// (a power of two, package differencing).
	SketchBuckets int
}

// Plan is a governed query ready to run: engine SQL plus the output
// controls Go applies to its (small) result.
type Plan struct {
	Kind Access
	SQL  string
	// Args are SQL's bind parameters ($1, ...): in PostgreSQL, every string
	// constant and mask key.
	Args    []any
	Columns []string // visible output names
	// Types are the visible columns' manifest-style types (text, integer,
	// double, date, timestamp, boolean), for wire protocols that describe
	// results before running them.
	Types []string
	// UnitColumns are trailing hidden result columns holding the distinct
	// privacy-unit count per row, with the minimum each must reach.
	UnitColumns []int
	MinUnits    []int
	// When there are Sketches, the answer's rows also carry, hidden, the
	// group keys (KeyColumns of them from KeyColumn), which match each row
	// to its sketch, and the group's row count (RowsColumn), which the
	// sketch must match.
	KeyColumn, KeyColumns, RowsColumn int
	// HavingColumn, when not -1, is a hidden boolean column holding the
	// analyst's HAVING, which Go applies after the threshold (so that
	// every group meeting the threshold is compared by the differencing
	// check, released or not).
	HavingColumn int
	// Sketches are the differencing sketches of the answer's cells, one
	// query per governed scan (aggregation).
	Sketches []SketchQuery
	// Limit and Offset are applied in Go after suppression (aggregation).
	Limit, Offset *int64
	// MaxRows is the list rule's quota of released rows per period; the
	// engine fetches at most one more, since no answer can exceed it.
	MaxRows int
	// DP is set for a differentially private plan.
	DP *DPPlan
	// Touched lists dataset.column for every column read, sorted.
	Touched  []string
	Classes  []string
	Datasets []string
}

// SketchQuery computes, per output group, the differencing sketch of one
// governed scan's rows: its result rows are (key columns..., bucket, the
// four sums, the row count), one per group and bucket that holds rows.
type SketchQuery struct {
	Dataset  string
	SQL      string
	Args     []any
	Buckets  int
	MinUnits int
	// Unit is the index in Plan.UnitColumns of the scan's unit count.
	Unit   int
	Scheme string
}

// Planner turns IR into governed plans for one engine dialect.
type Planner struct {
	Dialect Dialect
	// Seed returns the per-query seed of DP contribution sampling.
	Seed func() uint64
	// args collects the bind parameters of one Plan call.
	args *[]any
}

// bind renders a string constant of the plan's SQL (an analyst literal, a
// row-filter value, a mask key): in PostgreSQL a bind parameter $n
// (Plan.Args), so no constant is ever parsed as SQL text in the owner's
// database or written to its statement log; in DuckDB a literal.
func (p Planner) bind(s string) string {
	if p.Dialect != Postgres || p.args == nil {
		return quoteLiteral(p.Dialect, s)
	}
	*p.args = append(*p.args, s)
	return "$" + strconv.Itoa(len(*p.args))
}

// Plan applies each dataset's grant to q and generates engine SQL. The SQL
// is total (see total.go): it cannot fail on data.
func (p Planner) Plan(q *Select, grants map[string]*Grant) (*Plan, error) {
	typeOf := func(e Expr) string { return exprType(e, grants) }
	makeConversionsExplicit(q, typeOf)
	p.args = &[]any{}
	plan, err := p.plan(q, grants)
	if err != nil {
		return nil, err
	}
	// After the analysis rules, whose refusals say more.
	if err := checkTotal(q, p.Dialect, typeOf); err != nil {
		return nil, err
	}
	plan.Args = *p.args
	size := len(plan.SQL)
	if plan.DP != nil {
		for _, s := range plan.DP.QuantileSQL {
			size += len(s)
		}
	}
	if size > MaxGeneratedSQL {
		return nil, refusal.New(refusal.TooLarge, "limit.sql_size", "the query is too complex: its safe engine form exceeds %d bytes", MaxGeneratedSQL)
	}
	return plan, nil
}

func (p Planner) plan(q *Select, grants map[string]*Grant) (*Plan, error) {
	scans := collectScans(q)
	kind := AccessOwner
	for _, s := range scans {
		g := grants[s.Dataset.Name]
		if g == nil {
			return nil, refusal.New(refusal.Forbidden, "agreement.dataset", "no grant covers dataset %q", s.Dataset.Name)
		}
		kind = stricter(kind, g.Access)
	}
	plan := &Plan{Kind: kind, HavingColumn: -1}
	plan.Touched, plan.Classes, plan.Datasets = touched(q)
	for _, s := range scans {
		g := grants[s.Dataset.Name]
		if g.Access == AccessList && len(g.Rule.Columns) > 0 {
			// The catalog view already hides unlisted columns; this is the
			// second line of defence.
			allowed := setOf(g.Rule.Columns)
			if err := eachOrigin(q, func(o *Origin, _ exprCtx) error {
				if o.Scan == s && !allowed[o.Column.Name] {
					return refusal.New(refusal.AnalysisRule, "list.columns", "column %s.%s is not exposed by the agreement", s.Dataset.Name, o.Column.Name)
				}
				return nil
			}); err != nil {
				return nil, err
			}
		}
	}
	switch kind {
	case AccessDP:
		var seed uint64
		if p.Seed != nil {
			seed = p.Seed()
		}
		return p.dp(q, grants, scans, plan, seed)
	case AccessAggregation:
		return p.aggregation(q, grants, scans, plan)
	case AccessList:
		maxRows := 0
		for _, s := range scans {
			if g := grants[s.Dataset.Name]; g.Access == AccessList && g.Rule.MaxRows > 0 && (maxRows == 0 || g.Rule.MaxRows < maxRows) {
				maxRows = g.Rule.MaxRows
			}
		}
		plan.MaxRows = maxRows
	}
	g := p.newGen(grants, nil)
	lim := q.Limit
	if plan.MaxRows > 0 && (lim == nil || *lim > int64(plan.MaxRows)) {
		// Fetch one more than allowed to tell "exactly at the cap" from "over".
		l := int64(plan.MaxRows) + 1
		lim = &l
	}
	saved := q.Limit
	q.Limit = lim
	restore := func() {}
	if kind == AccessList {
		restore = totalOrder(q)
	}
	g.selectSQL(q, nil)
	restore()
	q.Limit = saved
	plan.SQL = g.b.String()
	plan.Columns = visibleNames(q.Items)
	plan.Types = itemTypes(q.Items, grants)
	return plan, nil
}

// totalOrder makes the order of q's answer a function of the released
// values only: the analyst's ORDER BY, then every output column. Without
// it the engine returns rows in an order that depends on every row it
// scanned, hidden ones included (a parallel hash aggregation's group order,
// a scan's order), so LIMIT released different rows when a record outside
// the row filter or in a withheld group existed. It returns a function that
// restores q.
func totalOrder(q *Select) func() {
	saved := q.OrderBy
	order := append([]Order(nil), q.OrderBy...)
	for i := range visibleNames(q.Items) {
		n := strconv.Itoa(i + 1) // an ordinal: the i-th output column
		order = append(order, Order{Expr: &Raw{SQL: map[string]string{string(DuckDB): n, string(Postgres): n}}})
	}
	q.OrderBy = order
	return func() { q.OrderBy = saved }
}

func stricter(a, b Access) Access {
	rank := map[Access]int{AccessOwner: 0, AccessList: 1, AccessAggregation: 2, AccessDP: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func setOf(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func visibleNames(items []Item) []string {
	var out []string
	for _, it := range items {
		if !it.Hidden {
			out = append(out, it.Name)
		}
	}
	return out
}

// collectScans lists every dataset scan in q, including CTEs and subqueries.
func collectScans(q *Select) []*Source {
	var out []*Source
	seen := map[*Select]bool{}
	var visit func(q *Select)
	visit = func(q *Select) {
		if seen[q] {
			return
		}
		seen[q] = true
		for _, c := range q.With {
			visit(c.Query)
		}
		for _, s := range q.From {
			if s.Dataset != nil {
				out = append(out, s)
			} else {
				visit(s.Sub)
			}
		}
		for _, e := range blockExprs(q) {
			Walk(e.e, func(x Expr) bool {
				if in, ok := x.(*InSub); ok {
					visit(in.Sub)
				}
				return true
			})
		}
	}
	visit(q)
	return out
}

type ctxExpr struct {
	e   Expr
	ctx exprCtx
}

// blockExprs lists the expressions of one query block with their context.
func blockExprs(q *Select) []ctxExpr {
	var out []ctxExpr
	for _, s := range q.From {
		if s.On != nil {
			out = append(out, ctxExpr{s.On, ctxJoin})
		}
	}
	if q.Where != nil {
		out = append(out, ctxExpr{q.Where, ctxWhere})
	}
	for _, g := range q.GroupBy {
		out = append(out, ctxExpr{g, ctxGroup})
	}
	if q.Having != nil {
		out = append(out, ctxExpr{q.Having, ctxHaving})
	}
	for _, it := range q.Items {
		out = append(out, ctxExpr{it.Expr, ctxSelect})
	}
	for _, o := range q.OrderBy {
		out = append(out, ctxExpr{o.Expr, ctxOrder})
	}
	return out
}

// eachOrigin calls fn for every dataset column read anywhere in q.
func eachOrigin(q *Select, fn func(o *Origin, ctx exprCtx) error) error {
	seen := map[*Select]bool{}
	var visit func(q *Select) error
	visit = func(q *Select) error {
		if seen[q] {
			return nil
		}
		seen[q] = true
		for _, c := range q.With {
			if err := visit(c.Query); err != nil {
				return err
			}
		}
		for _, s := range q.From {
			if s.Sub != nil {
				if err := visit(s.Sub); err != nil {
					return err
				}
			}
		}
		for _, ce := range blockExprs(q) {
			var err error
			Walk(ce.e, func(x Expr) bool {
				switch c := x.(type) {
				case *Col:
					if c.Origin != nil {
						err = fn(c.Origin, ce.ctx)
					}
				case *InSub:
					err = visit(c.Sub)
				}
				return err == nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	return visit(q)
}

func touched(q *Select) (cols, classes, datasets []string) {
	cs, cl, ds := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, s := range collectScans(q) {
		ds[s.Dataset.Name] = true
	}
	_ = eachOrigin(q, func(o *Origin, _ exprCtx) error {
		cs[o.Scan.Dataset.Name+"."+o.Column.Name] = true
		cl[string(o.Column.Class)] = true
		return nil
	})
	return sortedKeys(cs), sortedKeys(cl), sortedKeys(ds)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// newGen returns a generator whose dataset scans apply each grant.
func (p Planner) newGen(grants map[string]*Grant, extra func(*Select) []string) *gen {
	g := &gen{d: p.Dialect, extraItems: extra, grants: grants, bind: p.bind}
	g.scan = func(s *Source) string { return p.scanSQL(s, grants[s.Dataset.Name]) }
	return g
}

// scanSQL renders a dataset scan as a derived table that already carries the
// grant: only the rows the row filter admits, and masked columns. hidden
// are engine-internal select items (UnitIDColumn, the sketch columns) a
// plan also reads; no analyst expression can refer to them.
func (p Planner) scanSQL(s *Source, g *Grant, hidden ...string) string {
	return p.scanFrom(s, g, g.Table, hidden)
}

func (p Planner) scanFrom(s *Source, g *Grant, table string, hidden []string) string {
	var b strings.Builder
	b.WriteString("(SELECT ")
	for i := range s.Dataset.Columns {
		c := &s.Dataset.Columns[i]
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.maskedColumn(c, g))
		b.WriteString(" AS ")
		b.WriteString(QuoteIdent(c.Name))
	}
	for _, h := range hidden {
		b.WriteString(", " + h)
	}
	b.WriteString(" FROM ")
	b.WriteString(table)
	if g.RowFilter != nil {
		fg := &gen{d: p.Dialect, colName: func(c *Col) string { return QuoteIdent(c.Name) }, bind: p.bind}
		fg.expr(g.RowFilter)
		b.WriteString(" WHERE ")
		b.WriteString(fg.b.String())
	}
	b.WriteString(") AS ")
	b.WriteString(QuoteIdent(s.Alias))
	return b.String()
}

// sketchScanSQL is scanSQL with the differencing sketch's per-row columns
// (engine.SketchColumns). DuckDB stored them at load; PostgreSQL computes
// them from hashtextextended of the row's text and of the unit's, in an
// inner select so each hash is computed once per row. Rows without a unit
// share one pseudo-unit (as DuckDB's hash of NULL does), so a difference
// in them is seen too.
func (p Planner) sketchScanSQL(s *Source, g *Grant) string {
	if p.Dialect == DuckDB {
		var hidden []string
		for _, c := range engine.SketchColumns {
			hidden = append(hidden, QuoteIdent(c))
		}
		return p.scanSQL(s, g, hidden...)
	}
	var cols []string
	for _, c := range s.Dataset.Columns {
		cols = append(cols, QuoteIdent(c.Name))
	}
	inner := "(SELECT *, hashtextextended(CAST(ROW(" + strings.Join(cols, ", ") + ") AS text), 0) AS __hr, " +
		"COALESCE(hashtextextended(CAST(" + QuoteIdent(s.Dataset.PrivacyUnit) + " AS text), 1), 0) AS __hu FROM " + g.Table + ") AS __r"
	var hidden []string
	for i, e := range engine.SketchSQL("__hr", "__hu") {
		hidden = append(hidden, e+" AS "+QuoteIdent(engine.SketchColumns[i]))
	}
	return p.scanFrom(s, g, inner, hidden)
}

// SketchScheme names how a dialect's sketches hash rows and units. Only
// sketches of one scheme are compared; a change to the hashing (a DuckDB
// upgrade that changes hash(), see engine/duckdb's pinned test) must get
// a new version here.
func SketchScheme(d Dialect) string { return string(d) + "/1" }

func (p Planner) maskedColumn(c *workspace.Column, g *Grant) string {
	col := QuoteIdent(c.Name)
	if g.Access != AccessList {
		return col
	}
	if len(g.Rule.Columns) > 0 && !setOf(g.Rule.Columns)[c.Name] {
		return "CAST(NULL AS " + SQLType(p.Dialect, c.Type) + ")"
	}
	switch g.Rule.Masks[c.Name] {
	case workspace.MaskRedact:
		return "CAST(NULL AS " + SQLType(p.Dialect, c.Type) + ")"
	case workspace.MaskHMAC:
		return KeyedHashSQL(p.Dialect, g.HMACKey, col, p.bind)
	case workspace.MaskYear:
		return "CAST(date_trunc('year', " + col + ") AS DATE)"
	case workspace.MaskMonth:
		return "CAST(date_trunc('month', " + col + ") AS DATE)"
	case workspace.MaskZip3:
		return "(substr(CAST(" + col + " AS " + SQLType(p.Dialect, "text") + "), 1, 3) || 'XX')"
	}
	return col
}

// SQLType maps a manifest type to the dialect's SQL type.
func SQLType(d Dialect, t string) string { return engine.SQLType(string(d), t) }

// itemTypes infers each visible item's type from the IR.
func itemTypes(items []Item, grants map[string]*Grant) []string {
	var out []string
	for _, it := range items {
		if !it.Hidden {
			out = append(out, describedType(exprType(it.Expr, grants)))
		}
	}
	return out
}

// describedType is how the wire endpoint describes a column of IR type t:
// an unknown (bare NULL) or interval column as text, as PostgreSQL
// describes an unknown.
func describedType(t string) string {
	if t == "unknown" || t == "interval" {
		return "text"
	}
	return t
}

func exprType(e Expr, grants map[string]*Grant) string {
	switch x := e.(type) {
	case *Col:
		if x.Origin == nil {
			// A derived table's computed column has its expression's type.
			if x.Source != nil && x.Source.Sub != nil {
				for _, it := range x.Source.Sub.Items {
					if it.Name == x.Name {
						return exprType(it.Expr, grants)
					}
				}
			}
			return "text"
		}
		if g := grants[x.Origin.Scan.Dataset.Name]; g != nil && g.Access == AccessList {
			switch g.Rule.Masks[x.Origin.Column.Name] {
			case "hmac", "zip3":
				return "text"
			}
		}
		return wireType(x.Origin.Column.Type)
	case *Func:
		switch x.Name {
		case "count":
			return "integer"
		case "avg", "stddev", "stddev_pop", "variance", "var_pop", "median", "percentile_cont", "sqrt", "ln", "exp", "power":
			return "double"
		case "bool_and", "bool_or":
			return "boolean"
		case "coalesce", "greatest", "least", "nullif":
			// The first argument that is not a bare NULL decides.
			return firstKnownType(x.Args, grants)
		case "sum", "min", "max", "abs", "round", "floor", "ceil", "any_value", "first", "last",
			"mod", "mode", "arg_min", "arg_max":
			if len(x.Args) > 0 {
				return exprType(x.Args[0], grants)
			}
			return "double"
		case "date_part", "length", "sign":
			return "double"
		case "date_trunc":
			return "timestamp"
		}
		return "text"
	case *Cast:
		switch x.Type {
		case "integer", "bigint":
			return "integer"
		case "double", "numeric":
			return "double"
		}
		return x.Type
	case *Lit:
		switch x.Kind {
		case LitNull:
			return "unknown"
		case LitInt:
			return "integer"
		case LitFloat:
			return "double"
		case LitBool:
			return "boolean"
		}
		return "text"
	case *Op:
		switch x.Op {
		case "+", "-", "*", "/", "%":
			return arithType(x.Op, exprType(x.L, grants), exprType(x.R, grants))
		case "||":
			return "text"
		}
		return "boolean"
	case *Not, *In, *InSub, *Between, *IsNull:
		return "boolean"
	case *Neg:
		return exprType(x.X, grants)
	case *Case:
		results := make([]Expr, 0, len(x.Whens)+1)
		for _, w := range x.Whens {
			results = append(results, w.Then)
		}
		if x.Else != nil {
			results = append(results, x.Else)
		}
		return firstKnownType(results, grants)
	}
	return "text"
}

// arithType is the type of l op r, symmetric in the operands as the
// engines are. A combination it does not know is "unknown", never "text":
// the guards that keep text apart from other types must not be skipped
// because a type was not worked out.
func arithType(op, l, r string) string {
	isTime := func(t string) bool { return t == "date" || t == "timestamp" }
	switch {
	case isNumberType(l) && isNumberType(r):
		if l == "integer" && r == "integer" && op != "/" {
			return "integer"
		}
		return "double"
	case isTime(l) && isNumberType(r) && (op == "+" || op == "-"):
		return l
	case isNumberType(l) && isTime(r) && op == "+":
		return r
	case l == "date" && r == "date" && op == "-":
		return "integer"
	case isTime(l) && isTime(r) && op == "-":
		return "interval"
	case l == "interval" || r == "interval":
		return "interval"
	}
	return "unknown"
}

// firstKnownType is the type of the first expression that is not a bare
// NULL: the type an engine gives coalesce(NULL, x) or CASE ... THEN NULL
// ELSE x END.
func firstKnownType(xs []Expr, grants map[string]*Grant) string {
	for _, e := range xs {
		if t := exprType(e, grants); t != "unknown" {
			return t
		}
	}
	return "unknown"
}

// wireType folds manifest types into the few the wire endpoint describes.
func wireType(t string) string {
	switch t {
	case "decimal", "double":
		return "double"
	case "integer", "date", "timestamp", "boolean":
		return t
	}
	return "text"
}
