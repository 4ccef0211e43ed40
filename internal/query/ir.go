package query

import "github.com/airlock-dev/airlock/internal/workspace"

// Select is one query block of the logical IR: a FROM tree of registered
// datasets and derived tables, a filter, an optional aggregation and the
// output list. Everything the SQL operation can answer is a Select; anything the
// parser cannot map onto one is refused.
type Select struct {
	With     []*CTE
	From     []*Source
	Where    Expr
	GroupBy  []Expr
	Having   Expr
	Items    []Item
	OrderBy  []Order
	Limit    *int64
	Offset   *int64
	Distinct bool
}

// CTE is a named derived table from a WITH clause.
type CTE struct {
	Name  string
	Query *Select
}

// JoinKind says how a source joins the sources before it.
type JoinKind int

// The join kinds; the first source of a FROM has JoinNone.
const (
	JoinNone JoinKind = iota
	JoinInner
	JoinLeft
	JoinRight
	JoinFull
	JoinCross
)

// Source is one item of a FROM tree: a registered dataset or a derived table,
// with how it joins what comes before it.
type Source struct {
	Alias   string
	Dataset *workspace.Manifest // set for a scan of a registered dataset
	Sub     *Select             // set for a derived table (subquery or CTE)
	CTEName string              // the CTE a derived table came from, if any
	Join    JoinKind
	On      Expr
	// Using lists USING columns, rewritten to an equality in On.
	Using []string
}

// Item is one output column.
type Item struct {
	Expr Expr
	Name string
	// Hidden items are added by the planner (distinct-unit counts) and are
	// never returned to the client.
	Hidden bool
}

// Order is one ORDER BY key.
type Order struct {
	Expr       Expr
	Desc       bool
	NullsFirst *bool
}

// Expr is a scalar or aggregate expression.
type Expr interface{ exprNode() }

// Col is a resolved column reference. Source points at the FROM item it
// reads; Origin is the dataset column it passes through, if any.
type Col struct {
	Source *Source
	Name   string
	// Origin is the dataset column this reference carries unchanged, nil for
	// a derived table's computed column.
	Origin *Origin
	// Derived lists every dataset column a computed column was built from.
	Derived []*Origin
	// Aggregated is true when the column is the output of an aggregate in
	// a derived table.
	Aggregated bool
}

// Origin names a column of a registered dataset as scanned by a Source.
type Origin struct {
	Scan   *Source
	Column *workspace.Column
}

// LitKind is the type of a literal.
type LitKind int

// The literal kinds.
const (
	LitNull LitKind = iota
	LitInt
	LitFloat
	LitString
	LitBool
)

// Lit is a literal constant.
type Lit struct {
	Kind  LitKind
	Value string // decimal text for numbers, raw text for strings, "true"/"false"
}

// Op is a binary operator: arithmetic, comparison, AND, OR, LIKE, ||.
type Op struct {
	Op   string
	L, R Expr
}

// Not negates a boolean expression; Neg negates a number.
type Not struct{ X Expr }

// Neg is unary minus.
type Neg struct{ X Expr }

// Func is a call of an allow-listed scalar or aggregate function.
type Func struct {
	Name     string // canonical lower-case name
	Args     []Expr
	Star     bool // COUNT(*)
	Distinct bool
	Agg      bool
	// Fraction is the percentile for percentile_cont / median (0.5).
	Fraction float64
}

// Cast converts to an allow-listed type.
type Cast struct {
	X    Expr
	Type string // canonical: bigint, integer, double, numeric, text, date, timestamp, boolean
}

// Case is CASE [operand] WHEN ... THEN ... ELSE ... END.
type Case struct {
	Operand Expr
	Whens   []When
	Else    Expr
}

// When is one arm of a Case.
type When struct{ Cond, Then Expr }

// In is x [NOT] IN (list).
type In struct {
	X    Expr
	List []Expr
	Not  bool
}

// InSub is x [NOT] IN (subquery) or EXISTS (subquery) when X is nil.
type InSub struct {
	X   Expr
	Sub *Select
	Not bool
}

// Between is x [NOT] BETWEEN lo AND hi.
type Between struct {
	X, Lo, Hi Expr
	Not       bool
}

// IsNull is x IS [NOT] NULL.
type IsNull struct {
	X   Expr
	Not bool
}

// Raw is SQL text the planner writes itself (never from a client), used for
// masks and bounded-contribution rewrites.
type Raw struct {
	SQL map[string]string // dialect -> text
}

func (*Col) exprNode()     {}
func (*Lit) exprNode()     {}
func (*Op) exprNode()      {}
func (*Not) exprNode()     {}
func (*Neg) exprNode()     {}
func (*Func) exprNode()    {}
func (*Cast) exprNode()    {}
func (*Case) exprNode()    {}
func (*In) exprNode()      {}
func (*InSub) exprNode()   {}
func (*Between) exprNode() {}
func (*IsNull) exprNode()  {}
func (*Raw) exprNode()     {}

// Walk calls fn on e and every expression below it (not descending into
// subqueries) until fn returns false.
func Walk(e Expr, fn func(Expr) bool) {
	if e == nil || !fn(e) {
		return
	}
	switch x := e.(type) {
	case *Op:
		Walk(x.L, fn)
		Walk(x.R, fn)
	case *Not:
		Walk(x.X, fn)
	case *Neg:
		Walk(x.X, fn)
	case *Func:
		for _, a := range x.Args {
			Walk(a, fn)
		}
	case *Cast:
		Walk(x.X, fn)
	case *Case:
		Walk(x.Operand, fn)
		for _, w := range x.Whens {
			Walk(w.Cond, fn)
			Walk(w.Then, fn)
		}
		Walk(x.Else, fn)
	case *In:
		Walk(x.X, fn)
		for _, a := range x.List {
			Walk(a, fn)
		}
	case *InSub:
		Walk(x.X, fn)
	case *Between:
		Walk(x.X, fn)
		Walk(x.Lo, fn)
		Walk(x.Hi, fn)
	case *IsNull:
		Walk(x.X, fn)
	}
}

// HasAggregate reports whether e contains an aggregate call.
func HasAggregate(e Expr) bool {
	found := false
	Walk(e, func(x Expr) bool {
		if f, ok := x.(*Func); ok && f.Agg {
			found = true
		}
		return !found
	})
	return found
}
