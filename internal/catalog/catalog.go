// Package catalog answers wire clients' system-catalog queries (psql's \dt
// and \d, information_schema, BI tools' schema discovery) as a kernel
// operation: from a shadow catalog, an empty locked-down DuckDB holding one
// empty table per dataset the caller may query, with only the columns its
// agreement exposes. Nothing else of the workspace, and no data, is there.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
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
	shadowTimeout = 2 * time.Second
)

// serverVersion is what pg_settings reports (the wire endpoint's version).
const serverVersion = "15.8"

// Rows is a catalog answer: column names and text-like values.
type Rows struct {
	Columns []string
	Rows    [][]any
}

// IsQuery reports whether a statement reads the system catalog: whether
// its parse tree (not its text, so a comment does not count) names a
// relation in pg_catalog or information_schema, or an unqualified pg_*
// one. Everything else goes to the governed SQL operation.
func IsQuery(text string) bool {
	tree, err := pg.Parse(text)
	if err != nil || len(tree.Stmts) != 1 {
		return false
	}
	found := false
	query.WalkPG(tree.Stmts[0].Stmt, func(n *pg.Node) {
		if rv := n.GetRangeVar(); rv != nil && isCatalogRelation(rv) {
			found = true
		}
	})
	return found
}

func isCatalogRelation(rv *pg.RangeVar) bool {
	schema, rel := strings.ToLower(rv.Schemaname), strings.ToLower(rv.Relname)
	return schema == "pg_catalog" || schema == "information_schema" || (schema == "" && strings.HasPrefix(rel, "pg_"))
}

// Bounds of one catalog answer: a catalog lists a few datasets' columns,
// so more than this is a client looping or an attempt at compute.
const (
	maxRows  = 10000
	maxBytes = 4 << 20
)

// Read is the operation answering one catalog query, from the datasets
// svc lists for the caller.
func Read(svc *sqlop.Service, sql string) govern.Op { return readOp{svc, sql} }

type readOp struct {
	svc *sqlop.Service
	sql string
}

// Not Light: each read starts a shadow DuckDB, so admission counts it
// like a query.
func (readOp) Kind() share.OpKind { return share.OpCatalogRead }

func (o readOp) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	c.Entry.SQL = o.sql
	tree, err := pg.Parse(o.sql)
	if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetSelectStmt() == nil {
		return nil, refusal.New(refusal.BadSQL, "sql.select_only", "only a single SELECT may read the catalog")
	}
	if !catalogOnly(tree.Stmts[0].Stmt, c.Snap.WS.Datasets) {
		// The shadow catalog holds the datasets as empty tables: reading
		// one here would answer from nothing, as if it were data; and
		// table functions (range, duckdb_settings, ...) are compute or
		// the shadow engine's own state, not the catalog.
		return nil, refusal.New(refusal.Forbidden, "catalog.mixed", "a query that reads the system catalog may read only catalog relations; query datasets separately")
	}
	entries, err := o.svc.Catalog(ctx, c.Snap.WS, c.Caller.Identity, c.Now)
	if err != nil {
		return nil, err
	}
	res, err := answer(ctx, entries, o.sql, tree)
	if r, ok := err.(*refusal.Error); ok {
		return nil, r
	}
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

// Normalize is a catalog statement's canonical text: deparsed from its
// parse tree, so comments and layout do not count and constants are
// re-quoted (for auditing exact repeats).
func Normalize(text string) string {
	tree, err := pg.Parse(text)
	if err != nil || len(tree.Stmts) != 1 {
		return text
	}
	if out, err := pg.Deparse(tree); err == nil {
		return out
	}
	return text
}

// shadowRelations are catalog relations the shadow presents through its
// own table macros (see answer), with what drivers rely on.
var shadowRelations = map[string]string{
	"pg_attribute": "airlock_pg_attribute", "pg_settings": "airlock_pg_settings", "pg_database": "airlock_pg_database",
	"pg_namespace": "airlock_pg_namespace", "pg_type": "airlock_pg_type",
	"pg_proc": "airlock_pg_proc", "pg_views": "airlock_pg_views",
}

// shadowInformationSchema are information_schema relations presented the
// same way.
var shadowInformationSchema = map[string]string{"views": "airlock_is_views"}

