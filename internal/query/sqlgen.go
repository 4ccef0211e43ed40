package query

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Dialect names an engine's SQL flavour.
type Dialect string

// The dialects SQL is generated for.
const (
	DuckDB   Dialect = "duckdb"
	Postgres Dialect = "postgres"
)

// numericLiteral is the grammar of a number written into SQL unquoted.
var numericLiteral = regexp.MustCompile(`^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$`)

// maxTextLen caps every text that replace, concat and || build. Nested,
// they would grow a string exponentially (replace(replace(x, '9',
// '9999999999'), ...)), so that a condition reached only by hidden rows
// could make a query run out of time; capped at each level the growth is
// linear in the nesting.
const maxTextLen = "65536"

// QuoteIdent quotes an identifier for both dialects.
func QuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// QuoteString quotes a string literal for both dialects (standard
// conforming strings: only the quote is special). It is for text Airlock
// parses itself (row filters); engine SQL uses quoteLiteral.
func QuoteString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// quoteLiteral writes a string constant of engine SQL. PostgreSQL gets an
// escape string E'...', whose meaning does not depend on the connection's
// standard_conforming_strings: under 'off', a plain '...' literal treats
// backslash as an escape, and an analyst's \' would end the literal early.
func quoteLiteral(d Dialect, s string) string {
	if d == Postgres {
		return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
	}
	return QuoteString(s)
}

// gen writes engine SQL from the IR. Every identifier and literal it writes
// comes from the IR, never from client text.
type gen struct {
	d Dialect
	// scan renders a dataset scan's FROM item (table, masks, filters).
	scan func(s *Source) string
	// colName maps a column reference to its SQL text; nil uses alias.name.
	colName func(c *Col) string
	// hidden decides the extra items a derived table carries (unit columns).
	extraItems func(q *Select) []string
	// grants type masked columns (see exprType).
	grants map[string]*Grant
	// bind, if set, renders a string constant as a bind parameter.
	bind func(string) string
	b    strings.Builder
}

func (g *gen) w(parts ...string) {
	for _, p := range parts {
		g.b.WriteString(p)
	}
}

func (g *gen) selectSQL(q *Select, extra []string) {
	if len(q.With) > 0 {
		g.w("WITH ")
		for i, c := range q.With {
			if i > 0 {
				g.w(", ")
			}
			g.w(QuoteIdent("cte_"+c.Name), " AS (")
			g.selectSQL(c.Query, g.extra(c.Query))
			g.w(")")
		}
		g.w(" ")
	}
	g.w("SELECT ")
	if q.Distinct {
		g.w("DISTINCT ")
	}
	n := 0
	for _, it := range q.Items {
		if n > 0 {
			g.w(", ")
		}
		g.expr(it.Expr)
		g.w(" AS ", QuoteIdent(it.Name))
		n++
	}
	for _, e := range extra {
		if n > 0 {
			g.w(", ")
		}
		g.w(e)
		n++
	}
	g.w(" FROM ")
	for i, s := range q.From {
		if i > 0 {
			switch s.Join {
			case JoinInner:
				g.w(" JOIN ")
			case JoinLeft:
				g.w(" LEFT JOIN ")
			case JoinRight:
				g.w(" RIGHT JOIN ")
			case JoinFull:
				g.w(" FULL JOIN ")
			default:
				g.w(" CROSS JOIN ")
			}
		}
		g.source(s)
		if i > 0 && s.Join != JoinCross && s.Join != JoinNone {
			g.w(" ON ")
			if s.On == nil {
				g.w("TRUE")
			} else {
				g.expr(s.On)
			}
		}
	}
	if q.Where != nil {
		g.w(" WHERE ")
		g.expr(q.Where)
	}
	if len(q.GroupBy) > 0 {
		g.w(" GROUP BY ")
		for i, e := range q.GroupBy {
			if i > 0 {
				g.w(", ")
			}
			g.expr(e)
		}
	}
	if q.Having != nil {
		g.w(" HAVING ")
		g.expr(q.Having)
	}
	g.orderLimit(q.OrderBy, q.Limit, q.Offset)
}

