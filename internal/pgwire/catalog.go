package pgwire

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	wire "github.com/jeroenrinzema/psql-wire"
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/engine/duckdb"
	"github.com/airlock-dev/airlock/internal/identity"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/refusal"
)

var catalogRef = regexp.MustCompile(`(?i)\b(pg_catalog|information_schema)\s*\.|\bpg_(class|namespace|attribute|type|database|roles|settings|tables|views|index|description|constraint|am|inherits|proc)\b`)

// isCatalogQuery reports whether a query reads the system catalog.
func isCatalogQuery(text string) bool { return catalogRef.MatchString(text) }

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

// catalogQuery answers a catalog query from a shadow catalog: an empty,
// locked-down DuckDB holding one empty table per dataset the principal may
// query, with only the columns its agreement exposes. Nothing else of the
// workspace, and no data, is there to be found.
func (s *Server) catalogQuery(ctx context.Context, id identity.Identity, text string) (wire.PreparedStatements, error) {
	tree, err := pg.Parse(text)
	if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetSelectStmt() == nil {
		return nil, s.auditCatalog(ctx, id, text, refusal.New(refusal.BadSQL, "sql.select_only", "only a single SELECT may read the catalog"))
	}
	shadow, err := duckdb.Open(duckdb.Config{MemoryLimit: "64MB", Threads: 1})
	if err != nil {
		return nil, pgError(err)
	}
	setup := []string{
		`CREATE MACRO airlock_owner(x) AS 'airlock'`,
		`CREATE MACRO airlock_true(x) AS true`,
	}
	for _, e := range s.Gateway.Catalog(id) {
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
			shadow.Close()
			return nil, pgError(err)
		}
	}
	if err := shadow.Lockdown(); err != nil {
		shadow.Close()
		return nil, pgError(err)
	}
	rewritten := text
	for _, sh := range shims {
		rewritten = sh.re.ReplaceAllString(rewritten, sh.with)
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := shadow.Query(qctx, rewritten)
	if err != nil {
		// psql's \d asks for PostgreSQL-only catalog columns; answer its
		// describe queries from the principal's catalog, and any other
		// catalog read DuckDB cannot run with an empty result of the
		// right shape (psql then omits that footer).
		res = s.describeFallback(qctx, shadow, id, text, tree)
	}
	shadow.Close()
	if err := s.auditCatalog(ctx, id, text, nil); err != nil {
		return nil, err
	}
	var cols wire.Columns
	for _, c := range res.Columns {
		cols = append(cols, wire.Column{Name: c.Name, Oid: oidText, Width: -1})
	}
	rows := res.Rows
	return wire.Prepared(wire.NewStatement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
		for _, r := range rows {
			out := make([]any, len(r))
			for i, v := range r {
				if v != nil {
					out[i] = encode(v, nil, i)
				}
			}
			if err := w.Row(out); err != nil {
				return err
			}
		}
		return w.Complete(fmt.Sprintf("SELECT %d", len(rows)))
	}, wire.WithColumns(cols))), nil
}

// auditCatalog records a catalog read; refusal, if not nil, is returned
// as the Postgres error.
func (s *Server) auditCatalog(ctx context.Context, id identity.Identity, text string, refused *refusal.Error) error {
	e := audit.Entry{Time: time.Now().UTC(), Principal: id.Principal, Org: id.Org, Channel: "pgwire", QueryKind: "catalog",
		SQL: text, Decision: "allow", PolicyVersion: s.Gateway.Snapshot().Policy.Version()}
	if refused != nil {
		e.Decision, e.Code, e.Rule, e.Message = "deny", string(refused.Code), refused.Rule, refused.Message
	}
	if _, err := s.Gateway.Audit.Append(context.WithoutCancel(ctx), e); err != nil {
		return pgError(refusal.New(refusal.Internal, "audit.unavailable", "the audit log is unavailable"))
	}
	if refused != nil {
		return pgError(refused)
	}
	return nil
}

var (
	relFlagsQuery = regexp.MustCompile(`(?is)c\.relchecks.*FROM\s+pg_catalog\.pg_class\s+c.*WHERE\s+c\.oid\s*=\s*'(\d+)'`)
	attrQuery     = regexp.MustCompile(`(?is)FROM\s+pg_catalog\.pg_attribute\s+a.*a\.attrelid\s*=\s*'(\d+)'`)
)

func (s *Server) describeFallback(ctx context.Context, shadow *duckdb.DB, id identity.Identity, text string, tree *pg.ParseResult) *engine.Result {
	if m := relFlagsQuery.FindStringSubmatch(text); m != nil {
		return &engine.Result{
			Columns: namesOf(tree),
			Rows:    [][]any{{int64(0), "r", false, false, false, false, false, false, false, "", int64(0), "", "p", "d", "heap"}},
		}
	}
	if m := attrQuery.FindStringSubmatch(text); m != nil {
		res := &engine.Result{Columns: namesOf(tree)}
		name := s.relName(ctx, shadow, m[1])
		for _, e := range s.Gateway.Catalog(id) {
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

func (s *Server) relName(ctx context.Context, shadow *duckdb.DB, oid string) string {
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
