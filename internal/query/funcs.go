package query

import (
	"sort"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/airlock-dev/airlock/internal/refusal"
)

// aggregateFuncs are the aggregate functions the IR can carry. Whether one
// may run on a column is the analysis rule's decision, not the parser's.
var aggregateFuncs = map[string]string{
	"count": "count", "sum": "sum", "avg": "avg", "mean": "avg",
	"min": "min", "max": "max",
	"stddev": "stddev", "stddev_samp": "stddev", "stddev_pop": "stddev_pop",
	"variance": "variance", "var_samp": "variance", "var_pop": "var_pop",
	"median": "median", "percentile_cont": "percentile_cont",
	// Functions that return a raw input value; parsed so the rules can
	// refuse them by name on protected columns.
	"mode": "mode", "any_value": "any_value", "string_agg": "string_agg",
	"array_agg": "array_agg", "list": "list", "first": "first", "last": "last",
	"arg_min": "arg_min", "arg_max": "arg_max", "min_by": "arg_min", "max_by": "arg_max",
	"bool_and": "bool_and", "bool_or": "bool_or",
}

// RawValueAggregates return one of their inputs verbatim; they are never
// allowed on identifier, quasi-identifier or sensitive columns.
var RawValueAggregates = map[string]bool{
	"min": true, "max": true, "mode": true, "any_value": true, "string_agg": true,
	"array_agg": true, "list": true, "first": true, "last": true, "arg_min": true,
	"arg_max": true, "median": true, "percentile_cont": true,
}

// scalarFuncs are the scalar functions the IR can carry, with their arity
// (min, max; -1 = variadic). All exist with the same meaning in DuckDB and
// PostgreSQL.
var scalarFuncs = map[string][2]int{
	"lower": {1, 1}, "upper": {1, 1}, "length": {1, 1}, "char_length": {1, 1},
	"substr": {2, 3}, "substring": {2, 3}, "btrim": {1, 2}, "ltrim": {1, 2}, "rtrim": {1, 2},
	"left": {2, 2}, "right": {2, 2}, "replace": {3, 3}, "concat": {1, -1}, "split_part": {3, 3},
	"coalesce": {1, -1}, "nullif": {2, 2}, "greatest": {1, -1}, "least": {1, -1},
	"abs": {1, 1}, "round": {1, 2}, "floor": {1, 1}, "ceil": {1, 1}, "ceiling": {1, 1},
	"sign": {1, 1}, "sqrt": {1, 1}, "ln": {1, 1}, "exp": {1, 1}, "power": {2, 2}, "mod": {2, 2},
	"date_trunc": {2, 2}, "date_part": {2, 2},
}

// dateFields are the units date_trunc / date_part / EXTRACT accept.
var dateFields = map[string]bool{
	"year": true, "quarter": true, "month": true, "week": true, "day": true,
	"dow": true, "isodow": true, "doy": true, "hour": true, "minute": true, "decade": true,
}

func (p *parser) funcCall(f *pg.FuncCall, sc *scope, ctx exprCtx) (Expr, error) {
	name := strings.ToLower(opName(f.Funcname))
	if strings.Contains(name, ".") {
		return nil, refusal.New(refusal.Forbidden, "sql.function", "function %q is not accessible", name)
	}
	if name == "extract" {
		name = "date_part"
	}
	if name == "ceiling" {
		name = "ceil"
	}
	if name == "substring" {
		name = "substr"
	}
	if f.Over != nil {
		return nil, bad("sql.window", "window functions are not supported")
	}
	if f.FuncVariadic {
		return nil, bad("sql.function", "VARIADIC calls are not supported")
	}
	if agg, ok := aggregateFuncs[name]; ok {
		return p.aggregate(agg, f, sc, ctx)
	}
	ar, ok := scalarFuncs[name]
	if !ok {
		return nil, refusal.New(refusal.Forbidden, "sql.function", "function %q is not accessible", name)
	}
	if f.AggStar || f.AggDistinct || f.AggFilter != nil || len(f.AggOrder) > 0 || f.AggWithinGroup {
		return nil, bad("sql.function", "%s is not an aggregate", name)
	}
	if len(f.Args) < ar[0] || (ar[1] >= 0 && len(f.Args) > ar[1]) {
		return nil, bad("sql.function", "wrong number of arguments to %s", name)
	}
	args, err := p.exprs(f.Args, sc, ctx)
	if err != nil {
		return nil, err
	}
	if name == "date_trunc" || name == "date_part" {
		l, ok := args[0].(*Lit)
		if !ok || l.Kind != LitString || !dateFields[strings.ToLower(l.Value)] {
			return nil, bad("sql.function", "%s needs a constant field such as 'year' or 'month'", name)
		}
		l.Value = strings.ToLower(l.Value)
	}
	return &Func{Name: name, Args: args}, nil
}

