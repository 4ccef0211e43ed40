package query

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Catalog resolves a relation name to a registered dataset, or nil.
type Catalog func(name string) *workspace.Manifest

// ParsePredicate parses text as one predicate over dataset m's columns
// alone (a row filter).
func ParsePredicate(text string, m *workspace.Manifest) (Expr, error) {
	cat := func(name string) *workspace.Manifest {
		if name == m.Name {
			return m
		}
		return nil
	}
	q, err := Parse("SELECT 1 FROM "+QuoteIdent(m.Name)+" WHERE "+text, cat, nil)
	if err != nil {
		return nil, err
	}
	if q.Where == nil {
		return nil, errors.New("query: not a predicate")
	}
	return q.Where, nil
}

// Parse turns one PostgreSQL-dialect SELECT into the IR, resolving every
// relation against the catalog and every column against its source. Params
// are the values of $1, $2, ... (extended protocol), bound as literals.
// Anything the IR cannot express is refused with code bad_sql.
func Parse(sql string, cat Catalog, params []any) (*Select, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		if m := err.Error(); strings.Contains(m, "recursion depth") || strings.Contains(m, "stack depth") {
			return nil, refusal.New(refusal.BadSQL, "sql.depth", "the query nests too deeply (at most %d levels)", MaxDepth)
		}
		// pg_query's message quotes only the token near the error, which is
		// the client's own text; keep just the position-free summary.
		return nil, refusal.New(refusal.BadSQL, "sql.syntax", "syntax error: %s", syntaxSummary(err))
	}
	if len(tree.Stmts) != 1 {
		return nil, refusal.New(refusal.BadSQL, "sql.single_statement", "exactly one statement is accepted, got %d", len(tree.Stmts))
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	if sel == nil {
		return nil, refusal.New(refusal.BadSQL, "sql.select_only", "only a read-only SELECT is accepted")
	}
	p := &parser{cat: cat, params: params}
	q, err := p.selectStmt(sel, nil)
	if err != nil {
		return nil, err
	}
	if err := checkSize(q); err != nil {
		return nil, err
	}
	return q, nil
}

// The largest query shape accepted: engines and the planner recurse over
// it, and DuckDB's own limits would otherwise answer first, less clearly.
const (
	MaxDepth  = 200 // nested expressions
	MaxBlocks = 64  // query blocks: the SELECT, its CTEs, derived tables and subqueries
)

func checkSize(q *Select) error {
	blocks, depth := 0, 0
	visitSelects(q, func(s *Select) {
		blocks++
		eachExpr(s, func(e Expr) { depth = max(depth, exprDepth(e)) })
	})
	if blocks > MaxBlocks {
		return refusal.New(refusal.BadSQL, "sql.complexity", "the query has %d query blocks (CTEs, subqueries, derived tables); at most %d are accepted", blocks, MaxBlocks)
	}
	if depth > MaxDepth {
		return refusal.New(refusal.BadSQL, "sql.depth", "the query nests too deeply (at most %d levels)", MaxDepth)
	}
	return nil
}

func exprDepth(e Expr) int {
	d := 0
	switch x := e.(type) {
	case *Op:
		d = max(exprDepth(x.L), exprDepth(x.R))
	case *Not:
		d = exprDepth(x.X)
	case *Neg:
		d = exprDepth(x.X)
	case *Cast:
		d = exprDepth(x.X)
	case *IsNull:
		d = exprDepth(x.X)
	case *Func:
		for _, a := range x.Args {
			d = max(d, exprDepth(a))
		}
	case *Case:
		d = exprDepth(x.Operand)
		for _, w := range x.Whens {
			d = max(d, exprDepth(w.Cond), exprDepth(w.Then))
		}
		d = max(d, exprDepth(x.Else))
	case *In:
		d = exprDepth(x.X)
		for _, a := range x.List {
			d = max(d, exprDepth(a))
		}
	case *InSub:
		d = exprDepth(x.X)
	case *Between:
		d = max(exprDepth(x.X), exprDepth(x.Lo), exprDepth(x.Hi))
	case nil:
		return 0
	}
	return d + 1
}

func syntaxSummary(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, " at or near"); i >= 0 {
		return msg[:i]
	}
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}

type parser struct {
	cat    Catalog
	params []any
	depth  int
}

// scope is what column references in a query block can see.
type scope struct {
	sources []*Source
	ctes    map[string]*CTE
	parent  *scope // only for CTE lookup; correlated columns are refused
	// aliases are the output names of the block, visible in GROUP BY and ORDER BY.
	items []Item
}

