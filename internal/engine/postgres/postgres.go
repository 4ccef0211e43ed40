// Package postgres runs governed SQL inside an owner's PostgreSQL, for
// datasets that stay where they are: only the governed result leaves the
// database. Every query runs in a READ ONLY transaction with a statement
// timeout, and errors are reduced to their kind like DuckDB's.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/airlock-dev/airlock/internal/engine"
)

// DB is a PostgreSQL engine.
type DB struct {
	pool *pgxpool.Pool
}

var _ engine.Engine = (*DB)(nil)

// Open connects to the owner's PostgreSQL.
func Open(ctx context.Context, dsn string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres engine: %w", err)
	}
	cfg.MaxConns = 8
	// Generated SQL writes E'...' literals, which mean the same under any
	// setting; the settings are still pinned, and a connection whose role
	// or database overrides them is refused.
	cfg.ConnConfig.RuntimeParams["standard_conforming_strings"] = "on"
	cfg.ConnConfig.RuntimeParams["client_encoding"] = "UTF8"
	cfg.AfterConnect = checkSettings
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres engine: %w", err)
	}
	return &DB{pool: pool}, nil
}

// checkSettings refuses a connection on which string literals or text
// would not mean what the generated SQL says.
func checkSettings(ctx context.Context, c *pgx.Conn) error {
	want := map[string]string{"standard_conforming_strings": "on", "client_encoding": "UTF8"}
	for name, v := range want {
		var got string
		if err := c.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
			return fmt.Errorf("postgres engine: reading %s: %w", name, err)
		}
		if !strings.EqualFold(got, v) {
			return fmt.Errorf("postgres engine: %s is %q on this connection, want %q", name, got, v)
		}
	}
	return nil
}

// Dialect implements engine.Engine.
func (d *DB) Dialect() string { return "postgres" }

// Close implements engine.Engine.
func (d *DB) Close() error { d.pool.Close(); return nil }

// Columns lists a table's columns and types (for validation).
func (d *DB) Columns(ctx context.Context, table string) (map[string]string, error) {
	rows, err := d.pool.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1`, table)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for rows.Next() {
		var n, t string
		if err := rows.Scan(&n, &t); err != nil {
			return nil, err
		}
		out[n] = t
	}
	return out, rows.Err()
}

// Query implements engine.Engine: a read-only transaction whose statement
// timeout follows ctx's deadline.
func (d *DB) Query(ctx context.Context, sql string, args ...any) (*engine.Result, error) {
	tx, err := d.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, sanitize(ctx, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	timeout := "0"
	if dl, ok := ctx.Deadline(); ok {
		timeout = strconv.FormatInt(max(1, time.Until(dl).Milliseconds()), 10)
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('statement_timeout', $1, true), set_config('standard_conforming_strings', 'on', true)", timeout); err != nil {
		return nil, sanitize(ctx, err)
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, sanitize(ctx, err)
	}
	defer rows.Close()
	res := &engine.Result{}
	for _, f := range rows.FieldDescriptions() {
		res.Columns = append(res.Columns, engine.Column{Name: f.Name})
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, sanitize(ctx, err)
		}
		for i, v := range vals {
			vals[i] = normalize(v)
		}
		res.Rows = append(res.Rows, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, sanitize(ctx, err)
	}
	return res, nil
}

func normalize(v any) any {
	switch x := v.(type) {
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case float32:
		return finite(float64(x))
	case float64:
		// ±Inf and NaN (DOUBLE arithmetic that the total SQL lets through
		// instead of failing) are released as NULL, as errors are; JSON
		// cannot carry them.
		return finite(x)
	case pgtype.Numeric:
		if !x.Valid || x.NaN || x.InfinityModifier != pgtype.Finite {
			return nil
		}
		if x.Exp >= 0 {
			n := new(big.Int).Mul(x.Int, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(x.Exp)), nil))
			if n.IsInt64() {
				return n.Int64()
			}
			return n
		}
		f, _ := x.Float64Value()
		return finite(f.Float64)
	case time.Time:
		return x.UTC()
	}
	return v
}

func sanitize(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return engine.ErrTimeout
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "57014": // query_canceled (statement_timeout)
			return engine.ErrTimeout
		case pe.Code == "53200":
			return engine.ErrMemory
		case pe.Code == "22012":
			return engine.NewSanitized("division", pe.Message)
		case len(pe.Code) == 2 || pe.Code[:2] == "22":
			return engine.NewSanitized("conversion", pe.Message)
		case pe.Code[:2] == "42":
			return engine.NewSanitized("binder", pe.Message)
		case pe.Code == "25006":
			return engine.NewSanitized("permission", pe.Message)
		}
		return engine.NewSanitized("internal", pe.Message)
	}
	return engine.NewSanitized("internal", err.Error())
}

func finite(f float64) any {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil
	}
	return f
}

// TableColumns lists a table's columns in order, with PostgreSQL's type
// names (information_schema data_type).
func (d *DB) TableColumns(ctx context.Context, schema, table string) ([]engine.Column, error) {
	rows, err := d.pool.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, schema, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []engine.Column
	for rows.Next() {
		var c engine.Column
		if err := rows.Scan(&c.Name, &c.Type); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
