package collab

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Plan is a collaboration query decomposed for the private join: what
// each side selects and filters at its own node, how payload cells are
// laid out, and how the decrypted cells become result rows.
//
// Accepted shape (anything else is refused, naming the rule):
//
//	SELECT <dimension columns>, <aggregates>
//	FROM <member>.<table> a JOIN <member>.<table> b ON a.<key> = b.<key>
//	[WHERE <conjuncts, each over one side's filter columns>]
//	[GROUP BY <the dimension columns>]
//
// with aggregates count(*) (matched identifiers), sum(x.v) and avg(x.v)
// over one side's value columns. A join counts identifiers, not row
// pairs: each side reduces its rows to one per identifier (and, when
// grouped by its own columns, to one group per identifier, picked at
// random when it has several: a bounded contribution), summing its values
// within it. The plain SQL it equals is
// `SELECT dims, count(DISTINCT key), sum(v) …` over those reduced rows.
type Plan struct {
	Sides   [2]*Side
	Outputs []Output
	// PayloadSide contributes every cell (the count and the sums); the
	// other side's dimensions go into the match key, and the payload
	// side's items are expanded over their domain.
	PayloadSide int
	// Sums are the payload side's summed columns, in cell order.
	Sums []string
	// Dims are the grouping columns of both sides, in GROUP BY order.
	Dims []Dim

	// typed are what each filter asks of its columns' types, checked by
	// each member against its own dataset before anything is read.
	typed []typeUse
}

// typeUse is one column's use in a filter: as a boolean, against a
// constant of a kind, or against another column.
type typeUse struct {
	side     int
	col      string
	as       string // "bool", "number", "string" or "column"
	other    string // the other column, for "column"
	constant any
}

// Side is one member's table in the query.
type Side struct {
	Alias  string
	Name   string // <member>.<table>
	Member string
	Table  *Table
	Key    string
	Filter string // SQL over the dataset's columns with $n placeholders; "" for none
	Args   []any
}

// Dim is a grouping column with its public domain; index len(Domain)
// is "other".
type Dim struct {
	Side   int
	Column string
	Domain []string
}

// Output is one result column.
type Output struct {
	Name string
	Kind string // "dim", "count", "sum", "avg"
	Dim  int    // for dim
	Sum  int    // for sum and avg
}

// Other is the label of values outside a dimension's domain.
const Other = "(other)"

// MaxCells bounds groups × (1 + sums).
const MaxCells = 4096

// MaxExpansion bounds the payload side's items per identifier.
const MaxExpansion = 256

// bad refuses the query's shape.
func bad(rule, format string, args ...any) *Refusal {
	r := refuse(rule, format, args...)
	r.Shape = true
	return r
}