func (g *gen) orderLimit(order []Order, limit, offset *int64) {
	if len(order) > 0 {
		g.w(" ORDER BY ")
		for i, o := range order {
			if i > 0 {
				g.w(", ")
			}
			g.expr(o.Expr)
			if o.Desc {
				g.w(" DESC")
			}
			if o.NullsFirst != nil {
				if *o.NullsFirst {
					g.w(" NULLS FIRST")
				} else {
					g.w(" NULLS LAST")
				}
			}
		}
	}
	if limit != nil {
		g.w(" LIMIT ", strconv.FormatInt(*limit, 10))
	}
	if offset != nil {
		g.w(" OFFSET ", strconv.FormatInt(*offset, 10))
	}
}

func (g *gen) extra(q *Select) []string {
	if g.extraItems == nil {
		return nil
	}
	return g.extraItems(q)
}

func (g *gen) source(s *Source) {
	switch {
	case s.Dataset != nil:
		g.w(g.scan(s))
	case s.CTEName != "":
		g.w(QuoteIdent("cte_"+s.CTEName), " AS ", QuoteIdent(s.Alias))
	default:
		g.w("(")
		g.selectSQL(s.Sub, g.extra(s.Sub))
		g.w(") AS ", QuoteIdent(s.Alias))
	}
}

var opSQL = map[string]string{
	"LIKE": " LIKE ", "NOT LIKE": " NOT LIKE ", "ILIKE": " ILIKE ", "NOT ILIKE": " NOT ILIKE ",
	"AND": " AND ", "OR": " OR ", "IS DISTINCT FROM": " IS DISTINCT FROM ", "IS NOT DISTINCT FROM": " IS NOT DISTINCT FROM ",
}

func (g *gen) expr(e Expr) {
	if partialNode(e) {
		g.partial(e)
		return
	}
	switch x := e.(type) {
	case *Col:
		if g.colName != nil {
			g.w(g.colName(x))
			return
		}
		g.w(QuoteIdent(x.Source.Alias), ".", QuoteIdent(x.Name))
	case *Lit:
		g.lit(x)
	case *Op:
		if x.Op == "||" {
			g.w("left(")
			defer g.w(", ", maxTextLen, ")")
		}
		g.w("(")
		g.expr(x.L)
		if s, ok := opSQL[x.Op]; ok {
			g.w(s)
		} else {
			g.w(" ", x.Op, " ")
		}
		g.expr(x.R)
		g.w(")")
	case *Not:
		g.w("(NOT ")
		g.expr(x.X)
		g.w(")")
	case *Neg:
		g.w("(- ")
		g.expr(x.X)
		g.w(")")
	case *Func:
		g.fnCall(x)
	case *Cast:
		g.cast(x)
	case *Case:
		g.w("CASE")
		if x.Operand != nil {
			g.w(" ")
			g.expr(x.Operand)
		}
		for _, wh := range x.Whens {
			g.w(" WHEN ")
			g.expr(wh.Cond)
			g.w(" THEN ")
			g.expr(wh.Then)
		}
		if x.Else != nil {
			g.w(" ELSE ")
			g.expr(x.Else)
		}
		g.w(" END")
	case *In:
		g.w("(")
		g.expr(x.X)
		if x.Not {
			g.w(" NOT")
		}
		g.w(" IN (")
		for i, a := range x.List {
			if i > 0 {
				g.w(", ")
			}
			g.expr(a)
		}
		g.w("))")
	case *InSub:
		g.w("(")
		if x.X == nil {
			if x.Not {
				g.w("NOT ")
			}
			g.w("EXISTS (")
		} else {
			g.expr(x.X)
			if x.Not {
				g.w(" NOT")
			}
			g.w(" IN (")
		}
		g.selectSQL(x.Sub, nil)
		g.w("))")
	case *Between:
		g.w("(")
		g.expr(x.X)
		if x.Not {
			g.w(" NOT")
		}
		g.w(" BETWEEN ")
		g.expr(x.Lo)
		g.w(" AND ")
		g.expr(x.Hi)
		g.w(")")
	case *IsNull:
		g.w("(")
		g.expr(x.X)
		if x.Not {
			g.w(" IS NOT NULL)")
		} else {
			g.w(" IS NULL)")
		}
	case *Raw:
		g.w(x.SQL[string(g.d)])
	default:
		panic(fmt.Sprintf("query: no SQL for %T", e))
	}
}

