// Package postgres opens the shared state store in PostgreSQL, for several
// Airlock replicas behind one load balancer. Budget charges are single
// conditional UPDATEs (row locks serialize them) and audit appends lock the
// tree-head row, so replicas never overspend and the audit log stays one
// linear history.
package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/airlock-dev/airlock/internal/store/sqlstore"
)

// Open connects to dsn and applies the schema (under an advisory lock, so
// replicas starting together do not race). A non-empty schema is created if
// missing and used as the search path.
func Open(ctx context.Context, dsn, schema string) (*sqlstore.Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: postgres dsn: %w", err)
	}
	if schema != "" {
		cfg.RuntimeParams["search_path"] = schema
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(32)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	defer conn.Close()
	if schema != "" {
		if _, err := conn.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
			db.Close()
			return nil, err
		}
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(7236551)"); err != nil {
		db.Close()
		return nil, err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(7236551)")
	s, err := sqlstore.New(ctx, db, dialect)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

var dialect = sqlstore.Dialect{
	Name:      "postgres",
	Rebind:    rebind,
	Blob:      "BYTEA",
	ForUpdate: " FOR UPDATE",
}

// rebind turns ? into $1, $2, ... outside string literals.
func rebind(q string) string {
	var b strings.Builder
	n := 0
	inStr := false
	for _, r := range q {
		switch {
		case r == '\'':
			inStr = !inStr
			b.WriteRune(r)
		case r == '?' && !inStr:
			n++
			b.WriteString("$" + strconv.Itoa(n))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