// PlanQuery parses sql against the collaboration's tables.
func (c *Collaboration) PlanQuery(sql string, params []any) (*Plan, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, bad("collab.sql", "the query does not parse")
	}
	if len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetSelectStmt() == nil {
		return nil, bad("collab.sql", "a collaboration query is one SELECT")
	}
	s := tree.Stmts[0].Stmt.GetSelectStmt()
	if s.WithClause != nil || len(s.SortClause) > 0 || s.LimitCount != nil || s.HavingClause != nil || len(s.DistinctClause) > 0 || s.Op != pg.SetOperation_SETOP_NONE {
		return nil, bad("collab.shape", "a collaboration query takes no WITH, DISTINCT, HAVING, ORDER BY, LIMIT or set operation")
	}
	if len(s.FromClause) != 1 || s.FromClause[0].GetJoinExpr() == nil {
		return nil, bad("collab.shape", "a collaboration query joins exactly two members' tables: FROM x.t a JOIN y.t b ON a.key = b.key")
	}
	j := s.FromClause[0].GetJoinExpr()
	if j.Jointype != pg.JoinType_JOIN_INNER || j.IsNatural || len(j.UsingClause) > 0 {
		return nil, bad("collab.shape", "only an inner JOIN … ON a.key = b.key is accepted")
	}
	p := &Plan{}
	for i, n := range []*pg.Node{j.Larg, j.Rarg} {
		rv := n.GetRangeVar()
		if rv == nil {
			return nil, bad("collab.shape", "the join's sides must be members' tables")
		}
		name := rv.Schemaname + "." + rv.Relname
		t := c.Tables[name]
		if rv.Schemaname == "" || t == nil {
			return nil, bad("collab.table", "%s is not a table of collaboration %s", name, c.ID)
		}
		alias := rv.Relname
		if rv.Alias != nil {
			alias = rv.Alias.Aliasname
		}
		p.Sides[i] = &Side{Alias: alias, Name: name, Member: t.Member, Table: t}
	}
	if p.Sides[0].Member == p.Sides[1].Member {
		return nil, bad("collab.shape", "a collaboration join is between two members' tables")
	}
	if p.Sides[0].Alias == p.Sides[1].Alias {
		return nil, bad("collab.shape", "the two sides need distinct aliases")
	}
	if err := p.joinOn(j.Quals); err != nil {
		return nil, err
	}
	var args argList
	args.params = params
	if s.WhereClause != nil {
		var conj [2][]string
		for _, n := range conjuncts(s.WhereClause) {
			side, text, err := p.predicate(n, &args)
			if err != nil {
				return nil, err
			}
			conj[side] = append(conj[side], text)
		}
		for i := range conj {
			if len(conj[i]) > 0 {
				p.Sides[i].Filter = "(" + strings.Join(conj[i], ") AND (") + ")"
			}
		}
	}
	// Each side's filter is evaluated at its node with its own arguments.
	for i := range p.Sides {
		p.Sides[i].Args, p.Sides[i].Filter = args.forSide(p.Sides[i].Filter)
	}
	for _, g := range s.GroupClause {
		side, col, err := p.column(g)
		if err != nil {
			return nil, bad("collab.group", "GROUP BY takes the tables' dimension columns")
		}
		dom, ok := p.Sides[side].Table.Dimensions[col]
		if !ok {
			return nil, bad("collab.dimension", "%s.%s is not a dimension of %s", p.Sides[side].Alias, col, p.Sides[side].Name)
		}
		p.Dims = append(p.Dims, Dim{Side: side, Column: col, Domain: dom})
	}
	sumSide := -1
	for _, t := range s.TargetList {
		rt := t.GetResTarget()
		out, err := p.target(rt, &sumSide)
		if err != nil {
			return nil, err
		}
		p.Outputs = append(p.Outputs, out)
	}
	// The payload comes from the side whose values are summed; without
	// sums, from the side with the most grouping columns (fewer
	// expansions), the left on a tie.
	switch {
	case sumSide >= 0:
		p.PayloadSide = sumSide
	case p.dimsOf(1) > p.dimsOf(0):
		p.PayloadSide = 1
	}
	if p.Expansion() > MaxExpansion {
		return nil, bad("collab.groups", "grouping by %d value combinations of %s needs its partner's rows repeated for each; at most %d", p.Expansion(), p.Sides[1-p.PayloadSide].Name, MaxExpansion)
	}
	if p.Width() > MaxCells {
		return nil, bad("collab.groups", "the query has %d cells (groups × aggregates); at most %d", p.Width(), MaxCells)
	}
	return p, nil
}

func (p *Plan) dimsOf(side int) int {
	n := 0
	for _, d := range p.Dims {
		if d.Side == side {
			n++
		}
	}
	return n
}

// Groups is the number of value combinations of all dimensions.
func (p *Plan) Groups() int {
	g := 1
	for _, d := range p.Dims {
		g *= len(d.Domain) + 1
	}
	return g
}

// Width is the number of payload cells: per group, a count and the sums.
func (p *Plan) Width() int { return p.Groups() * (1 + len(p.Sums)) }

// Expansion is how many items the payload side sends per identifier: one
// per value combination of the other side's dimensions.
func (p *Plan) Expansion() int {
	e := 1
	for _, d := range p.Dims {
		if d.Side != p.PayloadSide {
			e *= len(d.Domain) + 1
		}
	}
	return e
}

func (p *Plan) joinOn(q *pg.Node) error {
	e := q.GetAExpr()
	if e == nil || e.Kind != pg.A_Expr_Kind_AEXPR_OP || opName(e) != "=" {
		return bad("collab.join", "the join condition must be a.key = b.key")
	}
	ls, lc, err1 := p.column(e.Lexpr)
	rs, rc, err2 := p.column(e.Rexpr)
	if err1 != nil || err2 != nil || ls == rs {
		return bad("collab.join", "the join condition must compare one column of each side")
	}
	for side, col := range map[int]string{ls: lc, rs: rc} {
		if !slices.Contains(p.Sides[side].Table.JoinKeys, col) {
			return bad("collab.join_key", "%s.%s is not a join key %s allows", p.Sides[side].Alias, col, p.Sides[side].Member)
		}
		p.Sides[side].Key = col
	}
	return nil
}

