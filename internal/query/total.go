package query

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/refusal"
)

// Total rendering.
//
// An engine error that happens only for some rows is a one-bit oracle: a
// WHERE clause such as ln(CASE WHEN <predicate on one person> THEN 0 ELSE 1 END)
// would tell, by failing or not, whether any hidden row matches. So the
// generated SQL is total: every operation that can raise on some input
// (integer and decimal overflow, division by zero, logarithms and roots
// outside their domain, out-of-range conversions, negative substring
// lengths) is written in a form that yields NULL (or a saturated value far
// outside any real data) instead of an error. Whatever an analyst writes,
// the engine either refuses the statement before reading a row (a static
// binder or type error, a function of the query text alone) or answers it.
//
// DuckDB: a partial operation in scalar context is wrapped in try(), which
// turns its error into NULL. try() cannot enclose aggregates or subqueries,
// so above those the operands are converted to DOUBLE, whose arithmetic
// never raises (it yields ±Inf or NaN, which the engine adapters release as
// NULL), and domain-restricted functions get explicit guards.
//
// PostgreSQL has no try(). Numbers are computed in numeric, which is exact
// and cannot overflow below 10^131072; every arithmetic operand is clamped to
// ±10^1000 by clampNumeric (one evaluation, NULL preserved), so no chain of
// operations, however deep, comes near that limit. Divisors pass through
// NULLIF(x, 0); ln, sqrt, exp and power are guarded by CASE; integer
// arguments of text functions are range-checked; casts from text to other
// types, which PostgreSQL 15 cannot test without trying, are refused before
// anything runs (DuckDB's TRY_CAST makes them total there).
//
// Guards that repeat an operand make the SQL grow with nesting; Planner.Plan
// refuses a generated statement larger than MaxGeneratedSQL, a decision
// that depends on the query text only.

// MaxGeneratedSQL bounds the engine SQL one query may generate.
const MaxGeneratedSQL = 1 << 20

// pgBound is the magnitude every PostgreSQL numeric operand is clamped to.
// Any real value is far below it; a product of two clamped operands
// (10^2000) is far below numeric's limit.
const pgBound = "1e1000"

func isNumberType(t string) bool { return t == "integer" || t == "double" }

func isArith(op string) bool {
	switch op {
	case "+", "-", "*", "/", "%":
		return true
	}
	return false
}

// numericFuncs are scalar functions over numbers that can fail on data in
// at least one engine.
var numericFuncs = map[string]bool{
	"abs": true, "sqrt": true, "ln": true, "exp": true, "power": true, "mod": true,
	"round": true, "floor": true, "ceil": true, "sign": true,
}

// intArgFuncs take integer positions or lengths: arg index → minimum.
var intArgFuncs = map[string]map[int]bool{
	"substr": {1: true, 2: true}, "left": {1: true}, "right": {1: true}, "split_part": {2: true},
}

// partialNode reports whether evaluating e's top operation can raise an
// error for some input value (in either engine).
func partialNode(e Expr) bool {
	switch x := e.(type) {
	case *Op:
		return isArith(x.Op)
	case *Neg:
		return true
	case *Func:
		if x.Agg {
			return false
		}
		_, pos := intArgFuncs[x.Name]
		return numericFuncs[x.Name] || pos || x.Name == "date_trunc" || x.Name == "date_part"
	}
	return false
}

// aggOrSub reports whether e contains an aggregate call or a subquery;
// DuckDB's try() can enclose neither.
func aggOrSub(e Expr) bool {
	found := false
	Walk(e, func(x Expr) bool {
		switch y := x.(type) {
		case *Func:
			if y.Agg {
				found = true
			}
		case *InSub:
			found = true
		}
		return !found
	})
	return found
}