func (s *scope) cte(name string) *CTE {
	for c := s; c != nil; c = c.parent {
		if x, ok := c.ctes[name]; ok {
			return x
		}
	}
	return nil
}

func bad(rule, format string, args ...any) error {
	return refusal.New(refusal.BadSQL, rule, format, args...)
}

const maxDepth = 16

func (p *parser) selectStmt(s *pg.SelectStmt, parent *scope) (*Select, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, bad("sql.depth", "query nesting deeper than %d", maxDepth)
	}
	switch {
	case s.Op != pg.SetOperation_SETOP_NONE:
		return nil, bad("sql.set_operation", "UNION, INTERSECT and EXCEPT are not supported")
	case s.IntoClause != nil:
		return nil, bad("sql.select_into", "SELECT INTO writes a table and is not accepted")
	case len(s.LockingClause) > 0:
		return nil, bad("sql.locking", "FOR UPDATE/SHARE is not accepted")
	case len(s.ValuesLists) > 0:
		return nil, bad("sql.values", "VALUES lists are not supported")
	case len(s.WindowClause) > 0:
		return nil, bad("sql.window", "window functions are not supported")
	case s.GroupDistinct:
		return nil, bad("sql.group_distinct", "GROUP BY DISTINCT is not supported")
	}
	out := &Select{}
	sc := &scope{ctes: map[string]*CTE{}, parent: parent}
	if w := s.WithClause; w != nil {
		if w.Recursive {
			return nil, bad("sql.recursive", "recursive CTEs are not supported")
		}
		for _, n := range w.Ctes {
			c := n.GetCommonTableExpr()
			if c == nil {
				return nil, bad("sql.cte", "unsupported WITH item")
			}
			if len(c.Aliascolnames) > 0 || c.SearchClause != nil || c.CycleClause != nil {
				return nil, bad("sql.cte", "CTE column lists, SEARCH and CYCLE are not supported")
			}
			inner := c.Ctequery.GetSelectStmt()
			if inner == nil {
				return nil, bad("sql.select_only", "a CTE must be a SELECT")
			}
			q, err := p.selectStmt(inner, sc)
			if err != nil {
				return nil, err
			}
			name := strings.ToLower(c.Ctename)
			if _, dup := sc.ctes[name]; dup {
				return nil, bad("sql.cte", "CTE %q is defined twice", name)
			}
			cte := &CTE{Name: name, Query: q}
			sc.ctes[name] = cte
			out.With = append(out.With, cte)
		}
	}
	if len(s.FromClause) == 0 {
		return nil, bad("sql.from", "a query must read a registered dataset")
	}
	for i, n := range s.FromClause {
		if err := p.fromItem(n, sc, i > 0); err != nil {
			return nil, err
		}
	}
	out.From = sc.sources
	var err error
	if s.WhereClause != nil {
		if out.Where, err = p.expr(s.WhereClause, sc, ctxWhere); err != nil {
			return nil, err
		}
	}
	if len(s.DistinctClause) > 0 {
		if len(s.DistinctClause) > 1 || s.DistinctClause[0].Node != nil {
			return nil, bad("sql.distinct_on", "DISTINCT ON is not supported")
		}
		out.Distinct = true
	}
	for _, n := range s.TargetList {
		rt := n.GetResTarget()
		if rt == nil || len(rt.Indirection) > 0 {
			return nil, bad("sql.target", "unsupported select item")
		}
		if cr := rt.Val.GetColumnRef(); cr != nil && isStar(cr) {
			items, err := p.expandStar(cr, sc)
			if err != nil {
				return nil, err
			}
			out.Items = append(out.Items, items...)
			continue
		}
		e, err := p.expr(rt.Val, sc, ctxSelect)
		if err != nil {
			return nil, err
		}
		name := strings.ToLower(rt.Name)
		if name == "" {
			name = defaultName(e)
		}
		out.Items = append(out.Items, Item{Expr: e, Name: name})
	}
	sc.items = out.Items
	for _, n := range s.GroupClause {
		e, err := p.groupOrOrderKey(n, sc, out.Items, ctxGroup)
		if err != nil {
			return nil, err
		}
		out.GroupBy = append(out.GroupBy, e)
	}
	if s.HavingClause != nil {
		if out.Having, err = p.expr(s.HavingClause, sc, ctxHaving); err != nil {
			return nil, err
		}
	}
	for _, n := range s.SortClause {
		sb := n.GetSortBy()
		if sb == nil || sb.SortbyDir == pg.SortByDir_SORTBY_USING {
			return nil, bad("sql.order_by", "unsupported ORDER BY item")
		}
		e, err := p.groupOrOrderKey(sb.Node, sc, out.Items, ctxOrder)
		if err != nil {
			return nil, err
		}
		o := Order{Expr: e, Desc: sb.SortbyDir == pg.SortByDir_SORTBY_DESC}
		switch sb.SortbyNulls {
		case pg.SortByNulls_SORTBY_NULLS_FIRST:
			t := true
			o.NullsFirst = &t
		case pg.SortByNulls_SORTBY_NULLS_LAST:
			f := false
			o.NullsFirst = &f
		}
		out.OrderBy = append(out.OrderBy, o)
	}
	if s.LimitOption == pg.LimitOption_LIMIT_OPTION_WITH_TIES {
		return nil, bad("sql.limit", "FETCH ... WITH TIES is not supported")
	}
	if s.LimitCount != nil {
		v, err := p.constInt(s.LimitCount, "LIMIT")
		if err != nil {
			return nil, err
		}
		if v != nil {
			out.Limit = v
		}
	}
	if s.LimitOffset != nil {
		v, err := p.constInt(s.LimitOffset, "OFFSET")
		if err != nil {
			return nil, err
		}
		out.Offset = v
	}
	return out, nil
}