// shadowFunctions are catalog functions the shadow answers with its own
// macros (PostgreSQL's are missing from DuckDB or read DuckDB's ids).
var shadowFunctions = map[string]string{
	"pg_get_userbyid": "airlock_owner", "pg_table_is_visible": "airlock_true", "format_type": "airlock_format_type",
	"_pg_expandarray": "airlock_expandarray", "pg_encoding_to_char": "airlock_encoding",
	"pg_table_size": "airlock_size", "pg_total_relation_size": "airlock_size", "pg_relation_size": "airlock_size",
	"pg_database_size": "airlock_size", "pg_indexes_size": "airlock_size", "pg_size_pretty": "airlock_size_pretty",
	"obj_description": "airlock_description", "col_description": "airlock_description", "shobj_description": "airlock_description",
	"version": "airlock_version",
}

func str(n *pg.Node) string { return n.GetString_().GetSval() }

func strNode(s string) *pg.Node {
	return &pg.Node{Node: &pg.Node_String_{String_: &pg.String{Sval: s}}}
}

// rangeFunction is FROM name() [AS alias], parsed once per call.
func rangeFunction(name string, alias *pg.Alias) *pg.Node {
	t, _ := pg.Parse("SELECT * FROM " + name + "()")
	n := t.Stmts[0].Stmt.GetSelectStmt().FromClause[0]
	n.GetRangeFunction().Alias = alias
	return n
}

// rewrite turns a checked catalog statement into the shadow's dialect on
// its parse tree (never on its text, where a quote inside a comment or a
// literal could be taken for code) and deparses it: catalog relations and
// functions the shadow answers with its own macros, PostgreSQL's type
// casts (regclass, oid) and operator and collation qualifiers DuckDB does
// not know.
func rewrite(tree *pg.ParseResult) (string, error) {
	var fix func(n *pg.Node)
	fix = func(n *pg.Node) {
		if n == nil {
			return
		}
		switch {
		case n.GetRangeVar() != nil:
			rv := n.GetRangeVar()
			schema, rel := strings.ToLower(rv.Schemaname), strings.ToLower(rv.Relname)
			macro, ok := shadowRelations[rel]
			if !ok || (schema != "" && schema != "pg_catalog") {
				macro, ok = shadowInformationSchema[rel]
				ok = ok && schema == "information_schema"
			}
			if ok {
				alias := rv.Alias
				if alias == nil {
					alias = &pg.Alias{Aliasname: rel}
				}
				n.Node = rangeFunction(macro, alias).Node
				return
			}
		case n.GetFuncCall() != nil:
			fc := n.GetFuncCall()
			if len(fc.Funcname) == 2 && (str(fc.Funcname[0]) == "pg_catalog" || str(fc.Funcname[0]) == "information_schema") {
				fc.Funcname = fc.Funcname[1:]
			}
			if macro, ok := shadowFunctions[strings.ToLower(str(fc.Funcname[len(fc.Funcname)-1]))]; ok {
				fc.Funcname = []*pg.Node{strNode(macro)}
			}
		case n.GetTypeCast() != nil:
			tc := n.GetTypeCast()
			names := tc.TypeName.GetNames()
			if len(names) == 0 || tc.Arg == nil {
				break
			}
			if len(names) == 2 && str(names[0]) == "pg_catalog" {
				tc.TypeName.Names = names[1:]
				names = tc.TypeName.Names
			}
			switch strings.ToLower(str(names[len(names)-1])) {
			case "regclass", "regproc", "regtype", "regnamespace", "regrole", "regprocedure", "regoper":
				if tc.Arg.GetAConst() != nil {
					// A name looked up as an object id: the shadow has no such
					// objects, so no row will match it.
					n.Node = &pg.Node_AConst{AConst: &pg.A_Const{Val: &pg.A_Const_Ival{Ival: &pg.Integer{Ival: 0}}}}
				} else {
					n.Node = tc.Arg.Node
					fix(n)
				}
				return
			case "oid":
				if c := tc.Arg.GetAConst(); c != nil && c.GetSval() != nil {
					if v, err := strconv.ParseInt(c.GetSval().Sval, 10, 32); err == nil {
						n.Node = &pg.Node_AConst{AConst: &pg.A_Const{Val: &pg.A_Const_Ival{Ival: &pg.Integer{Ival: int32(v)}}}}
						return
					}
				}
			}
		case n.GetAExpr() != nil:
			ae := n.GetAExpr()
			if len(ae.Name) == 2 && str(ae.Name[0]) == "pg_catalog" {
				ae.Name = ae.Name[1:]
			}
		case n.GetCollateClause() != nil:
			cc := n.GetCollateClause()
			if cc.Arg != nil {
				n.Node = cc.Arg.Node
				fix(n)
				return
			}
		}
		query.ForEachChild(n, fix)
	}
	for _, st := range tree.Stmts {
		fix(st.Stmt)
	}
	return pg.Deparse(tree)
}

