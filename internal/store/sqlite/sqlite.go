// Package sqlite opens the embedded state store: a SQLite file (pure Go,
// modernc.org/sqlite, so cgo stays confined to DuckDB) in WAL mode with full
// synchronous commits, so an audit entry is on disk before its response
// leaves. Write transactions take SQLite's write lock at BEGIN, which
// serializes budget charges and audit appends across goroutines and processes.
package sqlite

import (
	"context"
	"database/sql"
	"net/url"

	_ "modernc.org/sqlite" // registers driver "sqlite"

	"github.com/airlock-dev/airlock/internal/store/sqlstore"
)

// Open opens (creating if needed) the store at path.
func Open(ctx context.Context, path string) (*sqlstore.Store, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(on)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	// One connection: SQLite has one writer anyway, and this keeps
	// transactions from waiting on each other's busy timeouts.
	db.SetMaxOpenConns(1)
	s, err := sqlstore.New(ctx, db, sqlstore.Dialect{
		Name:   "sqlite",
		Rebind: func(q string) string { return q },
		Blob:   "BLOB",
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}