// checkTotal refuses, before anything runs, the few operations that cannot
// be made total in the dialect, and constant arguments the engines would
// reject only after reading data.
func checkTotal(q *Select, d Dialect, typeOf func(Expr) string) error {
	var err error
	visitSelects(q, func(s *Select) {
		eachExpr(s, func(e Expr) {
			Walk(e, func(x Expr) bool {
				if err != nil {
					return false
				}
				switch y := x.(type) {
				case *Cast:
					if l, lit := y.X.(*Lit); lit {
						// Engines evaluate a constant only once a row reaches
						// it, so a failing literal would fail only when some
						// row matches: it is checked here instead.
						err = checkLiteralCast(l, y.Type)
					} else if d == Postgres && y.Type != "text" && typeOf(y.X) == "text" {
						err = refusal.New(refusal.BadSQL, "sql.cast", "casting text to %s is not supported on datasets held in PostgreSQL: the conversion could fail on some rows; compare as text instead", y.Type)
					}
				case *Op:
					if strings.Contains(y.Op, "LIKE") {
						err = checkLikePattern(y.R)
					} else if isComparison(y.Op) {
						err = checkSameKind(typeOf, y.L, y.R)
					}
				case *In:
					err = checkSameKind(typeOf, append([]Expr{y.X}, y.List...)...)
				case *Between:
					err = checkSameKind(typeOf, y.X, y.Lo, y.Hi)
				case *Case:
					var results []Expr
					for _, w := range y.Whens {
						results = append(results, w.Then)
						if y.Operand != nil && err == nil {
							err = checkSameKind(typeOf, y.Operand, w.Cond)
						}
					}
					if y.Else != nil {
						results = append(results, y.Else)
					}
					if err == nil {
						err = checkSameKind(typeOf, results...)
					}
				case *Func:
					switch y.Name {
					case "coalesce", "nullif", "greatest", "least":
						err = checkSameKind(typeOf, y.Args...)
					}
					if err == nil && y.Name == "round" && len(y.Args) == 2 {
						l, ok := y.Args[1].(*Lit)
						if !ok || l.Kind != LitInt || len(l.Value) > 3 {
							err = bad("sql.function", "round(x, n) needs a constant n between -99 and 999")
						}
					}
				}
				return err == nil
			})
		})
	})
	return err
}

// makeConversionsExplicit rewrites every block of q with typeLiterals and
// then writes each string constant converted to another type in its
// canonical form (canonicalLiteral), so the engine receives exactly the
// value checkLiteralCast accepted.
func makeConversionsExplicit(q *Select, typeOf func(Expr) string) {
	visitSelects(q, func(s *Select) {
		eachExprRef(s, func(e *Expr) { *e = typeLiterals(*e, typeOf) })
		eachExpr(s, func(e Expr) {
			Walk(e, func(x Expr) bool {
				if c, ok := x.(*Cast); ok {
					if l, ok := c.X.(*Lit); ok && l.Kind == LitString {
						if v, ok := canonicalLiteral(l.Value, c.Type); ok {
							l.Value = v
						}
					}
				}
				return true
			})
		})
	})
}

// canonicalLiteral parses a string constant as typ, strictly (no leading
// or trailing space: Go would trim Unicode spaces that PostgreSQL's date
// input rejects, and only on rows that reach it), and formats the value
// back the one way both engines read.
func canonicalLiteral(v, typ string) (string, bool) {
	switch typ {
	case "integer", "bigint":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return "", false
		}
		return strconv.FormatInt(n, 10), true
	case "double", "numeric":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return "", false
		}
		return strconv.FormatFloat(f, 'g', -1, 64), true
	case "date", "timestamp":
		layouts := []string{"2006-01-02"}
		if typ == "timestamp" {
			layouts = append(layouts, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04:05.999999", "2006-01-02T15:04:05.999999")
		}
		for _, layout := range layouts {
			if tm, err := time.Parse(layout, v); err == nil && tm.Year() >= 1 && tm.Year() <= 9999 {
				if typ == "date" {
					return tm.Format("2006-01-02"), true
				}
				return tm.Format("2006-01-02 15:04:05.999999"), true
			}
		}
	case "boolean":
		switch strings.ToLower(v) {
		case "true", "t", "yes", "y", "on", "1":
			return "true", true
		case "false", "f", "no", "n", "off", "0":
			return "false", true
		}
	}
	return "", false
}

