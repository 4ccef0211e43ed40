package pgwire

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	wire "github.com/jeroenrinzema/psql-wire"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// The session functions: what drivers and tools ask of any PostgreSQL
// before and beside real queries (pgx and database/sql Ping, SQLAlchemy's
// connect, BI tools' health checks). A SELECT with no FROM whose every
// item is a constant, a cast of one, or one of these functions is
// answered here from the session, without data; anything else goes to
// the governed pipeline. The list is fixed (docs/wire.md).
var sessionFunctions = map[string]func(c sessionInfo) any{
	"version":                  func(c sessionInfo) any { return "PostgreSQL " + ServerVersion + " (Airlock)" },
	"current_user":             func(c sessionInfo) any { return c.user },
	"session_user":             func(c sessionInfo) any { return c.user },
	"user":                     func(c sessionInfo) any { return c.user },
	"current_role":             func(c sessionInfo) any { return c.user },
	"current_schema":           func(c sessionInfo) any { return "public" },
	"current_database":         func(c sessionInfo) any { return c.database },
	"current_catalog":          func(c sessionInfo) any { return c.database },
	"pg_backend_pid":           func(c sessionInfo) any { return int64(1) },
	"pg_is_in_recovery":        func(c sessionInfo) any { return false },
	"inet_server_port":         func(c sessionInfo) any { return nil },
	"inet_server_addr":         func(c sessionInfo) any { return nil },
	"pg_postmaster_start_time": func(c sessionInfo) any { return nil },
}

type sessionInfo struct {
	user, database string
	setting        func(name string) string
}

// sessionColumn is one answered column.
type sessionColumn struct {
	name  string
	oid   uint32
	value any
}

// sessionQuery answers a FROM-less SELECT of constants and session
// functions, or reports that text is not one.
func sessionQuery(text string, info sessionInfo) ([]sessionColumn, bool) {
	tree, err := pg.Parse(text)
	if err != nil || len(tree.Stmts) != 1 {
		return nil, false
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	if sel == nil || len(sel.FromClause) > 0 || sel.WhereClause != nil || len(sel.GroupClause) > 0 || sel.HavingClause != nil ||
		len(sel.SortClause) > 0 || sel.LimitCount != nil || sel.LimitOffset != nil || len(sel.DistinctClause) > 0 || sel.IntoClause != nil ||
		len(sel.LockingClause) > 0 || len(sel.WindowClause) > 0 || sel.WithClause != nil || sel.Op != pg.SetOperation_SETOP_NONE || len(sel.TargetList) == 0 || len(sel.ValuesLists) > 0 {
		return nil, false
	}
	var out []sessionColumn
	for _, t := range sel.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			return nil, false
		}
		col, ok := sessionValue(rt.Val, info)
		if !ok {
			return nil, false
		}
		if rt.Name != "" {
			col.name = rt.Name
		}
		out = append(out, col)
	}
	return out, true
}