func (p *parser) constInt(n *pg.Node, what string) (*int64, error) {
	if c := n.GetAConst(); c != nil {
		if c.Isnull {
			return nil, nil // LIMIT NULL / LIMIT ALL
		}
		if iv, ok := c.Val.(*pg.A_Const_Ival); ok {
			v := int64(iv.Ival.Ival)
			if v < 0 {
				return nil, bad("sql.limit", "%s must not be negative", what)
			}
			return &v, nil
		}
	}
	if pr := n.GetParamRef(); pr != nil {
		lit, err := p.param(int(pr.Number))
		if err != nil {
			return nil, err
		}
		if l, ok := lit.(*Lit); ok && l.Kind == LitNull {
			return nil, nil // unbound while describing, or LIMIT NULL
		}
		if l, ok := lit.(*Lit); ok && l.Kind == LitString {
			if v, err := strconv.ParseInt(l.Value, 10, 64); err == nil && v >= 0 {
				return &v, nil
			}
		}
		if l, ok := lit.(*Lit); ok && l.Kind == LitInt {
			v, err := strconv.ParseInt(l.Value, 10, 64)
			if err == nil && v >= 0 {
				return &v, nil
			}
		}
	}
	return nil, bad("sql.limit", "%s must be a non-negative integer constant", what)
}

func isStar(cr *pg.ColumnRef) bool {
	return len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil
}

func (p *parser) expandStar(cr *pg.ColumnRef, sc *scope) ([]Item, error) {
	var srcs []*Source
	switch len(cr.Fields) {
	case 1:
		srcs = sc.sources
	case 2:
		alias := strings.ToLower(cr.Fields[0].GetString_().GetSval())
		for _, s := range sc.sources {
			if s.Alias == alias {
				srcs = append(srcs, s)
			}
		}
		if len(srcs) == 0 {
			return nil, bad("sql.unknown_relation", "unknown relation %q", alias)
		}
	default:
		return nil, bad("sql.qualified_name", "qualified names are not supported")
	}
	var items []Item
	for _, s := range srcs {
		for _, name := range sourceColumns(s) {
			c, _ := resolveIn(s, name)
			items = append(items, Item{Expr: c, Name: name})
		}
	}
	return items, nil
}

// sourceColumns lists the column names a FROM item exposes.
func sourceColumns(s *Source) []string {
	var out []string
	if s.Dataset != nil {
		for _, c := range s.Dataset.Columns {
			out = append(out, c.Name)
		}
		return out
	}
	for _, it := range s.Sub.Items {
		if !it.Hidden {
			out = append(out, it.Name)
		}
	}
	return out
}

// resolveIn resolves a column name in one FROM item.
func resolveIn(s *Source, name string) (*Col, bool) {
	if s.Dataset != nil {
		for i := range s.Dataset.Columns {
			c := &s.Dataset.Columns[i]
			if c.Name == name {
				return &Col{Source: s, Name: name, Origin: &Origin{Scan: s, Column: c}}, true
			}
		}
		return nil, false
	}
	for _, it := range s.Sub.Items {
		if it.Name != name || it.Hidden {
			continue
		}
		col := &Col{Source: s, Name: name}
		if inner, ok := it.Expr.(*Col); ok && !inner.Aggregated && inner.Origin != nil {
			col.Origin = inner.Origin
			return col, true
		}
		col.Aggregated = HasAggregate(it.Expr) || colAggregated(it.Expr)
		col.Derived = origins(it.Expr)
		return col, true
	}
	return nil, false
}