func (p *parser) aggregate(name string, f *pg.FuncCall, sc *scope, ctx exprCtx) (Expr, error) {
	if !ctx.allowsAggregate() {
		if ctx == ctxAggArg {
			return nil, bad("sql.nested_aggregate", "aggregate calls cannot be nested")
		}
		return nil, bad("sql.aggregate_context", "aggregate %s is not allowed here", name)
	}
	if f.AggFilter != nil {
		return nil, refusal.New(refusal.AnalysisRule, "aggregation.filter", "FILTER on aggregates is not supported; use WHERE")
	}
	out := &Func{Name: name, Agg: true, Distinct: f.AggDistinct, Star: f.AggStar}
	if f.AggStar {
		if name != "count" {
			return nil, bad("sql.function", "only COUNT accepts *")
		}
		return out, nil
	}
	if name == "percentile_cont" {
		if !f.AggWithinGroup || len(f.Args) != 1 || len(f.AggOrder) != 1 {
			return nil, bad("sql.function", "use percentile_cont(fraction) WITHIN GROUP (ORDER BY column)")
		}
		frac, err := p.expr(f.Args[0], sc, ctxAggArg)
		if err != nil {
			return nil, err
		}
		l, ok := frac.(*Lit)
		if !ok || (l.Kind != LitFloat && l.Kind != LitInt) {
			return nil, bad("sql.function", "percentile_cont needs a constant fraction")
		}
		v, _ := strconv.ParseFloat(l.Value, 64)
		if v < 0 || v > 1 {
			return nil, bad("sql.function", "percentile_cont fraction must be between 0 and 1")
		}
		out.Fraction = v
		sb := f.AggOrder[0].GetSortBy()
		if sb == nil {
			return nil, bad("sql.function", "unsupported WITHIN GROUP")
		}
		arg, err := p.expr(sb.Node, sc, ctxAggArg)
		if err != nil {
			return nil, err
		}
		out.Args = []Expr{arg}
		return out, nil
	}
	if f.AggWithinGroup || len(f.AggOrder) > 0 {
		return nil, bad("sql.function", "ORDER BY inside %s is not supported", name)
	}
	if name == "median" {
		out.Fraction = 0.5
	}
	want := 1
	if name == "string_agg" || name == "arg_min" || name == "arg_max" {
		want = 2
	}
	if len(f.Args) != want {
		return nil, bad("sql.function", "wrong number of arguments to %s", name)
	}
	args, err := p.exprs(f.Args, sc, ctxAggArg)
	if err != nil {
		return nil, err
	}
	out.Args = args
	return out, nil
}

// AllowedScalarFunctions lists the scalar functions the IR accepts, sorted;
// the totality test requires an adversarial case for each.
func AllowedScalarFunctions() []string { return sortedNames(scalarFuncs) }

// AllowedAggregates lists the aggregate functions the IR accepts, sorted.
func AllowedAggregates() []string { return sortedNames(aggregateFuncs) }

// AllowedOperators lists the binary operators the IR accepts, sorted.
func AllowedOperators() []string {
	seen := map[string]bool{}
	for _, c := range binaryOps {
		seen[c] = true
	}
	return sortedNames(seen)
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