func sessionValue(n *pg.Node, info sessionInfo) (sessionColumn, bool) {
	switch {
	case n.GetAConst() != nil:
		c := n.GetAConst()
		col := sessionColumn{name: "?column?"}
		switch {
		case c.Isnull:
			col.oid = oidText
		case c.GetIval() != nil:
			col.oid, col.value = oidInt4, int64(c.GetIval().Ival)
		case c.GetFval() != nil:
			f, err := strconv.ParseFloat(c.GetFval().Fval, 64)
			if err != nil {
				return col, false
			}
			col.oid, col.value = oidNumeric, f
		case c.GetBoolval() != nil:
			col.oid, col.value = oidBool, c.GetBoolval().Boolval
		case c.GetSval() != nil:
			col.oid, col.value = oidText, c.GetSval().Sval
		default:
			return col, false
		}
		return col, true
	case n.GetTypeCast() != nil:
		tc := n.GetTypeCast()
		col, ok := sessionValue(tc.Arg, info)
		if !ok {
			return col, false
		}
		names := tc.TypeName.GetNames()
		typ := strings.ToLower(names[len(names)-1].GetString_().GetSval())
		switch typ {
		case "text", "varchar", "bpchar", "name":
			col.oid, col.value = oidText, castText(col.value)
		case "int2", "int4", "int8", "integer", "bigint", "smallint":
			i, err := strconv.ParseInt(fmt.Sprint(col.value), 10, 64)
			if err != nil {
				return col, false
			}
			col.oid, col.value = oidInt8, i
		case "bool", "boolean":
			b, err := strconv.ParseBool(fmt.Sprint(col.value))
			if err != nil {
				return col, false
			}
			col.oid, col.value = oidBool, b
		default:
			return col, false
		}
		if col.name == "?column?" {
			col.name = typ
		}
		return col, true
	case n.GetSqlvalueFunction() != nil:
		name := map[pg.SQLValueFunctionOp]string{
			pg.SQLValueFunctionOp_SVFOP_CURRENT_USER: "current_user", pg.SQLValueFunctionOp_SVFOP_SESSION_USER: "session_user",
			pg.SQLValueFunctionOp_SVFOP_USER: "current_user", pg.SQLValueFunctionOp_SVFOP_CURRENT_ROLE: "current_role",
			pg.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA: "current_schema", pg.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG: "current_catalog",
		}[n.GetSqlvalueFunction().Op]
		f, ok := sessionFunctions[name]
		if !ok {
			return sessionColumn{}, false
		}
		return typed(name, f(info)), true
	case n.GetFuncCall() != nil && isCurrentSetting(n.GetFuncCall()):
		// current_setting('name'): the session's answer to SHOW name.
		arg := n.GetFuncCall().Args[0].GetAConst().GetSval().GetSval()
		return sessionColumn{name: "current_setting", oid: oidText, value: info.setting(arg)}, true
	case n.GetFuncCall() != nil:
		fc := n.GetFuncCall()
		if len(fc.Args) > 0 || fc.AggStar || fc.Over != nil || fc.AggFilter != nil || len(fc.AggOrder) > 0 || fc.AggDistinct || fc.FuncVariadic {
			return sessionColumn{}, false
		}
		parts := fc.Funcname
		if len(parts) == 2 && parts[0].GetString_().GetSval() != "pg_catalog" || len(parts) > 2 {
			return sessionColumn{}, false
		}
		name := strings.ToLower(parts[len(parts)-1].GetString_().GetSval())
		f, ok := sessionFunctions[name]
		if !ok {
			return sessionColumn{}, false
		}
		return typed(name, f(info)), true
	}
	return sessionColumn{}, false
}

// isCurrentSetting reports whether fc is current_setting('<constant>').
func isCurrentSetting(fc *pg.FuncCall) bool {
	parts := fc.Funcname
	name := strings.ToLower(parts[len(parts)-1].GetString_().GetSval())
	if name != "current_setting" || len(parts) > 2 || len(parts) == 2 && parts[0].GetString_().GetSval() != "pg_catalog" {
		return false
	}
	return len(fc.Args) == 1 && fc.Args[0].GetAConst().GetSval() != nil && fc.AggFilter == nil && fc.Over == nil
}

func typed(name string, v any) sessionColumn {
	c := sessionColumn{name: name, value: v, oid: oidText}
	switch v.(type) {
	case int64:
		c.oid = oidInt4
	case bool:
		c.oid = oidBool
	}
	return c
}

func castText(v any) any {
	if v == nil {
		return nil
	}
	if b, ok := v.(bool); ok {
		return strconv.FormatBool(b)
	}
	return fmt.Sprint(v)
}

// sessionStatement is the prepared statement answering a session query.
func (s *Server) sessionStatement(cols []sessionColumn) wire.PreparedStatements {
	var wc wire.Columns
	row := make([]any, len(cols))
	for i, c := range cols {
		wc = append(wc, wire.Column{Name: c.name, Oid: c.oid, Width: -1})
		row[i] = c.value
		if c.value != nil && c.oid == oidText {
			row[i] = fmt.Sprint(c.value)
		}
		if f, ok := c.value.(float64); ok {
			row[i] = strconv.FormatFloat(f, 'f', -1, 64)
		}
	}
	return wire.Prepared(s.statement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
		if err := w.Row(row); err != nil {
			return err
		}
		return w.Complete("SELECT 1")
	}, wire.WithColumns(wc)))
}