// column resolves alias.column (or an unambiguous bare column is refused:
// a collaboration query names its side).
func (p *Plan) column(n *pg.Node) (int, string, error) {
	cr := n.GetColumnRef()
	if cr == nil || len(cr.Fields) != 2 {
		return 0, "", fmt.Errorf("not alias.column")
	}
	a, c := cr.Fields[0].GetString_(), cr.Fields[1].GetString_()
	if a == nil || c == nil {
		return 0, "", fmt.Errorf("not alias.column")
	}
	for i, s := range p.Sides {
		if s.Alias == a.Sval {
			return i, c.Sval, nil
		}
	}
	return 0, "", fmt.Errorf("unknown alias")
}

func opName(e *pg.A_Expr) string {
	if len(e.Name) != 1 || e.Name[0].GetString_() == nil {
		return ""
	}
	return e.Name[0].GetString_().Sval
}

func conjuncts(n *pg.Node) []*pg.Node {
	if b := n.GetBoolExpr(); b != nil && b.Boolop == pg.BoolExprType_AND_EXPR {
		var out []*pg.Node
		for _, a := range b.Args {
			out = append(out, conjuncts(a)...)
		}
		return out
	}
	return []*pg.Node{n}
}

// argList collects literal values as bound arguments: no value is ever
// written into SQL text a member's engine runs.
type argList struct {
	params []any
	vals   []any
}

// add returns a unique mark for the value; forSide turns the marks in a
// side's filter into that side's placeholders.
func (a *argList) add(v any) string {
	if n, ok := v.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			v = i
		} else if f, err := n.Float64(); err == nil {
			v = f
		}
	}
	a.vals = append(a.vals, v)
	return fmt.Sprintf("\x00%d\x00", len(a.vals)-1)
}

// forSide renumbers the placeholders of one side's filter to $1…
func (a *argList) forSide(filter string) ([]any, string) {
	var out []any
	for i, v := range a.vals {
		mark := fmt.Sprintf("\x00%d\x00", i)
		if strings.Contains(filter, mark) {
			out = append(out, v)
			filter = strings.ReplaceAll(filter, mark, "$"+strconv.Itoa(len(out)))
		}
	}
	return out, filter
}

// predicate translates one WHERE conjunct over a single side's filter
// columns into SQL for that side's engine.
func (p *Plan) predicate(n *pg.Node, args *argList) (int, string, error) {
	side := -1
	text, err := p.predicateArg(n, &side, args)
	if err != nil {
		return 0, "", err
	}
	if side < 0 {
		return 0, "", bad("collab.filter", "a WHERE condition must test a column")
	}
	return side, text, nil
}

var comparisons = map[string]bool{"=": true, "<>": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true}

// operand is what a comparison's side is: a column or a constant.
type operand struct {
	col      string
	kind     string // for constants: number, string, bool
	constant any
}

func constKind(v any) (string, bool) {
	switch v.(type) {
	case int64, float64, int, int32, float32:
		return "number", true
	case string:
		return "string", true
	case bool:
		return "bool", true
	}
	return "", false
}

// operand reads a comparison's side: a column (recorded in side) or a
// bound constant.
func (p *Plan) operand(n *pg.Node, side *int, args *argList) (string, operand, error) {
	text, err := p.expr(n, side, args)
	if err != nil {
		return "", operand{}, err
	}
	if n.GetColumnRef() != nil {
		_, col, _ := p.column(n)
		return text, operand{col: col}, nil
	}
	if n.GetAConst() == nil && n.GetParamRef() == nil {
		return "", operand{}, bad("collab.filter", "a comparison takes a filter column and a constant")
	}
	v := args.vals[len(args.vals)-1]
	k, ok := constKind(v)
	if !ok {
		return "", operand{}, bad("collab.filter", "constants and parameters are numbers, strings or booleans")
	}
	return text, operand{kind: k, constant: v}, nil
}

// compare records what a comparison of two operands asks of the types.
func (p *Plan) compare(side int, l, r operand) error {
	switch {
	case l.col != "" && r.col != "":
		p.typed = append(p.typed, typeUse{side: side, col: l.col, as: "column", other: r.col})
	case l.col != "":
		p.typed = append(p.typed, typeUse{side: side, col: l.col, as: r.kind, constant: r.constant})
	case r.col != "":
		p.typed = append(p.typed, typeUse{side: side, col: r.col, as: l.kind, constant: l.constant})
	default:
		return bad("collab.filter", "a comparison must test a filter column")
	}
	return nil
}

// predicateArg is an argument of AND/OR/NOT or a whole condition: a bare
// column must be boolean.
func (p *Plan) predicateArg(n *pg.Node, side *int, args *argList) (string, error) {
	text, err := p.expr(n, side, args)
	if err != nil {
		return "", err
	}
	if n.GetColumnRef() != nil {
		_, col, _ := p.column(n)
		p.typed = append(p.typed, typeUse{side: *side, col: col, as: "bool"})
	} else if n.GetAConst() != nil || n.GetParamRef() != nil {
		return "", bad("collab.filter", "a condition must test a column")
	}
	return text, nil
}