func colAggregated(e Expr) bool {
	agg := false
	Walk(e, func(x Expr) bool {
		if c, ok := x.(*Col); ok && c.Aggregated {
			agg = true
		}
		return true
	})
	return agg
}

// origins lists every dataset column an expression reads.
func origins(e Expr) []*Origin {
	var out []*Origin
	Walk(e, func(x Expr) bool {
		if c, ok := x.(*Col); ok {
			if c.Origin != nil {
				out = append(out, c.Origin)
			}
			out = append(out, c.Derived...)
		}
		return true
	})
	return out
}

func (p *parser) fromItem(n *pg.Node, sc *scope, comma bool) error {
	src, err := p.fromNode(n, sc)
	if err != nil {
		return err
	}
	if comma && src[0].Join == JoinNone {
		src[0].Join = JoinCross
	}
	for _, s := range src {
		for _, prev := range sc.sources {
			if prev.Alias == s.Alias {
				return bad("sql.duplicate_alias", "relation name %q is used twice; give each an alias", s.Alias)
			}
		}
		sc.sources = append(sc.sources, s)
	}
	return nil
}

// fromNode flattens a FROM item into sources in join order.
func (p *parser) fromNode(n *pg.Node, sc *scope) ([]*Source, error) {
	switch {
	case n.GetRangeVar() != nil:
		rv := n.GetRangeVar()
		if rv.Catalogname != "" || (rv.Schemaname != "" && rv.Schemaname != "public") {
			return nil, refusal.New(refusal.Forbidden, "catalog.hidden", "schema-qualified and catalog relations are not accessible")
		}
		name := strings.ToLower(rv.Relname)
		alias := name
		if rv.Alias != nil {
			if len(rv.Alias.Colnames) > 0 {
				return nil, bad("sql.alias_columns", "column aliases on a relation are not supported")
			}
			alias = strings.ToLower(rv.Alias.Aliasname)
		}
		if rv.Schemaname == "" {
			if cte := sc.cte(name); cte != nil {
				return []*Source{{Alias: alias, Sub: cte.Query, CTEName: cte.Name}}, nil
			}
		}
		m := p.cat(name)
		if m == nil {
			return nil, refusal.New(refusal.NotFound, "catalog.unknown_dataset", "relation %q is not a registered dataset", name)
		}
		return []*Source{{Alias: alias, Dataset: m}}, nil
	case n.GetRangeSubselect() != nil:
		rs := n.GetRangeSubselect()
		if rs.Lateral {
			return nil, bad("sql.lateral", "LATERAL is not supported")
		}
		inner := rs.Subquery.GetSelectStmt()
		if inner == nil {
			return nil, bad("sql.select_only", "a subquery must be a SELECT")
		}
		if rs.Alias == nil {
			return nil, bad("sql.subquery_alias", "a subquery in FROM needs an alias")
		}
		if len(rs.Alias.Colnames) > 0 {
			return nil, bad("sql.alias_columns", "column aliases on a subquery are not supported")
		}
		q, err := p.selectStmt(inner, &scope{ctes: sc.ctes, parent: sc.parent})
		if err != nil {
			return nil, err
		}
		return []*Source{{Alias: strings.ToLower(rs.Alias.Aliasname), Sub: q}}, nil
	case n.GetJoinExpr() != nil:
		j := n.GetJoinExpr()
		if j.IsNatural {
			return nil, bad("sql.natural_join", "NATURAL JOIN is not supported; name the join columns")
		}
		if j.Alias != nil || j.JoinUsingAlias != nil {
			return nil, bad("sql.join_alias", "aliases on a join are not supported")
		}
		left, err := p.fromNode(j.Larg, sc)
		if err != nil {
			return nil, err
		}
		right, err := p.fromNode(j.Rarg, sc)
		if err != nil {
			return nil, err
		}
		if len(right) != 1 {
			return nil, bad("sql.join_shape", "a parenthesized join on the right side is not supported")
		}
		r := right[0]
		switch j.Jointype {
		case pg.JoinType_JOIN_INNER:
			r.Join = JoinInner
			if j.Quals == nil && len(j.UsingClause) == 0 {
				r.Join = JoinCross
			}
		case pg.JoinType_JOIN_LEFT:
			r.Join = JoinLeft
		case pg.JoinType_JOIN_RIGHT:
			r.Join = JoinRight
		case pg.JoinType_JOIN_FULL:
			r.Join = JoinFull
		default:
			return nil, bad("sql.join_type", "unsupported join type")
		}
		// Resolve ON against everything joined so far.
		tmp := &scope{sources: append(append(append([]*Source{}, sc.sources...), left...), r), ctes: sc.ctes, parent: sc.parent}
		for _, u := range j.UsingClause {
			col := strings.ToLower(u.GetString_().GetSval())
			var lc *Col
			for _, l := range left {
				if c, ok := resolveIn(l, col); ok {
					lc = c
				}
			}
			rc, ok := resolveIn(r, col)
			if lc == nil || !ok {
				return nil, bad("sql.unknown_column", "USING column %q is not in both relations", col)
			}
			eq := &Op{Op: "=", L: lc, R: rc}
			if r.On == nil {
				r.On = eq
			} else {
				r.On = &Op{Op: "AND", L: r.On, R: eq}
			}
			r.Using = append(r.Using, col)
		}
		if j.Quals != nil {
			on, err := p.expr(j.Quals, tmp, ctxJoin)
			if err != nil {
				return nil, err
			}
			r.On = on
		}
		return append(left, r), nil
	case n.GetRangeFunction() != nil:
		return nil, refusal.New(refusal.Forbidden, "sql.table_function", "table functions are not accessible")
	default:
		return nil, bad("sql.from", "unsupported FROM item")
	}
}

