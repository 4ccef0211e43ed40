// Package duckdb is the embedded engine: DuckDB through duckdb-go, the only
// package of Airlock that uses cgo.
//
// An instance has two phases. While loading, LoadTable creates tables from
// workspace CSV/Parquet files. Lockdown then disables every file, network and
// extension path (enable_external_access=false, no extension autoload or
// install) and locks the configuration, so no later statement can re-enable
// them. Only then does the kernel send it queries.
package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"path/filepath"
	"strings"
	"time"

	duck "github.com/duckdb/duckdb-go/v2"

	"github.com/airlock-dev/airlock/internal/engine"
)

// Config sizes an instance.
type Config struct {
	Path        string // database file; empty = in memory
	MemoryLimit string // e.g. "2GB"
	Threads     int    // 0 = DuckDB's default (cores)
	TempDir     string // spill directory; empty = none
}

// DB is an embedded DuckDB.
type DB struct {
	db     *sql.DB
	locked bool
}

var _ engine.Engine = (*DB)(nil)

// Open starts an instance in its loading phase.
func Open(cfg Config) (*DB, error) {
	c, err := duck.NewConnector(cfg.Path, nil)
	if err != nil {
		return nil, fmt.Errorf("duckdb: open: %w", err)
	}
	db := sql.OpenDB(c)
	d := &DB{db: db}
	stmts := []string{"SET autoinstall_known_extensions = false", "SET autoload_known_extensions = false"}
	if cfg.MemoryLimit != "" {
		stmts = append(stmts, "SET memory_limit = '"+strings.ReplaceAll(cfg.MemoryLimit, "'", "")+"'")
	}
	if cfg.Threads > 0 {
		stmts = append(stmts, fmt.Sprintf("SET threads = %d", cfg.Threads))
	}
	if cfg.TempDir != "" {
		stmts = append(stmts, "SET temp_directory = '"+strings.ReplaceAll(cfg.TempDir, "'", "")+"'")
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			db.Close()
			return nil, fmt.Errorf("duckdb: %s: %w", s, err)
		}
	}
	return d, nil
}

// ColumnSpec is a manifest column to load. Unit marks the dataset's privacy
// unit: LoadTable then also stores engine.UnitIDColumn, the unit's dense
// integer surrogate 0..n-1 that differentially private plans group and hash
// by. It is not a manifest column, so analysts can neither name nor see it.
type ColumnSpec struct {
	Name, Type string
	Unit       bool
}