// catalogOnly reports whether every relation a statement reads is a
// system-catalog one or one of its own CTEs (never named like a dataset,
// whatever the scope), and it calls no table function.
func catalogOnly[M any](stmt *pg.Node, datasets map[string]M) bool {
	ctes := map[string]bool{}
	query.WalkPG(stmt, func(n *pg.Node) {
		if c := n.GetCommonTableExpr(); c != nil {
			ctes[strings.ToLower(c.Ctename)] = true
		}
	})
	ok := true
	query.WalkPG(stmt, func(n *pg.Node) {
		if fc := n.GetFuncCall(); fc != nil && !catalogFunctions[funcName(fc)] {
			ok = false
		}
		if rf := n.GetRangeFunction(); rf != nil && !allowedTableFunctions(rf) {
			ok = false
		}
		if n.GetRangeTableFunc() != nil {
			ok = false
		}
		rv := n.GetRangeVar()
		if rv == nil || isCatalogRelation(rv) {
			return
		}
		rel := strings.ToLower(rv.Relname)
		_, isDataset := datasets[rv.Relname]
		if rv.Schemaname != "" || !ctes[rel] || isDataset {
			ok = false
		}
	})
	return ok
}

// funcName is a call's function name, lower case, without pg_catalog.
func funcName(fc *pg.FuncCall) string {
	parts := fc.Funcname
	name := strings.ToLower(parts[len(parts)-1].GetString_().GetSval())
	if len(parts) == 2 && parts[0].GetString_().GetSval() != "pg_catalog" && parts[0].GetString_().GetSval() != "information_schema" || len(parts) > 2 {
		return "?" + name
	}
	return name
}

// catalogFunctions are the functions a catalog statement may call: what
// psql, pgJDBC, SQLAlchemy and BI tools use over the catalog, and plain
// scalar functions. Anything else (the shadow engine's own functions,
// settings, files) is refused.
var catalogFunctions = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`
		format_type pg_get_userbyid pg_table_is_visible pg_type_is_visible pg_function_is_visible pg_get_expr pg_get_indexdef
		pg_get_constraintdef pg_get_viewdef pg_get_ruledef pg_get_triggerdef pg_get_partkeydef pg_get_statisticsobjdef_columns
		pg_get_function_result pg_get_function_arguments pg_get_function_identity_arguments pg_get_serial_sequence
		obj_description col_description shobj_description pg_encoding_to_char pg_size_pretty pg_table_size pg_relation_size
		pg_total_relation_size pg_database_size pg_indexes_size pg_relation_is_publishable pg_get_keywords
		has_table_privilege has_schema_privilege has_database_privilege has_column_privilege has_any_column_privilege
		current_schema current_schemas current_database current_user session_user version
		array_to_string array_upper array_lower array_length array_agg string_agg unnest generate_series generate_subscripts
		_pg_expandarray _pg_char_max_length _pg_numeric_precision _pg_numeric_scale _pg_datetime_precision _pg_truetypid _pg_truetypmod
		quote_ident quote_literal regexp_replace regexp_matches textcat length lower upper trim btrim ltrim rtrim substring substr
		position strpos concat concat_ws left right replace split_part translate
		coalesce nullif greatest least count min max sum avg bool_and bool_or every row_number rank
		abs round ceil floor mod now to_char json_build_object jsonb_build_object json_agg jsonb_agg to_json to_jsonb`) {
		catalogFunctions[f] = true
	}
}

// catalogTableFunctions are the set-returning functions catalog queries
// use in FROM (psql's \d uses generate_series over a column list). Their
// output is bounded by the answer's row limit and the shadow's deadline.
var catalogTableFunctions = map[string]bool{"generate_series": true, "unnest": true, "generate_subscripts": true}

