package pgwire

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
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
// its columns; statement is what the client sent (the COPY or DECLARE),
// which the audit entry records.
func (s *Server) governedAnswer(ctx context.Context, id share.Identity, sql, statement string) (*sqlop.Response, []string, error) {
	d, err := s.Kernel.Do(ctx, request(ctx, id, share.Describe, s.SQL.Statement(sql, nil, statement)))
	if err != nil {
		return nil, nil, err
	}
	types := sqlop.Answer(d).Plan.Types
	res, err := s.Kernel.Do(ctx, request(ctx, id, share.Run, s.SQL.Statement(sql, []any{}, statement)))
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
	// The query runs when the statement is executed, not when it is
	// prepared: a Parse alone reads and spends nothing.
	return wire.Prepared(s.statement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
		resp, types, err := s.governedAnswer(ctx, id, sql, text)
		if err != nil {
			return pgError(err)
		}
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

// maxCursors bounds the cursors one session holds open (each holds its
// released rows in memory until closed).
const maxCursors = 16

// cursorCommand handles DECLARE, FETCH and CLOSE. A session's cursors are
// its own (session state, not found by address). DECLARE runs its query
// when executed; FETCH finds the cursor when executed.
func (s *Server) cursorCommand(ctx context.Context, id share.Identity, text string, stmt *pg.Node) (wire.PreparedStatements, bool, error) {
	ss := sessionOf(ctx)
	if ss == nil {
		return nil, false, nil
	}
	complete := func(tag string) wire.PreparedStatements {
		return wire.Prepared(s.statement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error { return w.Complete(tag) }))
	}
	switch {
	case stmt.GetDeclareCursorStmt() != nil:
		d := stmt.GetDeclareCursorStmt()
		sql, err := innerSelect(d.Query)
		if err != nil {
			return nil, true, pgError(s.Kernel.Refuse(ctx, request(ctx, id, share.Run, govern.Edge(share.OpQuery)), refusal.New(refusal.BadSQL, "sql.invalid", "a cursor is declared for one SELECT")))
		}
		return wire.Prepared(s.statement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
			ss.mu.Lock()
			n := len(ss.cursors)
			ss.mu.Unlock()
			if n >= maxCursors {
				return pgError(s.Kernel.Refuse(ctx, request(ctx, id, share.Run, govern.Edge(share.OpQuery)), refusal.New(refusal.Limit, "limit.cursors", "a session holds at most %d open cursors; CLOSE one", maxCursors)))
			}
			resp, types, err := s.governedAnswer(ctx, id, sql, text)
			if err != nil {
				return pgError(err)
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
			ss.mu.Lock()
			ss.cursors[d.Portalname] = c
			ss.mu.Unlock()
			return w.Complete("DECLARE CURSOR")
		})), true, nil
	case stmt.GetFetchStmt() != nil:
		f := stmt.GetFetchStmt()
		if _, err := s.Kernel.Do(ctx, request(ctx, id, share.Run, sessionOp(text))); err != nil {
			return nil, true, pgError(err)
		}
		if f.Direction != pg.FetchDirection_FETCH_FORWARD || f.HowMany < 0 {
			return nil, true, pgError(refusal.New(refusal.BadSQL, "sql.cursor", "cursors fetch forward only"))
		}
		ss.mu.Lock()
		c, ok := ss.cursors[f.Portalname]
		ss.mu.Unlock()
		if !ok {
			return nil, true, pgerrorCode(fmt.Sprintf("cursor %q does not exist", f.Portalname), "34000")
		}
		name, howMany, move := f.Portalname, f.HowMany, f.Ismove
		return wire.Prepared(s.statement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
			ss.mu.Lock()
			cur, ok := ss.cursors[name]
			ss.mu.Unlock()
			if !ok {
				return pgerrorCode(fmt.Sprintf("cursor %q does not exist", name), "34000")
			}
			// FETCH 0 re-reads the current row; FETCH ALL is the maximum count.
			end := cur.pos
			if howMany > 0 {
				// FETCH ALL is the largest int64: count what is left instead.
				end = cur.pos + int(min(howMany, int64(len(cur.rows)-cur.pos)))
			}
			batch := cur.rows[cur.pos:end]
			cur.pos = end
			if move {
				return w.Complete(fmt.Sprintf("MOVE %d", len(batch)))
			}
			for _, row := range batch {
				out := make([]any, len(row))
				for i, v := range row {
					out[i] = encode(v, cur.types, i)
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
		ss.mu.Lock()
		if name == "" {
			ss.cursors = map[string]*cursor{}
		} else {
			delete(ss.cursors, name)
		}
		ss.mu.Unlock()
		return complete("CLOSE CURSOR"), true, nil
	}
	return nil, false, nil
}
