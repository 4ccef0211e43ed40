// Package catalog answers wire clients' system-catalog queries (psql's \dt
// and \d, information_schema, BI tools' schema discovery) as a kernel
// operation: from a shadow catalog, an empty locked-down DuckDB holding one
// empty table per dataset the caller may query, with only the columns its
// agreement exposes. Nothing else of the workspace, and no data, is there.
package catalog

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/engine/duckdb"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/sqlop"
)

// Shadow catalog bounds: it holds empty tables, so a catalog query needs
// little memory and time; anything more is a client looping.
const (
	shadowMemory  = "64MB"
	shadowTimeout = 5 * time.Second
)

// Rows is a catalog answer: column names and text-like values.
type Rows struct {
	Columns []string
	Rows    [][]any
}

// IsQuery reports whether a query reads the system catalog.
func IsQuery(text string) bool { return catalogRef.MatchString(text) }

// Read is the operation answering one catalog query.
func Read(sql string) govern.Op { return readOp{sql} }

type readOp struct{ sql string }

// Not Light: each read starts a shadow DuckDB, so admission counts it
// like a query.
func (readOp) Kind() share.OpKind { return share.OpCatalogRead }

func (o readOp) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	c.Entry.SQL = o.sql
	tree, err := pg.Parse(o.sql)
	if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetSelectStmt() == nil {
		return nil, refusal.New(refusal.BadSQL, "sql.select_only", "only a single SELECT may read the catalog")
	}
	if !catalogOnly(tree.Stmts[0].Stmt) {
		// The shadow catalog holds the datasets as empty tables: reading
		// one here would answer from nothing, as if it were data.
		return nil, refusal.New(refusal.Forbidden, "catalog.mixed", "a query that reads the system catalog cannot read datasets; query them separately")
	}
	entries := sqlop.Catalog(c.Snap.WS, c.Caller.Identity, c.Now)
	res, err := answer(ctx, entries, o.sql, tree)
	if err != nil {
		return nil, refusal.New(refusal.Internal, "catalog.shadow", "the catalog could not be read").WithCause(err)
	}
	out := &Rows{Rows: res.Rows}
	for _, col := range res.Columns {
		out.Columns = append(out.Columns, col.Name)
	}
	c.Entry.RowsReturned = int64(len(out.Rows))
	return govern.Answer(out), nil
}

var catalogRef = regexp.MustCompile(`(?i)\b(pg_catalog|information_schema)\s*\.|\bpg_(class|namespace|attribute|type|database|roles|settings|tables|views|index|description|constraint|am|inherits|proc)\b`)