// visitSelects calls fn on q and every query block below it.
func visitSelects(q *Select, fn func(*Select)) {
	seen := map[*Select]bool{}
	var visit func(*Select)
	visit = func(s *Select) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		fn(s)
		for _, c := range s.With {
			visit(c.Query)
		}
		for _, src := range s.From {
			visit(src.Sub)
		}
		eachExpr(s, func(e Expr) {
			Walk(e, func(x Expr) bool {
				if in, ok := x.(*InSub); ok {
					visit(in.Sub)
				}
				return true
			})
		})
	}
	visit(q)
}

// eachExpr calls fn on every top-level expression of one block.
func eachExpr(s *Select, fn func(Expr)) {
	eachExprRef(s, func(e *Expr) { fn(*e) })
}

// eachExprRef calls fn on a pointer to every top-level expression of one
// block, so fn may replace it.
func eachExprRef(s *Select, fn func(*Expr)) {
	for i := range s.Items {
		fn(&s.Items[i].Expr)
	}
	for _, src := range s.From {
		if src.On != nil {
			fn(&src.On)
		}
	}
	if s.Where != nil {
		fn(&s.Where)
	}
	for i := range s.GroupBy {
		fn(&s.GroupBy[i])
	}
	if s.Having != nil {
		fn(&s.Having)
	}
	for i := range s.OrderBy {
		fn(&s.OrderBy[i].Expr)
	}
}

// typeLiterals makes every conversion of a string constant explicit: where
// a string constant meets a typed operand (dt > '2024-01-01', i IN ('1'),
// coalesce(dt, '2024-01-01')), it becomes a Cast, which checkTotal then
// validates. Left implicit, the engine would convert it only once a row
// reaches the comparison, and fail only then.
func typeLiterals(e Expr, typeOf func(Expr) string) Expr {
	castTo := func(t string) string {
		switch t {
		case "integer":
			return "bigint"
		case "double", "date", "timestamp", "boolean":
			return t
		}
		return ""
	}
	fix := func(x *Expr, t string) {
		if l, ok := (*x).(*Lit); ok && l.Kind == LitString {
			if c := castTo(t); c != "" {
				*x = &Cast{X: l, Type: c}
			}
		}
	}
	// peer is the first operand of a list that is not a string constant.
	peer := func(xs []*Expr) string {
		for _, x := range xs {
			if l, ok := (*x).(*Lit); !ok || (l.Kind != LitString && l.Kind != LitNull) {
				return typeOf(*x)
			}
		}
		return "text"
	}
	var visit func(x *Expr)
	visit = func(x *Expr) {
		switch y := (*x).(type) {
		case *Op:
			visit(&y.L)
			visit(&y.R)
			if y.Op != "AND" && y.Op != "OR" && y.Op != "||" && !strings.Contains(y.Op, "LIKE") {
				fix(&y.R, typeOf(y.L))
				fix(&y.L, typeOf(y.R))
			}
		case *Not:
			visit(&y.X)
		case *Neg:
			visit(&y.X)
		case *Cast:
			visit(&y.X)
		case *IsNull:
			visit(&y.X)
		case *InSub:
			if y.X != nil {
				visit(&y.X)
			}
		case *Between:
			visit(&y.X)
			visit(&y.Lo)
			visit(&y.Hi)
			t := peer([]*Expr{&y.X, &y.Lo, &y.Hi})
			fix(&y.X, t)
			fix(&y.Lo, t)
			fix(&y.Hi, t)
		case *In:
			visit(&y.X)
			all := []*Expr{&y.X}
			for i := range y.List {
				visit(&y.List[i])
				all = append(all, &y.List[i])
			}
			t := peer(all)
			for _, a := range all {
				fix(a, t)
			}
		case *Func:
			var all []*Expr
			for i := range y.Args {
				visit(&y.Args[i])
				all = append(all, &y.Args[i])
			}
			switch y.Name {
			case "coalesce", "nullif", "greatest", "least":
				t := peer(all)
				for _, a := range all {
					fix(a, t)
				}
			}
		case *Case:
			if y.Operand != nil {
				visit(&y.Operand)
			}
			var results []*Expr
			for i := range y.Whens {
				visit(&y.Whens[i].Cond)
				visit(&y.Whens[i].Then)
				if y.Operand != nil {
					fix(&y.Whens[i].Cond, typeOf(y.Operand))
				}
				results = append(results, &y.Whens[i].Then)
			}
			if y.Else != nil {
				visit(&y.Else)
				results = append(results, &y.Else)
			}
			t := peer(results)
			for _, r := range results {
				fix(r, t)
			}
		}
	}
	visit(&e)
	return e
}