// exprCtx is where an expression appears; it decides whether aggregates are legal.
type exprCtx int

const (
	ctxWhere exprCtx = iota
	ctxSelect
	ctxGroup
	ctxHaving
	ctxOrder
	ctxJoin
	ctxAggArg
)

func (c exprCtx) allowsAggregate() bool {
	return c == ctxSelect || c == ctxHaving || c == ctxOrder
}

func (p *parser) groupOrOrderKey(n *pg.Node, sc *scope, items []Item, ctx exprCtx) (Expr, error) {
	// Positional reference: GROUP BY 1, ORDER BY 2.
	if c := n.GetAConst(); c != nil {
		if iv, ok := c.Val.(*pg.A_Const_Ival); ok {
			i := int(iv.Ival.Ival)
			if i < 1 || i > len(items) {
				return nil, bad("sql.position", "position %d is not in the select list", i)
			}
			return items[i-1].Expr, nil
		}
	}
	// An output alias, unless it names a column of a source (PostgreSQL
	// prefers the input column in GROUP BY, the output alias in ORDER BY).
	if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) == 1 && cr.Fields[0].GetString_() != nil {
		name := strings.ToLower(cr.Fields[0].GetString_().Sval)
		_, inputErr := p.column(cr, sc)
		if ctx == ctxOrder || inputErr != nil {
			for _, it := range items {
				if it.Name == name && !it.Hidden {
					return it.Expr, nil
				}
			}
		}
	}
	return p.expr(n, sc, ctx)
}

func (p *parser) column(cr *pg.ColumnRef, sc *scope) (*Col, error) {
	var parts []string
	for _, f := range cr.Fields {
		s := f.GetString_()
		if s == nil {
			return nil, bad("sql.star", "* is only allowed as a whole select item or in COUNT(*)")
		}
		parts = append(parts, strings.ToLower(s.Sval))
	}
	switch len(parts) {
	case 1:
		var found *Col
		for _, s := range sc.sources {
			if c, ok := resolveIn(s, parts[0]); ok {
				if found != nil {
					return nil, bad("sql.ambiguous_column", "column %q is ambiguous; qualify it", parts[0])
				}
				found = c
			}
		}
		if found == nil {
			return nil, bad("sql.unknown_column", "column %q does not exist", parts[0])
		}
		return found, nil
	case 2:
		for _, s := range sc.sources {
			if s.Alias == parts[0] {
				if c, ok := resolveIn(s, parts[1]); ok {
					return c, nil
				}
				return nil, bad("sql.unknown_column", "column %q does not exist in %q", parts[1], parts[0])
			}
		}
		return nil, bad("sql.unknown_relation", "relation %q is not in the FROM clause", parts[0])
	default:
		return nil, refusal.New(refusal.Forbidden, "catalog.hidden", "schema-qualified column references are not accessible")
	}
}

func (p *parser) param(n int) (Expr, error) {
	if n < 1 || n > len(p.params) {
		return nil, bad("sql.parameter", "parameter $%d has no value", n)
	}
	return literalOf(p.params[n-1])
}