// shims make psql's catalog SQL run in DuckDB's PostgreSQL-compatible catalog.
var shims = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?i)OPERATOR\s*\(\s*pg_catalog\.(~|!~|~~|=|<>)\s*\)`), " $1 "},
	{regexp.MustCompile(`(?i)COLLATE\s+pg_catalog\."?default"?`), ""},
	{regexp.MustCompile(`(?i)pg_catalog\.pg_get_userbyid\s*\(`), "airlock_owner("},
	{regexp.MustCompile(`(?i)pg_catalog\.pg_table_is_visible\s*\(`), "airlock_true("},
	{regexp.MustCompile(`(?i)pg_catalog\.format_type\s*\(`), "format_type("},
	{regexp.MustCompile(`(?i)pg_catalog\.pg_get_expr\s*\(`), "pg_get_expr("},
	{regexp.MustCompile(`(?i)pg_catalog\.array_to_string\s*\(`), "array_to_string("},
	{regexp.MustCompile(`(?i)::\s*pg_catalog\.regclass`), ""},
	{regexp.MustCompile(`(?i)'(\d+)'::oid`), "$1"},
}

// catalogOnly reports whether every relation a statement reads is a
// system-catalog one (pg_catalog, information_schema, an unqualified
// pg_* name) or one of its own CTEs.
func catalogOnly(stmt *pg.Node) bool {
	ctes := map[string]bool{}
	query.WalkPG(stmt, func(n *pg.Node) {
		if c := n.GetCommonTableExpr(); c != nil {
			ctes[strings.ToLower(c.Ctename)] = true
		}
	})
	ok := true
	query.WalkPG(stmt, func(n *pg.Node) {
		rv := n.GetRangeVar()
		if rv == nil {
			return
		}
		schema, rel := strings.ToLower(rv.Schemaname), strings.ToLower(rv.Relname)
		switch {
		case schema == "pg_catalog", schema == "information_schema":
		case schema == "" && (strings.HasPrefix(rel, "pg_") || ctes[rel]):
		default:
			ok = false
		}
	})
	return ok
}

// answer runs a catalog query in a fresh shadow catalog of the entries.
func answer(ctx context.Context, entries []sqlop.CatalogEntry, text string, tree *pg.ParseResult) (*engine.Result, error) {
	shadow, err := duckdb.Open(duckdb.Config{MemoryLimit: shadowMemory, Threads: 1})
	if err != nil {
		return nil, err
	}
	defer shadow.Close()
	setup := []string{
		`CREATE MACRO airlock_owner(x) AS 'airlock'`,
		`CREATE MACRO airlock_true(x) AS true`,
	}
	for _, e := range entries {
		var cols []string
		for _, c := range e.Columns {
			cols = append(cols, query.QuoteIdent(c.Name)+" "+duckdb.SQLType(c.Type))
		}
		if len(cols) > 0 {
			setup = append(setup, fmt.Sprintf("CREATE TABLE %s (%s)", query.QuoteIdent(e.Name), strings.Join(cols, ", ")))
		}
	}
	for _, q := range setup {
		if err := shadow.Exec(ctx, q); err != nil {
			return nil, err
		}
	}
	if err := shadow.Lockdown(); err != nil {
		return nil, err
	}
	rewritten := text
	for _, sh := range shims {
		rewritten = sh.re.ReplaceAllString(rewritten, sh.with)
	}
	qctx, cancel := context.WithTimeout(ctx, shadowTimeout)
	defer cancel()
	res, err := shadow.Query(qctx, rewritten)
	if err != nil {
		// psql's \d asks for PostgreSQL-only catalog columns; answer its
		// describe queries from the principal's catalog, and any other
		// catalog read DuckDB cannot run with an empty result of the
		// right shape (psql then omits that footer).
		res = describeFallback(qctx, shadow, entries, text, tree)
	}
	return res, nil
}

var (
	relFlagsQuery = regexp.MustCompile(`(?is)c\.relchecks.*FROM\s+pg_catalog\.pg_class\s+c.*WHERE\s+c\.oid\s*=\s*'(\d+)'`)
	attrQuery     = regexp.MustCompile(`(?is)FROM\s+pg_catalog\.pg_attribute\s+a.*a\.attrelid\s*=\s*'(\d+)'`)
)

func describeFallback(ctx context.Context, shadow *duckdb.DB, entries []sqlop.CatalogEntry, text string, tree *pg.ParseResult) *engine.Result {
	if m := relFlagsQuery.FindStringSubmatch(text); m != nil {
		return &engine.Result{
			Columns: namesOf(tree),
			Rows:    [][]any{{int64(0), "r", false, false, false, false, false, false, false, "", int64(0), "", "p", "d", "heap"}},
		}
	}
	if m := attrQuery.FindStringSubmatch(text); m != nil {
		res := &engine.Result{Columns: namesOf(tree)}
		name := relName(ctx, shadow, m[1])
		for _, e := range entries {
			if e.Name != name {
				continue
			}
			for _, c := range e.Columns {
				row := []any{c.Name, pgTypeName(c.Type), nil, false, nil, "", ""}
				for len(row) < len(res.Columns) {
					row = append(row, nil)
				}
				res.Rows = append(res.Rows, row[:len(res.Columns)])
			}
		}
		return res
	}
	return &engine.Result{Columns: namesOf(tree)}
}

func relName(ctx context.Context, shadow *duckdb.DB, oid string) string {
	r, err := shadow.Query(ctx, "SELECT relname FROM pg_catalog.pg_class WHERE oid = "+oid)
	if err != nil || len(r.Rows) == 0 {
		return ""
	}
	name, _ := r.Rows[0][0].(string)
	return name
}

func pgTypeName(t string) string {
	switch t {
	case "integer":
		return "bigint"
	case "double":
		return "double precision"
	case "decimal":
		return "numeric(18,2)"
	case "timestamp":
		return "timestamp without time zone"
	case "date", "boolean", "text":
		return t
	}
	return "text"
}

// namesOf lists a SELECT's output column names as PostgreSQL would.
func namesOf(tree *pg.ParseResult) []engine.Column {
	var out []engine.Column
	for _, n := range tree.Stmts[0].Stmt.GetSelectStmt().TargetList {
		rt := n.GetResTarget()
		name := rt.GetName()
		if name == "" {
			if cr := rt.GetVal().GetColumnRef(); cr != nil && len(cr.Fields) > 0 {
				name = cr.Fields[len(cr.Fields)-1].GetString_().GetSval()
			}
		}
		if name == "" {
			name = "?column?"
		}
		out = append(out, engine.Column{Name: name})
	}
	return out
}
