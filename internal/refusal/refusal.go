// Package refusal is the one error type every channel turns into a client
// response: a code, the rule that refused and a message that never contains
// a data value. HTTP maps it to a status, the Postgres wire endpoint to a
// SQLSTATE, each in one function at its edge.
package refusal

import (
	"errors"
	"fmt"
)

// Code classifies a refusal; the list is append-only because clients match on it.
type Code string

// The refusal codes.
const (
	BadSQL          Code = "bad_sql"          // 400: not a single read-only SELECT the IR can express
	Unauthenticated Code = "unauthenticated"  // 401
	Forbidden       Code = "forbidden"        // 403: policy or agreement
	AnalysisRule    Code = "analysis_rule"    // 422: the query shape breaks the analysis rule
	Limit           Code = "limit"            // 429: a resource limit (time, memory, rows, size)
	BudgetExhausted Code = "budget_exhausted" // 429: the privacy budget is spent
	NotFound        Code = "not_found"        // 404
	Engine          Code = "engine_error"     // 500: the engine failed; details only in server logs
	Internal        Code = "internal"         // 500
	TooLarge        Code = "too_large"        // 413: a request body or statement over its size limit
	Unavailable     Code = "unavailable"      // 503: overloaded, or a dependency (the state store) is down; retry
)

// Error is a refusal. Message is safe to show to the client: it names
// identifiers (datasets, columns, rules) but never data values.
type Error struct {
	Code    Code
	Rule    string
	Message string
	// Details are extra safe fields (e.g. remaining budget, refresh time).
	Details map[string]any
	// RequestID ties the refusal to its audit entry and server log line;
	// the kernel sets it.
	RequestID string
	// cause is why, for the server log only (an engine's raw message, a
	// store's error); never shown to a client.
	cause error
}

// WithCause records the underlying failure for the server log and returns e.
func (e *Error) WithCause(err error) *Error {
	e.cause = err
	return e
}

// Unwrap returns the cause, for the server log.
func (e *Error) Unwrap() error { return e.cause }

func (e *Error) Error() string {
	if e.Rule != "" {
		return fmt.Sprintf("%s (rule %s): %s", e.Code, e.Rule, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// New returns a refusal with a formatted message. Arguments must be names,
// never data values.
func New(code Code, rule, format string, args ...any) *Error {
	return &Error{Code: code, Rule: rule, Message: fmt.Sprintf(format, args...)}
}

// Panic is the refusal for a recovered panic: its cause goes to the server
// log, never to the client.
func Panic() *Error {
	return New(Internal, "internal.panic", "internal error; see the server log")
}

// StoreUnavailable is the refusal when the state store cannot be reached:
// retry shortly. cause goes to the server log.
func StoreUnavailable(cause error) *Error {
	e := New(Unavailable, "store.unavailable", "the state store is unavailable; retry shortly").WithCause(cause)
	e.Details = map[string]any{"retry_after": 1}
	return e
}

// AuditUnavailable is the refusal when a decision cannot be made durable:
// nothing is released.
func AuditUnavailable() *Error {
	return New(Internal, "audit.unavailable", "the audit log is unavailable; nothing can be answered")
}

// As extracts a refusal from err; any other error becomes an internal one
// whose message hides the cause.
func As(err error) *Error {
	var r *Error
	if errors.As(err, &r) {
		return r
	}
	return &Error{Code: Internal, Rule: "internal", Message: "internal error; see the server log", cause: err}
}

// HTTPStatus maps a code to its HTTP status.
func (c Code) HTTPStatus() int {
	switch c {
	case BadSQL:
		return 400
	case Unauthenticated:
		return 401
	case Forbidden:
		return 403
	case NotFound:
		return 404
	case AnalysisRule:
		return 422
	case Limit, BudgetExhausted:
		return 429
	case TooLarge:
		return 413
	case Unavailable:
		return 503
	default:
		return 500
	}
}

// SQLState maps a code to a PostgreSQL SQLSTATE.
func (c Code) SQLState() string {
	switch c {
	case BadSQL:
		return "42601" // syntax_error (also used for unsupported statements)
	case Unauthenticated:
		return "28P01" // invalid_password
	case Forbidden:
		return "42501" // insufficient_privilege
	case NotFound:
		return "42P01" // undefined_table
	case AnalysisRule:
		return "42501"
	case Limit:
		return "53000" // insufficient_resources
	case BudgetExhausted:
		return "53000"
	case TooLarge:
		return "54000" // program_limit_exceeded
	case Unavailable:
		return "57P03" // cannot_connect_now
	default:
		return "XX000"
	}
}