// typeOf is the IR type of e as the generator sees it.
func (g *gen) typeOf(e Expr) string { return exprType(e, g.grants) }

// sub renders e into a string without disturbing g's buffer.
func (g *gen) sub(e Expr) string {
	c := *g
	c.b = strings.Builder{}
	c.expr(e)
	return c.b.String()
}

// partial renders a partial operation totally.
func (g *gen) partial(e Expr) {
	if g.d == DuckDB {
		if !aggOrSub(e) {
			g.w("try(")
			g.plainPartial(e, false)
			g.w(")")
			return
		}
		g.plainPartial(e, true)
		return
	}
	g.pgPartial(e)
}

// num renders a number operand: as DOUBLE above aggregates in DuckDB, as a
// clamped numeric in PostgreSQL; other types unchanged.
func (g *gen) num(e Expr, double bool) string {
	s := g.sub(e)
	if !isNumberType(g.typeOf(e)) {
		return s
	}
	if g.d == Postgres {
		return clampNumeric("CAST("+s+" AS numeric)", "-"+pgBound, pgBound)
	}
	if double {
		return "CAST(" + s + " AS DOUBLE)"
	}
	return s
}

// clampNumeric clamps a PostgreSQL numeric to [lo, hi] evaluating x once
// and keeping NULL as NULL. GREATEST and LEAST ignore NULLs, so NULL is
// first turned into NaN (which PostgreSQL orders above every number), the
// upper clamp is written as -GREATEST(-v, -hi) so that NaN survives it,
// and NaN is turned back into NULL at the end.
func clampNumeric(x, lo, hi string) string {
	return "NULLIF(-GREATEST(-GREATEST(LEAST(" + x + ", 'NaN'::numeric), " + lo + "::numeric), -(" + hi + "::numeric)), 'NaN'::numeric)"
}

// pgIntArg renders an integer argument of a PostgreSQL text function:
// rounded, NULL outside [lo, hi], as integer.
func (g *gen) pgIntArg(e Expr, lo, hi string) string {
	if !isNumberType(g.typeOf(e)) {
		return g.sub(e)
	}
	return pgRangedInt(g.sub(e), lo, hi, "integer")
}

// pgRangedInt converts a number to an integer type, NULL outside [lo, hi]:
// out-of-range values are clamped one past the range and then nulled, so
// the cast never sees a value it cannot hold.
func pgRangedInt(x, lo, hi, typ string) string {
	below, above := "("+lo+"::numeric - 1)", "("+hi+"::numeric + 1)"
	c := clampNumeric("round(CAST("+x+" AS numeric))", below, above)
	return "CAST(NULLIF(NULLIF(" + c + ", " + above + "::numeric), " + below + "::numeric) AS " + typ + ")"
}