// SQLType maps a manifest type to DuckDB's (one mapping, in package query).
func SQLType(t string) string { return engine.SQLType("duckdb", t) }

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
func quoteLit(s string) string   { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// LoadTable (re)creates table name from a CSV (with header) or Parquet file,
// with the manifest's columns and types, plus the surrogate unit id when a
// column is the privacy unit. Errors are for the owner and may quote the
// file's contents.
func (d *DB) LoadTable(ctx context.Context, name, file string, cols []ColumnSpec) error {
	if d.locked {
		return errors.New("duckdb: cannot load after lockdown")
	}
	var sel []string
	var typed []string
	unit := ""
	for _, c := range cols {
		sel = append(sel, fmt.Sprintf("CAST(%s AS %s) AS %s", quoteIdent(c.Name), SQLType(c.Type), quoteIdent(c.Name)))
		typed = append(typed, fmt.Sprintf("%s: %s", quoteLit(c.Name), quoteLit(SQLType(c.Type))))
		if c.Unit {
			unit = quoteIdent(c.Name)
		}
	}
	var src string
	switch strings.ToLower(filepath.Ext(file)) {
	case ".parquet":
		src = "read_parquet(" + quoteLit(file) + ")"
	case ".csv":
		src = "read_csv(" + quoteLit(file) + ", header = true, auto_detect = false, columns = {" + strings.Join(typed, ", ") + "})"
	default:
		return fmt.Errorf("duckdb: %s: unsupported file type (want .csv or .parquet)", file)
	}
	q := fmt.Sprintf("CREATE OR REPLACE TABLE %s AS SELECT %s FROM %s", quoteIdent(name), strings.Join(sel, ", "), src)
	if unit != "" {
		// Grouping and joining by a dense integer instead of the text unit
		// makes DP plans about 1.5x faster (docs/benchmarks.md). Ids are
		// numbered in the arbitrary order of DISTINCT and attached by a
		// join, not by a sort: rows stay in about file order, so the order
		// of a listed result (unit masked or not) says nothing about which
		// rows share a unit.
		// The differencing sketch's columns hash the row's manifest
		// columns and the unit once here (engine.SketchColumns).
		var rowCols []string
		for _, c := range cols {
			rowCols = append(rowCols, "__src."+quoteIdent(c.Name))
		}
		var sketch []string
		for i, e := range engine.SketchSQL("__hr", "__hu") {
			sketch = append(sketch, e+" AS "+quoteIdent(engine.SketchColumns[i]))
		}
		q = fmt.Sprintf("CREATE OR REPLACE TABLE %s AS WITH __src AS MATERIALIZED (SELECT %s FROM %s), "+
			"__ids AS (SELECT %s AS __unit, CAST(row_number() OVER () - 1 AS BIGINT) AS __id FROM (SELECT DISTINCT %s FROM __src) AS __d), "+
			"__hashed AS (SELECT __src.*, __ids.__id AS %s, hash('airlock-row', %s) AS __hr, hash('airlock-unit', __src.%s) AS __hu FROM __src JOIN __ids ON __src.%s IS NOT DISTINCT FROM __ids.__unit) "+
			"SELECT * EXCLUDE (__hr, __hu), %s FROM __hashed",
			quoteIdent(name), strings.Join(sel, ", "), src, unit, unit, quoteIdent(engine.UnitIDColumn), strings.Join(rowCols, ", "), unit, unit, strings.Join(sketch, ", "))
	}
	if _, err := d.db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("loading %s into %s: %w", file, name, err)
	}
	return nil
}

// FileColumns lists a data file's columns and DuckDB types as detected,
// for validating a manifest against its data.
func (d *DB) FileColumns(ctx context.Context, file string) ([]engine.Column, error) {
	var src string
	switch strings.ToLower(filepath.Ext(file)) {
	case ".parquet":
		src = "read_parquet(" + quoteLit(file) + ")"
	default:
		src = "read_csv(" + quoteLit(file) + ", header = true)"
	}
	rows, err := d.db.QueryContext(ctx, "DESCRIBE SELECT * FROM "+src)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []engine.Column
	for rows.Next() {
		var name, typ string
		var null, key, def, extra sql.NullString
		if err := rows.Scan(&name, &typ, &null, &key, &def, &extra); err != nil {
			return nil, err
		}
		out = append(out, engine.Column{Name: name, Type: typ})
	}
	return out, rows.Err()
}

// NullCount counts NULLs in a loaded column.
func (d *DB) NullCount(ctx context.Context, table, column string) (int64, error) {
	var n int64
	err := d.db.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE %s IS NULL", quoteIdent(table), quoteIdent(column))).Scan(&n)
	return n, err
}

// Distinctness counts a loaded table's distinct values of column, its rows
// and its distinct units (validate's check of near-identifying dimensions).
func (d *DB) Distinctness(ctx context.Context, table, column, unit string) (distinct, rows, units int64, err error) {
	err = d.db.QueryRowContext(ctx, fmt.Sprintf("SELECT count(DISTINCT %s), count(*), count(DISTINCT %s) FROM %s", quoteIdent(column), quoteIdent(unit), quoteIdent(table))).Scan(&distinct, &rows, &units)
	return distinct, rows, units, err
}

