package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// reply is one answer as a client of some channel sees it.
type reply struct {
	// Status is the HTTP status; over the wire, 200 or the SQLSTATE.
	Status   int
	SQLState string
	Rule     string
	Message  string
	Columns  []string
	// Rows hold JSON-like values on every channel: numbers as float64,
	// dates and times as text.
	Rows [][]any
	// Raw is everything the client received, for leak checks.
	Raw []byte
	// Wire only: the command tag and the notices the session received.
	Tag     string
	Notices []string
}

// channel is a way to ask the server a question: the attack suites run
// over each, so a rule enforced on one channel only is a failing test.
type channel struct {
	name string
	ask  func(t *testing.T, h *harness, principal, purpose, agreement, sql string) reply
}

var channels = []channel{
	{"http", askHTTP},
	{"wire", askWire},
}

func askHTTP(t *testing.T, h *harness, principal, purpose, agreement, sql string) reply {
	t.Helper()
	r := h.query(t, principal, purpose, agreement, sql)
	return reply{Status: r.Status, Rule: r.Error.Rule, Message: r.Error.Message, Columns: r.Columns, Rows: r.Rows, Raw: r.Body}
}

var ruleSuffix = regexp.MustCompile(`\(rule ([^)]+)\)$`)

func askWire(t *testing.T, h *harness, principal, purpose, agreement, sql string) reply {
	t.Helper()
	conn := h.pgConnString(principal, "")
	opts := ""
	if purpose != "" {
		opts += " -c airlock.purpose=" + purpose
	}
	if agreement != "" {
		opts += " -c airlock.agreement=" + agreement
	}
	if opts != "" {
		conn += fmt.Sprintf(" options='%s'", opts[1:])
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, notices := dialWire(t, ctx, conn)
	defer c.Close(ctx)
	out := reply{Status: 200}
	rows, err := c.Query(ctx, sql)
	if err == nil {
		for _, f := range rows.FieldDescriptions() {
			out.Columns = append(out.Columns, f.Name)
		}
		for rows.Next() {
			vals, _ := rows.Values()
			for i, v := range vals {
				vals[i] = jsonLike(v)
			}
			out.Rows = append(out.Rows, vals)
		}
		rows.Close()
		err = rows.Err()
		out.Tag = rows.CommandTag().String()
	}
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe):
		return wireRefusal(pe, *notices)
	case err != nil:
		t.Fatalf("wire: %v", err)
	}
	out.Raw, _ = json.Marshal(out.Rows)
	out.Notices = *notices
	return out
}

// dialWire connects to the wire endpoint, collecting the notices it sends.
func dialWire(t *testing.T, ctx context.Context, conn string) (*pgx.Conn, *[]string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(conn)
	if err != nil {
		t.Fatal(err)
	}
	notices := &[]string{}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { *notices = append(*notices, n.Message) }
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("wire connect: %v", err)
	}
	return c, notices
}

// wireRefusal is a refusal over the wire as a reply, its rule split off
// the message's "(rule ...)" suffix; Raw holds everything it said.
func wireRefusal(pe *pgconn.PgError, notices []string) reply {
	r := reply{SQLState: pe.Code, Message: pe.Message, Notices: notices, Raw: []byte(pe.Message + "\n" + pe.Detail + "\n" + pe.Hint)}
	if m := ruleSuffix.FindStringSubmatch(pe.Message); m != nil {
		r.Rule, r.Message = m[1], pe.Message[:len(pe.Message)-len(m[0])-1]
	}
	return r
}

// jsonLike is a wire value as the HTTP channel's JSON shows it.
func jsonLike(v any) any {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case int32:
		return float64(x)
	case float32:
		return float64(x)
	case time.Time:
		if x.Equal(x.Truncate(24 * time.Hour)) {
			return x.Format("2006-01-02")
		}
		return x.Format(time.RFC3339Nano)
	}
	return v
}

// sqlStateOf is the SQLSTATE the wire endpoint sends for an HTTP status
// (refusal.Code.SQLState composed with the status mapping).
var sqlStateOf = map[int]string{400: "42601", 401: "28P01", 403: "42501", 404: "42P01", 413: "54000", 422: "42501", 429: "53000", 500: "XX000", 503: "57P03"}

// statusMatches reports whether a reply has the expected outcome on its
// channel.
func statusMatches(r reply, want int) bool {
	if r.SQLState != "" || r.Status == 0 {
		return want != 200 && sqlStateOf[want] == r.SQLState
	}
	return r.Status == want
}

// copyChannel asks over the wire as COPY (SELECT ...) TO STDOUT (psql's
// \copy): the same governed answer, released as COPY data. The oracle
// probes run over it too; the attack suite's column checks do not apply.
var copyChannel = channel{"wire-copy", askCopy}

func askCopy(t *testing.T, h *harness, principal, purpose, agreement, sql string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, notices := dialWire(t, ctx, h.pgConnString(principal, purpose))
	defer c.Close(ctx)
	var out bytes.Buffer
	tag, err := c.PgConn().CopyTo(ctx, &out, "COPY ("+sql+") TO STDOUT")
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return wireRefusal(pe, *notices)
	} else if err != nil {
		t.Fatalf("wire copy: %v", err)
	}
	r := reply{Status: 200, Tag: tag.String(), Notices: *notices, Raw: out.Bytes()}
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if line == "" {
			continue
		}
		var row []any
		for _, f := range strings.Split(line, "\t") {
			row = append(row, f)
		}
		r.Rows = append(r.Rows, row)
	}
	return r
}