// plainPartial renders a partial operation for DuckDB. Inside try() the
// operation is written as is; above aggregates or subqueries (double) its
// number operands are DOUBLE and domains are guarded.
func (g *gen) plainPartial(e Expr, double bool) {
	switch x := e.(type) {
	case *Op:
		if x = g.dateFirst(x); g.isDateArith(x) {
			g.w("(", g.sub(x.L), " ", x.Op, " ", g.dateDays(x.R, double), ")")
			return
		}
		g.w("(", g.num(x.L, double), " ", x.Op, " ", g.num(x.R, double), ")")
	case *Neg:
		g.w("(- ", g.num(x.X, double), ")")
	case *Func:
		if !double {
			g.fnCall(x)
			return
		}
		switch x.Name {
		case "sqrt":
			v := g.num(x.Args[0], true)
			g.w("sqrt(CASE WHEN ", v, " >= 0 THEN ", v, " END)")
		case "ln":
			v := g.num(x.Args[0], true)
			g.w("ln(CASE WHEN ", v, " > 0 THEN ", v, " END)")
		case "round":
			g.w("round(", g.num(x.Args[0], true))
			if len(x.Args) == 2 {
				g.w(", ", g.sub(x.Args[1]))
			}
			g.w(")")
		case "substr", "left", "right", "split_part":
			pos := intArgFuncs[x.Name]
			g.w(x.Name, "(")
			for i, a := range x.Args {
				if i > 0 {
					g.w(", ")
				}
				if pos[i] && isNumberType(g.typeOf(a)) {
					v := "CAST(" + g.sub(a) + " AS DOUBLE)"
					g.w("CAST(CASE WHEN ", v, " BETWEEN -1e9 AND 1e9 THEN ", v, " END AS BIGINT)")
					continue
				}
				g.w(g.sub(a))
			}
			g.w(")")
		case "date_trunc", "date_part":
			g.fnCall(x)
		default: // abs, exp, power, mod, floor, ceil, sign: DOUBLE never raises
			g.w(x.Name, "(")
			for i, a := range x.Args {
				if i > 0 {
					g.w(", ")
				}
				g.w(g.num(a, true))
			}
			g.w(")")
		}
	}
}

// isDateArith is date ± days (days + date is rewritten to that form by
// dateFirst).
func (g *gen) isDateArith(x *Op) bool {
	t := g.typeOf(x.L)
	return (t == "date" || t == "timestamp") && (x.Op == "+" || x.Op == "-") && isNumberType(g.typeOf(x.R))
}

// dateFirst writes days + date as date + days, the one form the guards
// know.
func (g *gen) dateFirst(x *Op) *Op {
	if t := g.typeOf(x.R); x.Op == "+" && (t == "date" || t == "timestamp") && isNumberType(g.typeOf(x.L)) {
		return &Op{Op: "+", L: x.R, R: x.L}
	}
	return x
}

// dateDays renders the day count added to a date: NULL beyond ±10,000
// years, so the sum stays inside both engines' date ranges.
func (g *gen) dateDays(e Expr, double bool) string {
	if g.d == Postgres {
		return pgRangedInt(g.sub(e), "-3650000", "3650000", "integer")
	}
	v := "CAST(" + g.sub(e) + " AS DOUBLE)"
	return "CAST(CASE WHEN " + v + " BETWEEN -3650000 AND 3650000 THEN " + v + " END AS INTEGER)"
}

// The days from 2000-01-01 to PostgreSQL's first and last dates.
const pgFirstDay, pgLastDay = "-2451507", "2145031948"

// pgPartial renders a partial operation for PostgreSQL.
func (g *gen) pgPartial(e Expr) {
	switch x := e.(type) {
	case *Op:
		if x = g.dateFirst(x); g.isDateArith(x) {
			days := g.dateDays(x.R, false)
			if g.typeOf(x.L) != "date" {
				g.w("(", g.sub(x.L), " ", x.Op, " ", days, ")")
				return
			}
			// PostgreSQL's dates end at 4713 BC and 5874897 AD: the result
			// is NULL unless it falls between them.
			d := g.sub(x.L)
			g.w("(CASE WHEN (", d, " - DATE '2000-01-01') ", x.Op, " ", days, " BETWEEN ", pgFirstDay, " AND ", pgLastDay, " THEN ", d, " ", x.Op, " ", days, " END)")
			return
		}
		l, r := g.num(x.L, false), g.num(x.R, false)
		if (x.Op == "/" || x.Op == "%") && isNumberType(g.typeOf(x.R)) {
			r = "NULLIF(" + r + ", 0)"
		}
		g.w("(", l, " ", x.Op, " ", r, ")")
	case *Neg:
		g.w("(- ", g.num(x.X, false), ")")
	case *Func:
		g.pgFunc(x)
	}
}