// RowCount is the number of rows of a loaded table.
func (d *DB) RowCount(ctx context.Context, table string) (int64, error) {
	var n int64
	err := d.db.QueryRowContext(ctx, "SELECT count(*) FROM "+quoteIdent(table)).Scan(&n)
	return n, err
}

// Exec runs a statement in the loading phase (tests and benchmarks).
func (d *DB) Exec(ctx context.Context, q string) error {
	if d.locked {
		return errors.New("duckdb: Exec is only for the loading phase")
	}
	_, err := d.db.ExecContext(ctx, q)
	return err
}

// Lockdown ends the loading phase: no file, network or extension access,
// and no setting can change afterwards.
//
// DuckDB's perfect_ht_threshold stays at its default (12 bits) on purpose:
// perfect-hash aggregation allocates 2^bits slots per thread outside
// memory_limit, so raising it (which would speed up grouping by the unit
// id) would let one analyst GROUP BY over two 12-bit integer columns
// allocate gigabytes.
func (d *DB) Lockdown() error {
	for _, s := range []string{
		"SET enable_external_access = false",
		"SET allow_community_extensions = false",
		"SET lock_configuration = true",
	} {
		if _, err := d.db.Exec(s); err != nil {
			return fmt.Errorf("duckdb: lockdown: %s: %w", s, err)
		}
	}
	d.locked = true
	return nil
}

// Dialect implements engine.Engine.
func (d *DB) Dialect() string { return "duckdb" }

// Close implements engine.Engine.
func (d *DB) Close() error { return d.db.Close() }

// Query implements engine.Engine. The context's deadline interrupts the
// query inside DuckDB. Only a SELECT runs: the statement is prepared, its
// type checked, and the prepared statement executed, so no other kind of
// statement (CREATE, INSERT, COPY, SET...) can reach the instance even
// after Lockdown, which an in-memory DuckDB cannot make read-only.
func (d *DB) Query(ctx context.Context, q string, args ...any) (*engine.Result, error) {
	return d.query(ctx, q, 0, 0, args)
}

// ErrTooLarge is QueryBounded's refusal of a result over its bounds.
var ErrTooLarge = errors.New("duckdb: result over its bounds")

// QueryBounded is Query with a bound on the rows and on the bytes of text
// values materialized: past either it stops reading and fails with
// ErrTooLarge (the shadow catalog's answers are small by nature).
func (d *DB) QueryBounded(ctx context.Context, q string, maxRows, maxBytes int) (*engine.Result, error) {
	return d.query(ctx, q, maxRows, maxBytes, nil)
}

func (d *DB) query(ctx context.Context, q string, maxRows, maxBytes int, args []any) (*engine.Result, error) {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return nil, sanitize(ctx, err)
	}
	defer conn.Close()
	res := &engine.Result{}
	err = conn.Raw(func(dc any) error {
		ps, err := dc.(driver.ConnPrepareContext).PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		defer ps.Close()
		st := ps.(*duck.Stmt)
		if typ, err := st.StatementType(); err != nil || typ != duck.STATEMENT_TYPE_SELECT {
			return errNotSelect
		}
		named := make([]driver.NamedValue, len(args))
		for i, a := range args {
			named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
		}
		rows, err := st.QueryContext(ctx, named)
		if err != nil {
			return err
		}
		defer rows.Close()
		names := rows.Columns()
		typed, _ := rows.(driver.RowsColumnTypeDatabaseTypeName)
		for i, n := range names {
			c := engine.Column{Name: n}
			if typed != nil {
				c.Type = typed.ColumnTypeDatabaseTypeName(i)
			}
			res.Columns = append(res.Columns, c)
		}
		size := 0
		for {
			dest := make([]driver.Value, len(names))
			if err := rows.Next(dest); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			vals := make([]any, len(dest))
			for i, v := range dest {
				vals[i] = normalize(v)
				switch x := vals[i].(type) {
				case string:
					size += len(x)
				case []byte:
					size += len(x)
				default:
					size += 8
				}
			}
			res.Rows = append(res.Rows, vals)
			if (maxRows > 0 && len(res.Rows) > maxRows) || (maxBytes > 0 && size > maxBytes) {
				return ErrTooLarge
			}
		}
	})
	if errors.Is(err, ErrTooLarge) {
		return nil, err
	}
	if errors.Is(err, errNotSelect) {
		return nil, engine.NewSanitized("permission", "only a SELECT statement may run")
	}
	if err != nil {
		return nil, sanitize(ctx, err)
	}
	return res, nil
}