// allowedTableFunctions reports whether every function of a FROM item is
// one of catalogTableFunctions (the shadow engine's own, such as
// duckdb_settings or range, are not).
func allowedTableFunctions(rf *pg.RangeFunction) bool {
	found := false
	for _, item := range rf.Functions {
		for _, f := range item.GetList().GetItems() {
			fc := f.GetFuncCall()
			if fc == nil {
				continue
			}
			found = true
			name := fc.Funcname[len(fc.Funcname)-1].GetString_().GetSval()
			if len(fc.Funcname) > 1 && fc.Funcname[0].GetString_().GetSval() != "pg_catalog" || !catalogTableFunctions[strings.ToLower(name)] {
				return false
			}
		}
	}
	return found
}

// answer runs a catalog query in a fresh shadow catalog of the entries.
func answer(ctx context.Context, entries []sqlop.CatalogEntry, text string, tree *pg.ParseResult) (*engine.Result, error) {
	shadow, err := duckdb.Open(duckdb.Config{MemoryLimit: shadowMemory, Threads: 1})
	if err != nil {
		return nil, err
	}
	defer shadow.Close()
	// The datasets live in schema public, as the governed SQL names them
	// (public.visits) and as current_schema() says.
	setup := []string{
		`CREATE MACRO airlock_owner(x) AS 'airlock'`,
		`CREATE MACRO airlock_true(x) AS true`,
		`CREATE SCHEMA public`,
		`SET schema = 'public'`,
		// DuckDB's pg_attribute gives DuckDB's own type ids, which match no
		// pg_type row: drivers joining the two (pgJDBC's getColumns) lost
		// every column. This is pg_attribute with PostgreSQL's OIDs and
		// typmods; format_type reads them.
		`CREATE MACRO airlock_pg_attribute() AS TABLE SELECT * REPLACE (
			CASE atttypid WHEN 10 THEN 16 WHEN 11 THEN 21 WHEN 12 THEN 21 WHEN 13 THEN 23 WHEN 14 THEN 20 WHEN 15 THEN 1082
				WHEN 16 THEN 1083 WHEN 19 THEN 1114 WHEN 32 THEN 1184 WHEN 21 THEN 1700 WHEN 22 THEN 700 WHEN 23 THEN 701
				WHEN 25 THEN 1043 WHEN 26 THEN 17 WHEN 27 THEN 1186 ELSE 1043 END AS atttypid,
			CASE WHEN atttypid = 21 THEN (atttypmod // 1000) * 65536 + atttypmod % 1000 + 4 ELSE -1 END AS atttypmod,
			CASE atttypid WHEN 10 THEN 1 WHEN 11 THEN 2 WHEN 12 THEN 2 WHEN 13 THEN 4 WHEN 14 THEN 8 WHEN 15 THEN 4 WHEN 19 THEN 8 WHEN 23 THEN 8 ELSE -1 END AS attlen)
			FROM pg_catalog.pg_attribute`,
		`CREATE MACRO airlock_format_type(oid, typmod) AS CASE oid WHEN 16 THEN 'boolean' WHEN 20 THEN 'bigint' WHEN 21 THEN 'smallint'
			WHEN 23 THEN 'integer' WHEN 25 THEN 'text' WHEN 1043 THEN 'text' WHEN 700 THEN 'real' WHEN 701 THEN 'double precision'
			WHEN 1082 THEN 'date' WHEN 1083 THEN 'time without time zone' WHEN 1114 THEN 'timestamp without time zone'
			WHEN 1184 THEN 'timestamp with time zone' WHEN 1186 THEN 'interval' WHEN 17 THEN 'bytea'
			WHEN 1700 THEN CASE WHEN typmod > 4 THEN 'numeric(' || ((typmod - 4) // 65536) || ',' || ((typmod - 4) % 65536) || ')' ELSE 'numeric' END
			ELSE 'text' END`,
		// pg_settings as PostgreSQL 15 would answer a client: DuckDB's own
		// would show the shadow engine's settings (paths included) and lack
		// what drivers read (pgJDBC's max_index_keys).
		`CREATE MACRO airlock_pg_settings() AS TABLE SELECT * FROM (VALUES
			('max_index_keys', '32', 'Preset Options'), ('max_identifier_length', '63', 'Preset Options'),
			('server_version', '` + serverVersion + `', 'Preset Options'), ('server_version_num', '150008', 'Preset Options'),
			('server_encoding', 'UTF8', 'Client Connection Defaults'), ('client_encoding', 'UTF8', 'Client Connection Defaults'),
			('standard_conforming_strings', 'on', 'Version and Platform Compatibility'), ('DateStyle', 'ISO, MDY', 'Client Connection Defaults'),
			('TimeZone', 'UTC', 'Client Connection Defaults'), ('integer_datetimes', 'on', 'Preset Options'),
			('search_path', 'public', 'Client Connection Defaults'), ('default_transaction_read_only', 'on', 'Client Connection Defaults'),
			('transaction_isolation', 'read committed', 'Client Connection Defaults'))
			AS t(name, setting, category)`,
		// The schemas a client sees: public (the datasets) and the
		// catalogs, not the shadow engine's own default schema.
		`CREATE MACRO airlock_pg_namespace() AS TABLE SELECT oid, nspname, nspowner, nspacl FROM pg_catalog.pg_namespace WHERE nspname <> 'main'
			UNION ALL SELECT 11, 'pg_catalog', 10, NULL UNION ALL SELECT 13000, 'information_schema', 10, NULL`,
		// pg_type with what drivers join on: its types in pg_catalog, and
		// typrelid 0 rather than NULL (pgJDBC's getTypeInfo).
		`CREATE MACRO airlock_pg_type() AS TABLE SELECT * REPLACE (coalesce(typrelid, 0) AS typrelid,
			11 AS typnamespace)
			FROM pg_catalog.pg_type WHERE oid IS NOT NULL`,
		// One database, as psql's \l lists it.
		`CREATE MACRO airlock_pg_database() AS TABLE SELECT 1::INTEGER AS oid, 'airlock' AS datname, 10::INTEGER AS datdba, 6::INTEGER AS encoding,
			'c' AS datlocprovider, false AS datistemplate, true AS datallowconn, -1::INTEGER AS datconnlimit, 'C' AS datcollate, 'C' AS datctype,
			NULL::VARCHAR AS daticulocale, NULL::VARCHAR AS datcollversion, NULL::VARCHAR[] AS datacl, 1663::INTEGER AS dattablespace`,
		`CREATE MACRO airlock_encoding(x) AS 'UTF8'`,
		// The endpoint's version, not the shadow engine's; and none of the
		// shadow engine's own functions and views.
		`CREATE MACRO airlock_version() AS 'PostgreSQL ` + serverVersion + ` (Airlock)'`,
		`CREATE MACRO airlock_pg_proc() AS TABLE SELECT * FROM pg_catalog.pg_proc WHERE false`,
		`CREATE MACRO airlock_pg_views() AS TABLE SELECT * FROM pg_catalog.pg_views WHERE false`,
		`CREATE MACRO airlock_is_views() AS TABLE SELECT * FROM information_schema.views WHERE false`,
		`CREATE MACRO airlock_size(x) AS 0::BIGINT`,
		`CREATE MACRO airlock_size_pretty(x) AS '0 bytes'`,
		`CREATE MACRO airlock_description(x, y) AS NULL::VARCHAR`,
		`CREATE MACRO airlock_expandarray(a) AS {'x': NULL::INTEGER, 'n': NULL::INTEGER}`,
		`CREATE MACRO array_upper(a, d) AS len(a)`,
	}
	for _, e := range entries {
		var cols []string
		for _, c := range e.Columns {
			cols = append(cols, query.QuoteIdent(c.Name)+" "+duckdb.SQLType(c.Type))
		}
		if len(cols) > 0 {
			setup = append(setup, fmt.Sprintf("CREATE TABLE public.%s (%s)", query.QuoteIdent(e.Name), strings.Join(cols, ", ")))
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
	rewritten, err := rewrite(tree)
	if err != nil {
		return nil, err
	}
	qctx, cancel := context.WithTimeout(ctx, shadowTimeout)
	defer cancel()
	res, err := shadow.QueryBounded(qctx, rewritten, maxRows, maxBytes)
	switch {
	case errors.Is(err, duckdb.ErrTooLarge):
		return nil, refusal.New(refusal.Limit, "catalog.size", "a catalog answer is limited to %d rows and %d bytes", maxRows, maxBytes)
	case errors.Is(err, engine.ErrTimeout), errors.Is(err, engine.ErrMemory):
		return nil, refusal.New(refusal.Limit, "limit.time", "the catalog query exceeded its limits (%s, %s)", shadowTimeout, shadowMemory)
	}
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