func (g *gen) pgFunc(f *Func) {
	arg := func(i int) string { return g.num(f.Args[i], false) }
	switch f.Name {
	case "sqrt":
		v := arg(0)
		g.w("sqrt(CASE WHEN ", v, " >= 0 THEN ", v, " END)")
	case "ln":
		v := arg(0)
		g.w("ln(CASE WHEN ", v, " > 0 THEN ", v, " END)")
	case "exp":
		v := arg(0)
		g.w("exp(CASE WHEN ", v, " <= 1000 THEN GREATEST(", v, ", -10000) END)")
	case "power":
		a, b := arg(0), arg(1)
		fits := func(base string) string {
			return "CASE WHEN " + b + " * ln(" + base + ") BETWEEN -10000 AND 1000 THEN power(" + a + ", " + b + ") END"
		}
		g.w("(CASE WHEN ", a, " > 0 THEN ", fits(a),
			" WHEN ", a, " = 0 THEN (CASE WHEN ", b, " > 0 THEN 0 WHEN ", b, " = 0 THEN 1 END)",
			" WHEN ", a, " < 0 AND ", b, " = floor(", b, ") THEN ", fits("-("+a+")"), " END)")
	case "mod":
		g.w("mod(", arg(0), ", NULLIF(", arg(1), ", 0))")
	case "round":
		g.w("round(", arg(0))
		if len(f.Args) == 2 {
			g.w(", ", g.sub(f.Args[1]))
		}
		g.w(")")
	case "substr":
		g.w("substr(", g.sub(f.Args[0]), ", ", g.pgIntArg(f.Args[1], "-1000000000", "1000000000"))
		if len(f.Args) == 3 {
			// A negative length is an error in PostgreSQL; here it is NULL.
			g.w(", ", g.pgIntArg(f.Args[2], "0", "1000000000"))
		}
		g.w(")")
	case "left", "right":
		g.w(f.Name, "(", g.sub(f.Args[0]), ", ", g.pgIntArg(f.Args[1], "-1000000000", "1000000000"), ")")
	case "split_part":
		g.w("split_part(", g.sub(f.Args[0]), ", ", g.sub(f.Args[1]), ", NULLIF(", g.pgIntArg(f.Args[2], "-1000000000", "1000000000"), ", 0))")
	case "date_trunc", "date_part":
		g.fnCall(f)
	default: // abs, floor, ceil, sign
		g.w(f.Name, "(", arg(0), ")")
	}
}

// pgCast renders a cast of a non-literal for PostgreSQL. Casts from text
// were refused by checkTotal; number conversions are range-checked.
func (g *gen) pgCast(c *Cast, t string) {
	src := g.typeOf(c.X)
	x := g.sub(c.X)
	if isNumberType(src) {
		switch c.Type {
		case "integer":
			g.w(pgRangedInt(x, "-2147483648", "2147483647", t))
			return
		case "bigint":
			g.w(pgRangedInt(x, "-9223372036854775808", "9223372036854775807", t))
			return
		case "double":
			g.w(pgToDouble(x))
			return
		}
	}
	g.w("CAST(", x, " AS ", t, ")")
}

// pgToDouble converts a number to double precision without the two errors
// PostgreSQL raises on the way: overflow above 1.8e308, and underflow for
// magnitudes below about 1e-308, which rounding to 300 places makes 0.
func pgToDouble(x string) string {
	return "CAST(round(" + clampNumeric("CAST("+x+" AS numeric)", "-1e308", "1e308") + ", 300) AS double precision)"
}

