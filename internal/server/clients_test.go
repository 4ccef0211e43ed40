package server_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
)

// clientLines runs a client program and returns its "key value" lines.
func clientLines(t *testing.T, name string, args ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, " ")
		lines[k] = v
	}
	return lines
}

// TestJDBCAsBIToolsUseIt: pgJDBC (what DBeaver, Metabase and Tableau use)
// lists exactly the principal's datasets and columns with their types,
// binds string, timestamp, date and boolean parameters, and receives a
// refusal as an SQLException with the SQLSTATE and the rule.
func TestJDBCAsBIToolsUseIt(t *testing.T) {
	h := shared
	got := clientLines(t, "java", "-cp", "/usr/share/java/postgresql.jar", "testdata/clients/JdbcClient.java",
		strconv.Itoa(h.pgAddr.Port), "fraud@partnerbank", h.tokens["fraud@partnerbank"], "internal@stmary", h.tokens["internal@stmary"])
	want := map[string]string{
		"typeinfo":     "true",
		"typed-params": "5 true",
		"schemas":      "information_schema,pg_catalog,public",
		"product":      "PostgreSQL 15",
		"catalogs":     "airlock",
		"tables":       "transactions",
		"columns":      "account_id:varchar merchant:varchar mcc:varchar country:varchar day:date amount:numeric is_fraud:bool",
		"pks":          "",
		"imported":     "",
		"select1":      "1",
		"date-param":   "true",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if n, _ := strconv.Atoi(got["prepared"]); n == 0 {
		t.Errorf("the prepared statement returned %q rows", got["prepared"])
	}
	if !strings.HasPrefix(got["refusal"], "42501 ") || !strings.Contains(got["refusal"], "rule aggregation.") {
		t.Errorf("refusal %q: want SQLSTATE 42501 and the rule", got["refusal"])
	}
}

// TestSQLAlchemyAndPandas: SQLAlchemy connects and inspects, pandas reads
// an aggregate, psycopg2 binds parameters.
func TestSQLAlchemyAndPandas(t *testing.T) {
	h := shared
	got := clientLines(t, "/usr/bin/python3", "testdata/clients/sqlalchemy_client.py",
		strconv.Itoa(h.pgAddr.Port), "fraud@partnerbank", h.tokens["fraud@partnerbank"])
	for k, v := range map[string]string{
		"version": "15.8", "tables": "transactions",
		"columns": "account_id:TEXT merchant:TEXT mcc:TEXT country:TEXT day:DATE amount:NUMERIC(18, 2) is_fraud:BOOLEAN",
	} {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if !strings.HasSuffix(got["pandas"], " country,n") || got["pandas"] == "0 country,n" {
		t.Errorf("pandas.read_sql: %q", got["pandas"])
	}
	if got["unnamed"] == "" || got["unnamed"] == "0" {
		t.Errorf("psycopg2: %q", got["unnamed"])
	}
	// A named (server-side) cursor and pandas reading in chunks: the same
	// rows as at once, fetched in pieces.
	n, _ := strconv.Atoi(strings.Fields(got["pandas"] + " 0")[0])
	if got["named"] != "2 "+strconv.Itoa(n) || !strings.HasSuffix(got["chunks"], " "+strconv.Itoa(n)) {
		t.Errorf("named cursor %q, chunks %q; want all %d rows", got["named"], got["chunks"], n)
	}
}

// TestGoDriversPingPrepareSimpleBatch: pgx and database/sql ping, prepare,
// run the simple protocol (which needs standard_conforming_strings
// announced) and send batches.
func TestGoDriversPingPrepareSimpleBatch(t *testing.T) {
	h := shared
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.pgConnString("fraud@partnerbank", "fraud_detection"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("pgx Ping: %v", err)
	}
	if v := conn.PgConn().ParameterStatus("server_version"); v != "15.8" {
		t.Errorf("server_version %q", v)
	}
	for _, p := range []string{"standard_conforming_strings", "DateStyle", "TimeZone", "integer_datetimes", "server_encoding", "client_encoding"} {
		if conn.PgConn().ParameterStatus(p) == "" {
			t.Errorf("handshake lacks %s", p)
		}
	}
	const q = "SELECT country, count(*) FROM transactions WHERE mcc <> $1 GROUP BY country ORDER BY country"
	var n int
	rows, err := conn.Query(ctx, q, pgx.QueryExecModeSimpleProtocol, "0000")
	if err != nil {
		t.Fatalf("simple protocol: %v", err)
	}
	for rows.Next() {
		n++
	}
	if rows.Err() != nil || n == 0 {
		t.Fatalf("simple protocol: %v, %d rows", rows.Err(), n)
	}
	b := &pgx.Batch{}
	b.Queue(q, "0000")
	b.Queue("SELECT 1")
	br := conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		t.Fatalf("batch 1: %v", err)
	}
	var one int
	if err := br.QueryRow().Scan(&one); err != nil || one != 1 {
		t.Fatalf("batch 2: %v %d", err, one)
	}
	br.Close()

	db, err := sql.Open("pgx", h.pgConnString("fraud@partnerbank", "fraud_detection"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("database/sql Ping: %v", err)
	}
	st, err := db.PrepareContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := st.QueryContext(ctx, "0000")
	if err != nil {
		t.Fatal(err)
	}
	n = 0
	for r.Next() {
		n++
	}
	r.Close()
	if n == 0 {
		t.Fatal("database/sql prepared query returned nothing")
	}
}

// TestPsqlSessionQueries: what psql and tools ask beside the data.
func TestPsqlSessionQueries(t *testing.T) {
	conn := shared.pgConnString("analyst@partner", "research")
	for q, want := range map[string]string{
		"SELECT 1":                  "1",
		"SELECT version()":          "PostgreSQL 15.8 (Airlock)",
		"SELECT current_schema()":   "public",
		"SELECT current_user":       "analyst@partner",
		"SELECT current_database()": "airlock",
		"SHOW server_version":       "15.8",
	} {
		out, errw := psql(t, conn, "-At", "-c", q)
		if strings.TrimSpace(out) != want {
			t.Errorf("%s: %q (%s), want %q", q, out, errw, want)
		}
	}
	// Schema-qualified names in the advertised schema.
	if out, errw := psql(t, conn, "-At", "-c", "SELECT region, count(*) FROM public.visits GROUP BY region"); strings.Count(out, "\n") < 3 {
		t.Errorf("public.visits: %q %s", out, errw)
	}
	for cmd, want := range map[string]string{
		`\dt`:       "public | visits | table",
		`\dt+`:      "public | visits | table",
		`\dn`:       "public",
		`\l`:        "airlock",
		`\conninfo`: `You are connected to database "airlock" as user "analyst@partner"`,
	} {
		if out, errw := psql(t, conn, "-c", cmd); !strings.Contains(out, want) {
			t.Errorf("%s: %q %s", cmd, out, errw)
		}
	}
	// \copy of a governed aggregate, as CSV with a header and as text; DP
	// notices go to stderr beside it.
	out, errw := psql(t, conn, "-c", `\copy (SELECT region, count(*) FROM visits GROUP BY region ORDER BY region) TO STDOUT WITH (FORMAT csv, HEADER)`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || lines[0] != "region,count" || !strings.HasPrefix(lines[1], "east,") || !strings.Contains(errw, "NOTICE:  differential privacy") {
		t.Errorf("\\copy: %q %q", out, errw)
	}
	if out, _ := psql(t, conn, "-c", `\copy (SELECT region, count(*) FROM visits GROUP BY region ORDER BY region) TO STDOUT`); !strings.HasPrefix(out, "east\t") {
		t.Errorf("\\copy text: %q", out)
	}
	if _, errw := psql(t, conn, "-c", `COPY visits TO STDOUT`); !strings.Contains(errw, "rule sql.copy") {
		t.Errorf("COPY of a table must be refused: %q", errw)
	}
}

// TestWireNotices: a DP answer tells a wire client what it cost and how
// noisy it is, as NoticeResponses beside a plain result set.
func TestWireNotices(t *testing.T) {
	ctx := context.Background()
	cfg, _ := pgx.ParseConfig(shared.pgConnString("analyst@partner", "research"))
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT region, count(*) FROM visits WHERE diagnosis <> 'x' GROUP BY region")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if rows.Err() != nil || n == 0 || len(rows.FieldDescriptions()) != 2 {
		t.Fatalf("rows %d, %v", n, rows.Err())
	}
	all := strings.Join(notices, "\n")
	for _, want := range []string{"differential privacy: this answer spent ε=1", "ε left", "count: discrete Gaussian, σ=", "95% interval ±", "bounding"} {
		if !strings.Contains(all, want) {
			t.Errorf("notices lack %q:\n%s", want, all)
		}
	}
}

// TestCatalogReadsAuditedOncePerKind: a tool's catalog chatter is audited
// once per kind of read per session, and the repeats are summed up when
// the session ends, so an auditor sees who listed what.
func TestCatalogReadsAuditedOncePerKind(t *testing.T) {
	h := newHarness(t, nil)
	conn := h.pgConnString("analyst@partner", "research")
	count := func(from uint64) (reads, repeats int, msgs []string) {
		for _, e := range auditedSince(t, h, from) {
			switch e.Event {
			case "AL1101I":
				reads++
			case "AL1102I":
				repeats++
				msgs = append(msgs, e.Message)
			}
		}
		return
	}
	ctx := context.Background()
	before, _ := h.node.Store.Size(ctx)
	psql(t, conn, "-c", `\d visits`)
	once, _, _ := count(before)
	if once == 0 {
		t.Fatal(`\d visits made no catalog reads`)
	}
	before, _ = h.node.Store.Size(ctx)
	psql(t, conn, "-c", `\d visits`, "-c", `\d visits`, "-c", `\d visits`)
	deadline := time.Now().Add(5 * time.Second)
	var reads, repeats int
	var msgs []string
	for time.Now().Before(deadline) {
		if reads, repeats, msgs = count(before); repeats >= once {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if reads != once || repeats != once {
		t.Fatalf("three \\d in one session: %d reads and %d summaries, want %d and %d", reads, repeats, once, once)
	}
	for _, m := range msgs {
		if m != "2 more catalog read(s) of this statement in the session" {
			t.Fatalf("summary %q", m)
		}
	}
}

// TestCursorsAreTheSessions: a cursor is its session's own, FETCH ALL and
// FETCH 0 follow PostgreSQL, and a statement that is only prepared (Parse
// without Execute) runs and audits nothing.
func TestCursorsAreTheSessions(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	open := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, h.pgConnString("fraud@partnerbank", "fraud_detection"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		return c
	}
	a, b := open(), open()
	if _, err := a.Exec(ctx, "DECLARE c CURSOR FOR SELECT country, count(*) FROM transactions GROUP BY country ORDER BY country"); err != nil {
		t.Fatal(err)
	}
	var pe *pgconn.PgError
	if _, err := b.Exec(ctx, "FETCH 5 FROM c"); !errors.As(err, &pe) || pe.Code != "34000" {
		t.Fatalf("another session fetched the cursor: %v", err)
	}
	count := func(c *pgx.Conn, sql string) int {
		rows, err := c.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		return n
	}
	first, zero, rest := count(a, "FETCH 2 FROM c"), count(a, "FETCH 0 FROM c"), count(a, "FETCH ALL FROM c")
	if first != 2 || zero != 0 || rest == 0 || count(a, "FETCH ALL FROM c") != 0 {
		t.Fatalf("FETCH 2, 0, ALL, ALL: %d %d %d", first, zero, rest)
	}
	before, _ := h.node.Store.Size(ctx)
	for i, sql := range []string{"DECLARE p CURSOR FOR SELECT country, count(*) FROM transactions GROUP BY country",
		"COPY (SELECT country, count(*) FROM transactions GROUP BY country) TO STDOUT"} {
		if _, err := b.PgConn().Prepare(ctx, fmt.Sprintf("only%d", i), sql, nil); err != nil {
			t.Fatalf("prepare %s: %v", sql, err)
		}
	}
	for _, e := range auditedSince(t, h, before) {
		if e.Event == "AL1000I" {
			t.Fatalf("a statement that was only prepared ran: %+v", e)
		}
	}
}
