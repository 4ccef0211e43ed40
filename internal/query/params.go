package query

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// ParamTypes infers the type of each $n in sql for wire protocols that
// describe parameters before binding them: a parameter compared with a
// dataset column takes that column's type, LIMIT and OFFSET take integer,
// anything else is text. Keys are parameter numbers.
func ParamTypes(sql string, cat Catalog, datasets []string) map[int]string {
	out := map[int]string{}
	tree, err := pg.Parse(sql)
	if err != nil {
		return out
	}
	colType := func(n *pg.Node) string {
		cr := n.GetColumnRef()
		if cr == nil || len(cr.Fields) == 0 {
			return ""
		}
		name := strings.ToLower(cr.Fields[len(cr.Fields)-1].GetString_().GetSval())
		for _, d := range datasets {
			if m := cat(d); m != nil {
				for _, c := range m.Columns {
					if c.Name == name {
						return wireType(c.Type)
					}
				}
			}
		}
		return ""
	}
	param := func(n *pg.Node) int {
		if p := n.GetParamRef(); p != nil {
			return int(p.Number)
		}
		if tc := n.GetTypeCast(); tc != nil {
			if p := tc.Arg.GetParamRef(); p != nil {
				return int(p.Number)
			}
		}
		return 0
	}
	var walk func(n *pg.Node)
	walk = func(n *pg.Node) {
		if n == nil {
			return
		}
		if a := n.GetAExpr(); a != nil {
			sides := []*pg.Node{a.Lexpr, a.Rexpr}
			if l := a.Rexpr.GetList(); l != nil {
				sides = append([]*pg.Node{a.Lexpr}, l.Items...)
			}
			t := ""
			for _, s := range sides {
				if ct := colType(s); ct != "" {
					t = ct
				}
			}
			for _, s := range sides {
				if p := param(s); p > 0 && t != "" {
					out[p] = t
				}
			}
		}
		if s := n.GetSelectStmt(); s != nil {
			for _, x := range []*pg.Node{s.LimitCount, s.LimitOffset} {
				if p := param(x); p > 0 {
					out[p] = "integer"
				}
			}
		}
		// Descend generically through the message tree.
		pgWalk(n, walk)
	}
	for _, st := range tree.Stmts {
		walk(st.Stmt)
	}
	return out
}

// MaxParams is the most parameters a statement may take: PostgreSQL's own
// limit (the wire protocol counts them in 16 bits). A $n above it would
// have the caller allocate n slots before anything else is checked.
const MaxParams = 65535

// ParamCount is the highest $n in sql, read from PostgreSQL's own parse
// tree (0 if sql does not parse, when it is refused anyway): a lexical
// scan would count a $1 inside a string, and psql-wire's panics on some
// texts.
func ParamCount(sql string) int {
	tree, err := pg.Parse(sql)
	if err != nil {
		return 0
	}
	n := 0
	var walk func(x *pg.Node)
	walk = func(x *pg.Node) {
		if x == nil {
			return
		}
		if p := x.GetParamRef(); p != nil {
			n = max(n, int(p.Number))
		}
		pgWalk(x, walk)
	}
	for _, st := range tree.Stmts {
		walk(st.Stmt)
	}
	return n
}
