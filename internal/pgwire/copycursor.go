package pgwire

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"

	wire "github.com/jeroenrinzema/psql-wire"
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/sqlop"
)

// COPY (SELECT …) TO STDOUT (psql's \copy) and server-side cursors
// (DECLARE … CURSOR, FETCH, CLOSE: psycopg2's named cursors, pandas and
// SQLAlchemy streaming) both run their SELECT through the governed
// pipeline, once, and only then hand the released rows out: as COPY data,
// or in the pieces FETCH asks for.

// innerSelect deparses a statement's inner SELECT back to SQL text.
func innerSelect(n *pg.Node) (string, error) {
	if n.GetSelectStmt() == nil {
		return "", fmt.Errorf("not a SELECT")
	}
	return pg.Deparse(&pg.ParseResult{Version: pgVersion, Stmts: []*pg.RawStmt{{Stmt: n}}})
}

// pgVersion is the parse tree version Deparse expects (the parser's own).
var pgVersion = func() int32 {
	t, _ := pg.Parse("SELECT 1")
	return t.GetVersion()
}()

// governedAnswer runs one SELECT through the kernel, with the types of
// its columns.
func (s *Server) governedAnswer(ctx context.Context, id share.Identity, sql string) (*sqlop.Response, []string, error) {
	d, err := s.Kernel.Do(ctx, request(ctx, id, share.Describe, s.SQL.Query(sql, nil)))
	if err != nil {
		return nil, nil, err
	}
	types := sqlop.Answer(d).Plan.Types
	res, err := s.Kernel.Do(ctx, request(ctx, id, share.Run, s.SQL.Query(sql, []any{})))
	if err != nil {
		return nil, nil, err
	}
	return sqlop.Answer(res), types, nil
}

// copyOut answers COPY (SELECT …) TO STDOUT [WITH (FORMAT text|csv, HEADER)].
func (s *Server) copyOut(ctx context.Context, id share.Identity, text string, cp *pg.CopyStmt) (wire.PreparedStatements, error) {
	edge := request(ctx, id, share.Run, govern.Edge(share.OpQuery))
	if cp.Query == nil || cp.IsFrom || cp.IsProgram || cp.Filename != "" {
		return nil, pgError(s.Kernel.Refuse(ctx, edge, refusal.New(refusal.BadSQL, "sql.copy", "only COPY (SELECT ...) TO STDOUT is accepted")))
	}
	csv, header := false, false
	for _, o := range cp.Options {
		d := o.GetDefElem()
		v := strings.ToLower(defElemString(d))
		switch strings.ToLower(d.Defname) {
		case "format":
			if v != "text" && v != "csv" {
				return nil, pgError(s.Kernel.Refuse(ctx, edge, refusal.New(refusal.BadSQL, "sql.copy", "COPY format %s is not supported (text or csv)", v)))
			}
			csv = v == "csv"
		case "header":
			header = v == "" || v == "true" || v == "on" || v == "1"
		default:
			return nil, pgError(s.Kernel.Refuse(ctx, edge, refusal.New(refusal.BadSQL, "sql.copy", "COPY option %s is not supported", d.Defname)))
		}
	}
	sql, err := innerSelect(cp.Query)
	if err != nil {
		return nil, pgError(s.Kernel.Refuse(ctx, edge, refusal.New(refusal.BadSQL, "sql.invalid", "the query could not be read")))
	}
	resp, types, err := s.governedAnswer(ctx, id, sql)
	if err != nil {
		return nil, pgError(err)
	}
	return wire.Prepared(wire.NewStatement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
		c := s.raw(ctx)
		if c == nil {
			return pgError(refusal.New(refusal.Internal, "internal", "internal error; see the server log"))
		}
		for _, n := range answerNotes(resp) {
			s.notice(ctx, n)
		}
		// CopyOutResponse: text format, every column text.
		h := []byte{0, 0, 0}
		binary.BigEndian.PutUint16(h[1:], uint16(len(resp.Columns)))
		for range resp.Columns {
			h = append(h, 0, 0)
		}
		if err := c.writeMessage('H', h); err != nil {
			return err
		}
		line := func(fields []string) error { return c.writeMessage('d', []byte(joinCopy(fields, csv)+"\n")) }
		if header {
			if err := line(resp.Columns); err != nil {
				return err
			}
		}
		for _, row := range resp.Rows {
			fields := make([]string, len(row))
			for i, v := range row {
				fields[i] = copyText(encode(v, types, i), csv)
			}
			if err := line(fields); err != nil {
				return err
			}
		}
		if err := c.writeMessage('c', nil); err != nil {
			return err
		}
		return w.Complete(fmt.Sprintf("COPY %d", len(resp.Rows)))
	})), nil
}

func defElemString(d *pg.DefElem) string {
	if d.Arg == nil {
		return ""
	}
	if s := d.Arg.GetString_(); s != nil {
		return s.Sval
	}
	if b := d.Arg.GetBoolean(); b != nil {
		return strconv.FormatBool(b.Boolval)
	}
	if i := d.Arg.GetInteger(); i != nil {
		return strconv.Itoa(int(i.Ival))
	}
	return ""
}

// nullField marks NULL in copyText's output for joinCopy.
const nullField = "\x00null"