func literalOf(v any) (Expr, error) {
	switch x := v.(type) {
	case nil:
		return &Lit{Kind: LitNull}, nil
	case int:
		return &Lit{Kind: LitInt, Value: strconv.Itoa(x)}, nil
	case int32:
		return &Lit{Kind: LitInt, Value: strconv.FormatInt(int64(x), 10)}, nil
	case int64:
		return &Lit{Kind: LitInt, Value: strconv.FormatInt(x, 10)}, nil
	case float64:
		// NaN and ±Inf have no SQL literal: formatted, they would be read as
		// identifiers (a column aliased nan), past every rule.
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, bad("sql.parameter", "a parameter is NaN or infinite, which SQL cannot compare")
		}
		return &Lit{Kind: LitFloat, Value: strconv.FormatFloat(x, 'g', -1, 64)}, nil
	case float32:
		return literalOf(float64(x))
	case bool:
		return &Lit{Kind: LitBool, Value: strconv.FormatBool(x)}, nil
	case string:
		return &Lit{Kind: LitString, Value: x}, nil
	case []byte:
		return &Lit{Kind: LitString, Value: string(x)}, nil
	default:
		return nil, bad("sql.parameter", "unsupported parameter type %T", v)
	}
}

func (p *parser) exprs(ns []*pg.Node, sc *scope, ctx exprCtx) ([]Expr, error) {
	out := make([]Expr, 0, len(ns))
	for _, n := range ns {
		e, err := p.expr(n, sc, ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (p *parser) expr(n *pg.Node, sc *scope, ctx exprCtx) (Expr, error) {
	if n == nil {
		return nil, bad("sql.expression", "missing expression")
	}
	switch {
	case n.GetColumnRef() != nil:
		return p.column(n.GetColumnRef(), sc)
	case n.GetAConst() != nil:
		return constant(n.GetAConst())
	case n.GetParamRef() != nil:
		return p.param(int(n.GetParamRef().Number))
	case n.GetTypeCast() != nil:
		tc := n.GetTypeCast()
		x, err := p.expr(tc.Arg, sc, ctx)
		if err != nil {
			return nil, err
		}
		t, err := castType(tc.TypeName)
		if err != nil {
			return nil, err
		}
		// A typed literal such as DATE '2024-01-01' stays a cast of a literal.
		return &Cast{X: x, Type: t}, nil
	case n.GetBoolExpr() != nil:
		b := n.GetBoolExpr()
		args, err := p.exprs(b.Args, sc, ctx)
		if err != nil {
			return nil, err
		}
		switch b.Boolop {
		case pg.BoolExprType_NOT_EXPR:
			return &Not{X: args[0]}, nil
		case pg.BoolExprType_AND_EXPR, pg.BoolExprType_OR_EXPR:
			op := "AND"
			if b.Boolop == pg.BoolExprType_OR_EXPR {
				op = "OR"
			}
			e := args[0]
			for _, a := range args[1:] {
				e = &Op{Op: op, L: e, R: a}
			}
			return e, nil
		}
	case n.GetNullTest() != nil:
		t := n.GetNullTest()
		x, err := p.expr(t.Arg, sc, ctx)
		if err != nil {
			return nil, err
		}
		return &IsNull{X: x, Not: t.Nulltesttype == pg.NullTestType_IS_NOT_NULL}, nil
	case n.GetAExpr() != nil:
		return p.aexpr(n.GetAExpr(), sc, ctx)
	case n.GetFuncCall() != nil:
		return p.funcCall(n.GetFuncCall(), sc, ctx)
	case n.GetCaseExpr() != nil:
		c := n.GetCaseExpr()
		out := &Case{}
		var err error
		if c.Arg != nil {
			if out.Operand, err = p.expr(c.Arg, sc, ctx); err != nil {
				return nil, err
			}
		}
		for _, w := range c.Args {
			cw := w.GetCaseWhen()
			cond, err := p.expr(cw.Expr, sc, ctx)
			if err != nil {
				return nil, err
			}
			then, err := p.expr(cw.Result, sc, ctx)
			if err != nil {
				return nil, err
			}
			out.Whens = append(out.Whens, When{Cond: cond, Then: then})
		}
		if c.Defresult != nil {
			if out.Else, err = p.expr(c.Defresult, sc, ctx); err != nil {
				return nil, err
			}
		}
		return out, nil
	case n.GetCoalesceExpr() != nil:
		args, err := p.exprs(n.GetCoalesceExpr().Args, sc, ctx)
		if err != nil {
			return nil, err
		}
		return &Func{Name: "coalesce", Args: args}, nil
	case n.GetMinMaxExpr() != nil:
		mm := n.GetMinMaxExpr()
		args, err := p.exprs(mm.Args, sc, ctx)
		if err != nil {
			return nil, err
		}
		name := "greatest"
		if mm.Op == pg.MinMaxOp_IS_LEAST {
			name = "least"
		}
		return &Func{Name: name, Args: args}, nil
	case n.GetSubLink() != nil:
		return p.subLink(n.GetSubLink(), sc, ctx)
	case n.GetSqlvalueFunction() != nil:
		return nil, refusal.New(refusal.Forbidden, "sql.function", "session and time functions (current_user, now, ...) are not accessible")
	}
	return nil, bad("sql.expression", "unsupported expression (%s)", nodeKind(n))
}

func nodeKind(n *pg.Node) string {
	s := fmt.Sprintf("%T", n.Node)
	s = strings.TrimPrefix(s, "*pg_query.Node_")
	return strings.ToLower(s)
}

func (p *parser) subLink(s *pg.SubLink, sc *scope, ctx exprCtx) (Expr, error) {
	inner := s.Subselect.GetSelectStmt()
	if inner == nil {
		return nil, bad("sql.select_only", "a subquery must be a SELECT")
	}
	q, err := p.selectStmt(inner, &scope{ctes: sc.ctes, parent: sc.parent})
	if err != nil {
		return nil, err
	}
	switch s.SubLinkType {
	case pg.SubLinkType_EXISTS_SUBLINK:
		return &InSub{Sub: q}, nil
	case pg.SubLinkType_ANY_SUBLINK:
		if len(s.OperName) > 0 && opName(s.OperName) != "=" {
			return nil, bad("sql.subquery", "only IN (subquery) and EXISTS are supported")
		}
		x, err := p.expr(s.Testexpr, sc, ctx)
		if err != nil {
			return nil, err
		}
		if visible(q.Items) != 1 {
			return nil, bad("sql.subquery", "IN (subquery) must select exactly one column")
		}
		return &InSub{X: x, Sub: q}, nil
	}
	return nil, bad("sql.subquery", "only IN (subquery) and EXISTS are supported")
}

func visible(items []Item) int {
	n := 0
	for _, it := range items {
		if !it.Hidden {
			n++
		}
	}
	return n
}

func opName(names []*pg.Node) string {
	var parts []string
	for _, n := range names {
		parts = append(parts, n.GetString_().GetSval())
	}
	if len(parts) == 2 && parts[0] == "pg_catalog" {
		return parts[1]
	}
	return strings.Join(parts, ".")
}

var binaryOps = map[string]string{
	"+": "+", "-": "-", "*": "*", "/": "/", "%": "%",
	"=": "=", "<>": "<>", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
	"||": "||", "~~": "LIKE", "!~~": "NOT LIKE", "~~*": "ILIKE", "!~~*": "NOT ILIKE",
}

func (p *parser) aexpr(a *pg.A_Expr, sc *scope, ctx exprCtx) (Expr, error) {
	op := opName(a.Name)
	switch a.Kind {
	case pg.A_Expr_Kind_AEXPR_OP:
		if a.Lexpr == nil {
			x, err := p.expr(a.Rexpr, sc, ctx)
			if err != nil {
				return nil, err
			}
			switch op {
			case "-":
				return &Neg{X: x}, nil
			case "+":
				return x, nil
			}
			return nil, bad("sql.operator", "unsupported prefix operator %q", op)
		}
		canon, ok := binaryOps[op]
		if !ok {
			return nil, bad("sql.operator", "unsupported operator %q", op)
		}
		l, err := p.expr(a.Lexpr, sc, ctx)
		if err != nil {
			return nil, err
		}
		r, err := p.expr(a.Rexpr, sc, ctx)
		if err != nil {
			return nil, err
		}
		return &Op{Op: canon, L: l, R: r}, nil
	case pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE:
		canon, ok := binaryOps[op]
		if !ok {
			return nil, bad("sql.operator", "unsupported operator %q", op)
		}
		l, err := p.expr(a.Lexpr, sc, ctx)
		if err != nil {
			return nil, err
		}
		r, err := p.expr(a.Rexpr, sc, ctx)
		if err != nil {
			return nil, err
		}
		return &Op{Op: canon, L: l, R: r}, nil
	case pg.A_Expr_Kind_AEXPR_IN:
		x, err := p.expr(a.Lexpr, sc, ctx)
		if err != nil {
			return nil, err
		}
		list := a.Rexpr.GetList()
		if list == nil {
			return nil, bad("sql.in", "unsupported IN list")
		}
		items, err := p.exprs(list.Items, sc, ctx)
		if err != nil {
			return nil, err
		}
		return &In{X: x, List: items, Not: op == "<>"}, nil
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN:
		x, err := p.expr(a.Lexpr, sc, ctx)
		if err != nil {
			return nil, err
		}
		list := a.Rexpr.GetList()
		if list == nil || len(list.Items) != 2 {
			return nil, bad("sql.between", "unsupported BETWEEN")
		}
		lo, err := p.expr(list.Items[0], sc, ctx)
		if err != nil {
			return nil, err
		}
		hi, err := p.expr(list.Items[1], sc, ctx)
		if err != nil {
			return nil, err
		}
		return &Between{X: x, Lo: lo, Hi: hi, Not: a.Kind == pg.A_Expr_Kind_AEXPR_NOT_BETWEEN}, nil
	case pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		l, err := p.expr(a.Lexpr, sc, ctx)
		if err != nil {
			return nil, err
		}
		r, err := p.expr(a.Rexpr, sc, ctx)
		if err != nil {
			return nil, err
		}
		o := "IS DISTINCT FROM"
		if a.Kind == pg.A_Expr_Kind_AEXPR_NOT_DISTINCT {
			o = "IS NOT DISTINCT FROM"
		}
		return &Op{Op: o, L: l, R: r}, nil
	case pg.A_Expr_Kind_AEXPR_NULLIF:
		l, err := p.expr(a.Lexpr, sc, ctx)
		if err != nil {
			return nil, err
		}
		r, err := p.expr(a.Rexpr, sc, ctx)
		if err != nil {
			return nil, err
		}
		return &Func{Name: "nullif", Args: []Expr{l, r}}, nil
	}
	return nil, bad("sql.operator", "unsupported operator form")
}

func constant(c *pg.A_Const) (Expr, error) {
	if c.Isnull {
		return &Lit{Kind: LitNull}, nil
	}
	switch v := c.Val.(type) {
	case *pg.A_Const_Ival:
		return &Lit{Kind: LitInt, Value: strconv.FormatInt(int64(v.Ival.Ival), 10)}, nil
	case *pg.A_Const_Fval:
		if _, err := strconv.ParseFloat(v.Fval.Fval, 64); err != nil {
			return nil, bad("sql.literal", "invalid number")
		}
		return &Lit{Kind: LitFloat, Value: v.Fval.Fval}, nil
	case *pg.A_Const_Sval:
		if strings.ContainsRune(v.Sval.Sval, 0) {
			return nil, bad("sql.literal", "string constants cannot contain a NUL character")
		}
		return &Lit{Kind: LitString, Value: v.Sval.Sval}, nil
	case *pg.A_Const_Boolval:
		return &Lit{Kind: LitBool, Value: strconv.FormatBool(v.Boolval.Boolval)}, nil
	}
	return nil, bad("sql.literal", "unsupported literal (bit strings are not accepted)")
}

var castTypes = map[string]string{
	"int2": "integer", "int4": "integer", "int": "integer", "integer": "integer", "smallint": "integer",
	"int8": "bigint", "bigint": "bigint",
	"float4": "double", "float8": "double", "real": "double", "double": "double", "float": "double",
	"numeric": "numeric", "decimal": "numeric",
	"text": "text", "varchar": "text", "bpchar": "text", "char": "text",
	"date": "date", "timestamp": "timestamp",
	"bool": "boolean", "boolean": "boolean",
}

func castType(t *pg.TypeName) (string, error) {
	if t == nil || len(t.ArrayBounds) > 0 || t.Setof || t.PctType {
		return "", bad("sql.cast", "unsupported cast")
	}
	name := strings.ToLower(opName(t.Names))
	if c, ok := castTypes[name]; ok {
		return c, nil
	}
	return "", bad("sql.cast", "cast to %q is not supported", name)
}

// defaultName is PostgreSQL's output name for an unaliased expression.
func defaultName(e Expr) string {
	switch x := e.(type) {
	case *Col:
		return x.Name
	case *Func:
		return x.Name
	case *Cast:
		if _, ok := x.X.(*Lit); !ok {
			return defaultName(x.X)
		}
		return x.Type
	case *Case:
		return "case"
	}
	return "?column?"
}