func (p *Plan) expr(n *pg.Node, side *int, args *argList) (string, error) {
	switch {
	case n.GetColumnRef() != nil:
		s, col, err := p.column(n)
		if err != nil {
			return "", bad("collab.filter", "columns in WHERE are written alias.column")
		}
		if *side >= 0 && *side != s {
			return "", bad("collab.filter", "a WHERE condition may test one side only (each side filters its own rows)")
		}
		t := p.Sides[s].Table
		if !slices.Contains(t.Filters, col) {
			return "", bad("collab.filter", "%s.%s is not a filter column of %s", p.Sides[s].Alias, col, p.Sides[s].Name)
		}
		*side = s
		return `"` + col + `"`, nil
	case n.GetAConst() != nil:
		v, err := constant(n.GetAConst())
		if err != nil {
			return "", err
		}
		return args.add(v), nil
	case n.GetParamRef() != nil:
		i := int(n.GetParamRef().Number)
		if i < 1 || i > len(args.params) {
			return "", bad("collab.params", "parameter $%d is not bound", i)
		}
		return args.add(args.params[i-1]), nil
	case n.GetBoolExpr() != nil:
		b := n.GetBoolExpr()
		var parts []string
		for _, a := range b.Args {
			s, err := p.predicateArg(a, side, args)
			if err != nil {
				return "", err
			}
			parts = append(parts, "("+s+")")
		}
		switch b.Boolop {
		case pg.BoolExprType_AND_EXPR:
			return strings.Join(parts, " AND "), nil
		case pg.BoolExprType_OR_EXPR:
			return strings.Join(parts, " OR "), nil
		default:
			return "NOT " + parts[0], nil
		}
	case n.GetNullTest() != nil:
		t := n.GetNullTest()
		s, err := p.expr(t.Arg, side, args)
		if err != nil {
			return "", err
		}
		if t.Nulltesttype == pg.NullTestType_IS_NULL {
			return s + " IS NULL", nil
		}
		return s + " IS NOT NULL", nil
	case n.GetAExpr() != nil:
		e := n.GetAExpr()
		op := opName(e)
		switch {
		case e.Kind == pg.A_Expr_Kind_AEXPR_OP && comparisons[op]:
			l, lo, err := p.operand(e.Lexpr, side, args)
			if err != nil {
				return "", err
			}
			r, ro, err := p.operand(e.Rexpr, side, args)
			if err != nil {
				return "", err
			}
			if err := p.compare(*side, lo, ro); err != nil {
				return "", err
			}
			if op == "!=" {
				op = "<>"
			}
			return l + " " + op + " " + r, nil
		case e.Kind == pg.A_Expr_Kind_AEXPR_IN:
			l, lo, err := p.operand(e.Lexpr, side, args)
			if err != nil {
				return "", err
			}
			if lo.col == "" {
				return "", bad("collab.filter", "IN tests a filter column")
			}
			list := e.Rexpr.GetList()
			if list == nil {
				return "", bad("collab.filter", "IN takes a list of constants")
			}
			var items []string
			for _, it := range list.Items {
				if it.GetAConst() == nil && it.GetParamRef() == nil {
					return "", bad("collab.filter", "IN takes a list of constants")
				}
				s, io, err := p.operand(it, side, args)
				if err != nil {
					return "", err
				}
				if err := p.compare(*side, lo, io); err != nil {
					return "", err
				}
				items = append(items, s)
			}
			not := ""
			if op == "<>" {
				not = "NOT "
			}
			return l + " " + not + "IN (" + strings.Join(items, ", ") + ")", nil
		}
	}
	return "", bad("collab.filter", "a WHERE condition may compare filter columns with constants (=, <>, <, <=, >, >=, IN, IS NULL, AND, OR, NOT)")
}

func constant(c *pg.A_Const) (any, error) {
	switch v := c.Val.(type) {
	case *pg.A_Const_Ival:
		return int64(v.Ival.Ival), nil
	case *pg.A_Const_Fval:
		f, err := strconv.ParseFloat(v.Fval.Fval, 64)
		if err != nil {
			return nil, bad("collab.filter", "a numeric constant does not parse")
		}
		return f, nil
	case *pg.A_Const_Sval:
		return v.Sval.Sval, nil
	case *pg.A_Const_Boolval:
		return v.Boolval.Boolval, nil
	}
	return nil, bad("collab.filter", "constants are numbers, strings or booleans")
}