func (g *gen) lit(l *Lit) {
	switch l.Kind {
	case LitNull:
		g.w("NULL")
	case LitInt, LitFloat:
		// Parenthesized so a negative never merges with a preceding minus
		// into a comment. Only text of the numeric grammar is written
		// unquoted: anything else (NaN, Inf) would be an identifier.
		if !numericLiteral.MatchString(l.Value) {
			g.w("NULL")
			return
		}
		g.w("(", l.Value, ")")
	case LitBool:
		if l.Value == "true" {
			g.w("TRUE")
		} else {
			g.w("FALSE")
		}
	case LitString:
		if g.bind != nil && g.d == Postgres {
			// Typed text: every constant next to another type became a
			// Cast (typeLiterals), so the rest are text.
			g.w("CAST(", g.bind(l.Value), " AS text)")
			return
		}
		g.w(quoteLiteral(g.d, l.Value))
	}
}

func (g *gen) aggArg(f *Func, a Expr) {
	if g.d == Postgres {
		g.w(g.pgAggArg(f, a))
		return
	}
	g.expr(a)
}

var castSQL = map[Dialect]map[string]string{
	DuckDB:   {"integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE", "numeric": "DECIMAL(18,6)", "text": "VARCHAR", "date": "DATE", "timestamp": "TIMESTAMP", "boolean": "BOOLEAN"},
	Postgres: {"integer": "integer", "bigint": "bigint", "double": "double precision", "numeric": "numeric", "text": "text", "date": "date", "timestamp": "timestamp", "boolean": "boolean"},
}

func (g *gen) cast(c *Cast) {
	t := castSQL[g.d][c.Type]
	// A failed conversion would put the offending value into the engine's
	// error text; in DuckDB TRY_CAST yields NULL instead. PostgreSQL errors
	// are sanitized by the engine adapter.
	// Literals were checked by checkTotal; DuckDB still uses TRY_CAST for
	// them, as belt and braces.
	if g.d == DuckDB {
		g.w("TRY_CAST(")
		g.expr(c.X)
		g.w(" AS ", t, ")")
		return
	}
	if _, isLit := c.X.(*Lit); !isLit {
		g.pgCast(c, t)
		return
	}
	g.w("CAST(")
	g.expr(c.X)
	g.w(" AS ", t, ")")
}

// fnCall writes a function call as is; partial functions reach it through
// total rendering (total.go), which has already made its arguments safe.
func (g *gen) fnCall(f *Func) {
	if f.Name == "replace" || f.Name == "concat" {
		g.w("left(")
		defer g.w(", ", maxTextLen, ")")
	}
	name := f.Name
	switch {
	case f.Name == "median" || f.Name == "percentile_cont":
		frac := strconv.FormatFloat(f.Fraction, 'g', -1, 64)
		g.w("percentile_cont(", frac, ") WITHIN GROUP (ORDER BY ")
		g.aggArg(f, f.Args[0])
		g.w(")")
		return
	case f.Name == "stddev":
		name = "stddev_samp"
	case f.Name == "variance":
		name = "var_samp"
	case f.Name == "list" && g.d == Postgres:
		name = "array_agg"
	case f.Name == "any_value" && g.d == Postgres:
		name = "min"
	case f.Name == "length" || f.Name == "char_length":
		name = "length"
	}
	g.w(name, "(")
	if f.Star {
		g.w("*)")
		return
	}
	if f.Distinct {
		g.w("DISTINCT ")
	}
	for i, a := range f.Args {
		if i > 0 {
			g.w(", ")
		}
		if f.Agg {
			g.aggArg(f, a)
			continue
		}
		g.expr(a)
	}
	g.w(")")
}