var errNotSelect = errors.New("duckdb: not a SELECT")

// normalize converts driver values to the documented Go types.
func normalize(v any) any {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		return new(big.Int).SetUint64(x)
	case float32:
		return finite(float64(x))
	case float64:
		// ±Inf and NaN (DOUBLE arithmetic that the total SQL lets through
		// instead of failing) are released as NULL, as errors are; JSON
		// cannot carry them.
		return finite(x)
	case duck.Decimal:
		f, _ := new(big.Float).Quo(new(big.Float).SetInt(x.Value), new(big.Float).SetFloat64(pow10(x.Scale))).Float64()
		return f
	case *big.Int:
		if x.IsInt64() {
			return x.Int64()
		}
		return x
	case time.Time:
		return x.UTC()
	}
	return v
}

func pow10(n uint8) float64 {
	f := 1.0
	for i := uint8(0); i < n; i++ {
		f *= 10
	}
	return f
}

// sanitize reduces a DuckDB error to its kind.
func sanitize(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return engine.ErrTimeout
	}
	msg := err.Error()
	var de *duck.Error
	kind := "internal"
	if errors.As(err, &de) {
		switch de.Type {
		case duck.ErrorTypeConversion:
			kind = "conversion"
		case duck.ErrorTypeOutOfMemory:
			return engine.ErrMemory
		case duck.ErrorTypeInterrupt:
			return engine.ErrTimeout
		case duck.ErrorTypeBinder, duck.ErrorTypeCatalog:
			kind = "binder"
		case duck.ErrorTypeParser, duck.ErrorTypeSyntax:
			kind = "syntax"
		case duck.ErrorTypeOutOfRange:
			kind = "range"
		case duck.ErrorTypeDivideByZero:
			kind = "division"
		case duck.ErrorTypePermission, duck.ErrorTypeIO, duck.ErrorTypeHTTP, duck.ErrorTypeInvalidConfiguration:
			kind = "permission"
		default:
			kind = strings.ToLower(strings.TrimPrefix(fmt.Sprint(de.Type), "ErrorType"))
		}
	} else if strings.Contains(msg, "Out of Memory") {
		return engine.ErrMemory
	} else if strings.Contains(msg, "INTERRUPT") || strings.Contains(msg, "Interrupted") {
		return engine.ErrTimeout
	}
	return engine.NewSanitized(kind, msg)
}

func finite(f float64) any {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil
	}
	return f
}

// BadValues counts the values of a CSV column that do not convert to a
// manifest type, and the line of the first (1 = the header), so validate
// can name the column and the line instead of relaying DuckDB's error.
func (d *DB) BadValues(ctx context.Context, file, column, typ string) (count, firstLine int64, err error) {
	q := fmt.Sprintf(`SELECT count(*), coalesce(min(rn), 0) FROM (SELECT row_number() OVER () AS rn, %s AS v FROM read_csv(%s, header = true, all_varchar = true))
		WHERE v IS NOT NULL AND v <> '' AND TRY_CAST(v AS %s) IS NULL`, quoteIdent(column), quoteLit(file), SQLType(typ))
	err = d.db.QueryRowContext(ctx, q).Scan(&count, &firstLine)
	if firstLine > 0 {
		firstLine++ // the header is line 1
	}
	return count, firstLine, err
}
