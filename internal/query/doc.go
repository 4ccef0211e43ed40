// Package query turns analyst SQL into governed engine SQL.
//
// # Pipeline
//
// Parse reads PostgreSQL-dialect SQL with PostgreSQL's own parser
// (pg_query) into the logical IR of ir.go: query blocks of scans, joins,
// filters, aggregates and projections over registered datasets. Anything
// the IR cannot express is refused, so the allow-list of statements,
// functions, operators and casts is the IR itself (funcs.go).
//
// Planner.Plan applies each dataset's grant (owner, list, aggregation, dp;
// plan.go, aggregation.go, dpplan.go) and generates SQL for one engine
// dialect, DuckDB or PostgreSQL (sqlgen.go). The SQL it generates is total
// (total.go): no operation in it can fail on data, so neither an error nor
// its absence depends on a row. String constants are bind parameters in
// PostgreSQL and canonical literals everywhere; every answer's row order is
// a function of the released values.
//
// # Plan kinds
//
//   - owner: rows as stored.
//   - list: a masked, row-filtered scan; rows released count against a
//     quota per period.
//   - aggregation: aggregates over groups that cover at least min_units
//     distinct privacy units, withheld in the engine's HAVING.
//   - dp: bounded-contribution statistics (at most L0 groups per unit and
//     L∞ rows per group, values clamped), noised by sqlop.
package query
