// Package engine defines what Airlock needs from a SQL engine: run one
// generated query with a deadline and return typed rows, and fail with
// errors that never carry data values. Implementations: engine/duckdb
// (embedded, the only cgo package) and engine/postgres (datasets governed in
// place).
package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Column is one result column.
type Column struct {
	Name string
	Type string
}

// Result is a small, fully materialized result. Values are Go values:
// string, int64, *big.Int (HUGEINT), float64 (DOUBLE and DECIMAL),
// time.Time, bool, []byte or nil.
type Result struct {
	Columns []Column
	Rows    [][]any
}

// Engine runs generated SQL.
type Engine interface {
	// Dialect is "duckdb" or "postgres".
	Dialect() string
	Query(ctx context.Context, sql string, args ...any) (*Result, error)
	Close() error
}

// Sentinel kinds of engine failure.
var (
	ErrTimeout = errors.New("engine: query exceeded its time limit")
	ErrMemory  = errors.New("engine: query exceeded its memory limit")
)

// SanitizedError is an engine failure reduced to its kind. Error() never
// contains the engine's message (which may quote data values); Cause keeps
// it for the server log only.
type SanitizedError struct {
	Kind  string // conversion, division, binder, syntax, constraint, resource, internal
	cause string
}

// NewSanitized wraps an engine message.
func NewSanitized(kind, cause string) *SanitizedError {
	return &SanitizedError{Kind: kind, cause: cause}
}

func (e *SanitizedError) Error() string { return "engine: " + e.Kind + " error" }

// Cause returns the engine's raw message, for server-side logs only.
func (e *SanitizedError) Cause() string { return e.cause }

// UnitIDColumn is the hidden dense surrogate of a dataset's privacy unit
// that engine/duckdb stores beside it (the units numbered 0..n-1) and DP
// plans group, join and hash by. It is not a manifest column: analyst SQL
// cannot name it and no plan outputs it.
const UnitIDColumn = "__airlock_unit"

// The hidden per-row columns of the differencing sketch (package
// differencing), stored by engine/duckdb beside a dataset with a privacy
// unit and computed on the fly from the same formulas' PostgreSQL form by
// the planner: two row weights from a hash of the row's content, the
// first weight times the unit's field id and times its square (all mod
// 2^31-1), and 16 bits of the unit's hash that pick its bucket. Computed
// once at load, a sketch costs the query four integer sums.
const (
	SketchW1     = "__airlock_w1"
	SketchW2     = "__airlock_w2"
	SketchWX     = "__airlock_wx"
	SketchWXX    = "__airlock_wxx"
	SketchBucket = "__airlock_ub"
)

// SketchColumns lists them in the order sketch queries read them.
var SketchColumns = []string{SketchW1, SketchW2, SketchWX, SketchWXX, SketchBucket}

// SketchSQL returns the expressions of SketchColumns over a row hash and
// a unit hash, 64-bit integer expressions of either dialect.
func SketchSQL(rowHash, unitHash string) []string {
	const p = "2147483647"
	w1 := "(" + rowHash + " & " + p + ")"
	x := "((" + unitHash + " >> 32) & " + p + ")"
	return []string{
		"CAST(" + w1 + " AS INTEGER)",
		"CAST(((" + rowHash + " >> 32) & " + p + ") AS INTEGER)",
		"CAST((" + w1 + " * " + x + ") % " + p + " AS INTEGER)",
		"CAST((" + w1 + " * ((" + x + " * " + x + ") % " + p + ")) % " + p + " AS INTEGER)",
		"CAST((" + unitHash + " & 65535) AS INTEGER)",
	}
}

// SQLType is the engine type of a manifest column type in a dialect
// ("duckdb" or "postgres").
func SQLType(dialect, t string) string {
	switch t {
	case "integer":
		return "BIGINT"
	case "double":
		return "DOUBLE PRECISION"
	case "decimal":
		return "DECIMAL(18,2)"
	case "date":
		return "DATE"
	case "timestamp":
		return "TIMESTAMP"
	case "boolean":
		return "BOOLEAN"
	}
	if dialect == "duckdb" {
		return "VARCHAR"
	}
	return "TEXT"
}

// Text is a value an engine returned, as text: "" for NULL, times in
// RFC 3339 (UTC).
func Text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

// Number is a value an engine returned, as a number (booleans as 0 and
// 1, decimals through their text); false for NULL and for what is not one.
func Number(v any) (float64, bool) {
	switch x := v.(type) {
	case nil:
		return 0, false
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case int:
		return float64(x), true
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(Text(v)), 64)
	return f, err == nil
}