// target reads one select-list entry.
func (p *Plan) target(rt *pg.ResTarget, sumSide *int) (Output, error) {
	if rt == nil {
		return Output{}, bad("collab.select", "unsupported select entry")
	}
	if f := rt.Val.GetFuncCall(); f != nil {
		name := ""
		if len(f.Funcname) > 0 && f.Funcname[len(f.Funcname)-1].GetString_() != nil {
			name = strings.ToLower(f.Funcname[len(f.Funcname)-1].GetString_().Sval)
		}
		out := Output{Name: rt.Name}
		if out.Name == "" {
			out.Name = name
		}
		if f.AggFilter != nil || f.Over != nil || len(f.AggOrder) > 0 {
			return out, bad("collab.aggregate", "aggregates take no FILTER, OVER or ORDER BY")
		}
		switch {
		case name == "count" && (f.AggStar || (f.AggDistinct && len(f.Args) == 1 && p.isKey(f.Args[0]))):
			out.Kind = "count"
			return out, nil
		case (name == "sum" || name == "avg") && len(f.Args) == 1 && !f.AggDistinct:
			side, col, err := p.column(f.Args[0])
			if err != nil {
				return out, bad("collab.aggregate", "%s takes one side's value column, alias.column", name)
			}
			if _, ok := p.Sides[side].Table.Values[col]; !ok {
				return out, bad("collab.value", "%s.%s is not a value column of %s", p.Sides[side].Alias, col, p.Sides[side].Name)
			}
			if *sumSide >= 0 && *sumSide != side {
				return out, bad("collab.aggregate_sides", "sums over both sides' columns in one query would need the product of two encrypted values; sum one side's columns per query")
			}
			*sumSide = side
			i := slices.Index(p.Sums, col)
			if i < 0 {
				p.Sums = append(p.Sums, col)
				i = len(p.Sums) - 1
			}
			out.Kind, out.Sum = name, i
			return out, nil
		}
		return out, bad("collab.aggregate", "the aggregates are count(*), sum(x.v) and avg(x.v)")
	}
	side, col, err := p.column(rt.Val)
	if err != nil {
		return Output{}, bad("collab.select", "the select list holds grouping columns (alias.column) and aggregates")
	}
	for i, d := range p.Dims {
		if d.Side == side && d.Column == col {
			name := rt.Name
			if name == "" {
				name = col
			}
			return Output{Name: name, Kind: "dim", Dim: i}, nil
		}
	}
	return Output{}, bad("collab.group", "%s.%s is selected but not grouped by", p.Sides[side].Alias, col)
}

func (p *Plan) isKey(n *pg.Node) bool {
	s, col, err := p.column(n)
	return err == nil && p.Sides[s].Key == col
}

// CheckTypes checks a side's filter against its dataset's column types
// (workspace types: text, integer, double, decimal, date, timestamp,
// boolean) before any row is read, so no condition can fail on some rows
// only: a failure that depends on the data would answer a question about
// it. A bare column must be boolean; a constant must be of its column's
// kind (a date or timestamp given as a string that parses); two columns
// compared must be of one kind.
func (p *Plan) CheckTypes(side int, types map[string]string) error {
	family := func(t string) string {
		switch t {
		case "integer", "double", "decimal":
			return "number"
		case "text":
			return "string"
		case "date", "timestamp":
			return "time"
		case "boolean":
			return "bool"
		}
		return t
	}
	for _, u := range p.typed {
		if u.side != side {
			continue
		}
		name := p.Sides[side].Alias + "." + u.col
		f := family(types[u.col])
		ok := false
		switch u.as {
		case "column":
			// dates and timestamps compare only with their own type: a cast
			// of an extreme date to a timestamp fails on that row alone
			ok = f == family(types[u.other]) && f != "" && (f != "time" || types[u.col] == types[u.other])
		case "string":
			ok = f == "string" || (f == "time" && parsesAsTime(u.constant.(string)))
		default:
			ok = f == u.as
		}
		if !ok {
			return bad("collab.filter", "the condition on %s does not fit its type (%s)", name, types[u.col])
		}
	}
	// Summed columns must be numbers: converting another type could fail
	// on some rows only.
	if side == p.PayloadSide {
		for _, v := range p.Sums {
			if family(types[v]) != "number" {
				return bad("collab.value", "%s.%s is %s, not a number", p.Sides[side].Alias, v, types[v])
			}
		}
	}
	return nil
}

func parsesAsTime(s string) bool {
	for _, layout := range []string{"2006-01-02", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", time.RFC3339Nano} {
		if _, err := time.Parse(layout, s); err == nil {
			return true
		}
	}
	return false
}