// pgAggArg renders an aggregate's argument for PostgreSQL: double
// precision accumulators raise on overflow, numeric ones do not.
func (g *gen) pgAggArg(f *Func, a Expr) string {
	s := g.sub(a)
	switch f.Name {
	case "sum", "avg", "stddev", "stddev_pop", "variance", "var_pop":
		if g.typeOf(a) == "double" {
			return "CAST(" + s + " AS numeric)"
		}
	case "median", "percentile_cont":
		if isNumberType(g.typeOf(a)) {
			return pgToDouble(s)
		}
	}
	return s
}

func isComparison(op string) bool {
	switch op {
	case "=", "<>", "<", "<=", ">", ">=", "IS DISTINCT FROM", "IS NOT DISTINCT FROM":
		return true
	}
	return false
}

// checkSameKind refuses text meeting another type in one comparison, list
// or choice of values. PostgreSQL refuses such a query outright; DuckDB
// would convert every text value on the fly (country = 5 casts country to
// an integer) and fail only on rows whose text does not convert. String
// constants were already made explicit casts (typeLiterals), so what is
// left here is text computed from data.
func checkSameKind(typeOf func(Expr) string, xs ...Expr) error {
	text, constant, other := false, false, ""
	for _, x := range xs {
		if l, ok := x.(*Lit); ok && (l.Kind == LitNull || l.Kind == LitString) {
			constant = constant || l.Kind == LitString
			continue
		}
		// A bare NULL was skipped above; any other expression of unknown
		// type counts as not text.
		switch t := typeOf(x); t {
		case "text":
			text = true
		default:
			other = t
		}
	}
	if text && other != "" {
		return bad("sql.types", "text is compared with or mixed with %s; convert one side explicitly (CAST(... AS text), or compare with a constant)", other)
	}
	// typeLiterals turned every constant next to a type it can check into a
	// cast; one still here meets a type it cannot (an interval).
	if constant && other != "" {
		return bad("sql.types", "a string constant is compared with or mixed with %s, which it cannot be checked against", other)
	}
	return nil
}

// checkLiteralCast refuses a literal the target type cannot hold, with the
// same verdict in both engines.
func checkLiteralCast(l *Lit, typ string) error {
	if l.Kind == LitNull || typ == "text" {
		return nil
	}
	fail := func() error {
		return bad("sql.literal", "the constant cannot be converted to %s", typ)
	}
	text := l.Value
	if l.Kind == LitString {
		// Canonical by now if it was valid (makeConversionsExplicit).
		if _, ok := canonicalLiteral(text, typ); !ok {
			return fail()
		}
		return nil
	}
	// A number or boolean constant.
	switch typ {
	case "integer", "bigint":
		if l.Kind == LitBool {
			return nil
		}
		f, err := strconv.ParseFloat(text, 64)
		lim := float64(math.MaxInt32)
		if typ == "bigint" {
			lim = 9.2e18
		}
		if err != nil || math.Abs(f) > lim {
			return fail()
		}
	case "double", "numeric":
		if l.Kind == LitBool {
			return fail()
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || (typ == "numeric" && math.Abs(f) >= 1e12) {
			return fail()
		}
	case "date", "timestamp":
		return fail() // only a string is a date
	case "boolean":
		if l.Kind == LitBool || (l.Kind == LitInt && (text == "0" || text == "1")) {
			return nil
		}
		return fail()
	}
	return nil
}

// checkLikePattern accepts only a constant pattern that does not end in the
// escape character: a pattern taken from data would fail on some rows.
func checkLikePattern(e Expr) error {
	l, ok := e.(*Lit)
	if !ok || l.Kind != LitString {
		return bad("sql.like", "the pattern of LIKE must be a constant string")
	}
	trailing := len(l.Value) - len(strings.TrimRight(l.Value, `\`))
	if trailing%2 == 1 {
		return bad("sql.like", "a LIKE pattern cannot end with the escape character \\")
	}
	return nil
}