// copyText is a value in COPY's text form (PostgreSQL's output functions).
func copyText(v any, csv bool) string {
	switch x := v.(type) {
	case nil:
		return nullField
	case bool:
		if x {
			return "t"
		}
		return "f"
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nullField
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case *big.Int:
		return x.String()
	case time.Time:
		if x.Equal(x.Truncate(24 * time.Hour)) {
			return x.Format("2006-01-02")
		}
		return x.Format("2006-01-02 15:04:05.999999")
	}
	return fmt.Sprint(v)
}

// joinCopy joins fields as COPY text (tab-separated, \N for NULL,
// backslash escapes) or CSV (comma-separated, quoted where needed, NULL
// empty).
func joinCopy(fields []string, csv bool) string {
	out := make([]string, len(fields))
	for i, f := range fields {
		switch {
		case f == nullField && csv:
			out[i] = ""
		case f == nullField:
			out[i] = `\N`
		case csv:
			if strings.ContainsAny(f, ",\"\n\r") || f == "" {
				f = `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
			}
			out[i] = f
		default:
			out[i] = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(f)
		}
	}
	sep := "\t"
	if csv {
		sep = ","
	}
	return strings.Join(out, sep)
}

// cursor is a DECLAREd cursor's released rows and where FETCH is.
type cursor struct {
	cols  wire.Columns
	types []string
	rows  [][]any
	pos   int
}

// cursors are the open cursors, per connection and name.
type cursors struct{ m sync.Map } // remote address + "\x00" + name → *cursor

func cursorKey(ctx context.Context, name string) string {
	addr := ""
	if a := wire.RemoteAddress(ctx); a != nil {
		addr = a.String()
	}
	return addr + "\x00" + name
}

// closeAll forgets a connection's cursors.
func (cs *cursors) closeAll(ctx context.Context) {
	prefix := cursorKey(ctx, "")
	cs.m.Range(func(k, _ any) bool {
		if strings.HasPrefix(k.(string), prefix) {
			cs.m.Delete(k)
		}
		return true
	})
}

// cursorCommand handles DECLARE, FETCH and CLOSE.
func (s *Server) cursorCommand(ctx context.Context, id share.Identity, text string, stmt *pg.Node) (wire.PreparedStatements, bool, error) {
	complete := func(tag string) wire.PreparedStatements {
		return wire.Prepared(wire.NewStatement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error { return w.Complete(tag) }))
	}
	switch {
	case stmt.GetDeclareCursorStmt() != nil:
		d := stmt.GetDeclareCursorStmt()
		sql, err := innerSelect(d.Query)
		if err != nil {
			return nil, true, pgError(refusal.New(refusal.BadSQL, "sql.invalid", "the query could not be read"))
		}
		resp, types, err := s.governedAnswer(ctx, id, sql)
		if err != nil {
			return nil, true, pgError(err)
		}
		for _, n := range answerNotes(resp) {
			s.notice(ctx, n)
		}
		c := &cursor{types: types, rows: resp.Rows}
		for i, name := range resp.Columns {
			t := "text"
			if i < len(types) {
				t = types[i]
			}
			c.cols = append(c.cols, wire.Column{Name: name, Oid: typeOID[t], Width: -1})
		}
		s.cursors.m.Store(cursorKey(ctx, d.Portalname), c)
		return complete("DECLARE CURSOR"), true, nil
	case stmt.GetFetchStmt() != nil:
		f := stmt.GetFetchStmt()
		if _, err := s.Kernel.Do(ctx, request(ctx, id, share.Run, sessionOp(text))); err != nil {
			return nil, true, pgError(err)
		}
		v, ok := s.cursors.m.Load(cursorKey(ctx, f.Portalname))
		if !ok {
			e := pgerrorCode(fmt.Sprintf("cursor %q does not exist", f.Portalname), "34000")
			return nil, true, e
		}
		c := v.(*cursor)
		n := int(f.HowMany)
		if f.HowMany <= 0 || f.HowMany > int64(len(c.rows)) {
			n = len(c.rows)
		}
		if f.Direction != pg.FetchDirection_FETCH_FORWARD {
			return nil, true, pgError(refusal.New(refusal.BadSQL, "sql.cursor", "cursors fetch forward only"))
		}
		move := f.Ismove
		return wire.Prepared(wire.NewStatement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
			end := min(c.pos+n, len(c.rows))
			batch := c.rows[c.pos:end]
			c.pos = end
			if move {
				return w.Complete(fmt.Sprintf("MOVE %d", len(batch)))
			}
			for _, row := range batch {
				out := make([]any, len(row))
				for i, v := range row {
					out[i] = encode(v, c.types, i)
				}
				if err := w.Row(out); err != nil {
					return err
				}
			}
			return w.Complete(fmt.Sprintf("FETCH %d", len(batch)))
		}, wire.WithColumns(c.cols))), true, nil
	case stmt.GetClosePortalStmt() != nil:
		if _, err := s.Kernel.Do(ctx, request(ctx, id, share.Run, sessionOp(text))); err != nil {
			return nil, true, pgError(err)
		}
		name := stmt.GetClosePortalStmt().Portalname
		if name == "" {
			s.cursors.closeAll(ctx)
		} else {
			s.cursors.m.Delete(cursorKey(ctx, name))
		}
		return complete("CLOSE CURSOR"), true, nil
	}
	return nil, false, nil
}
