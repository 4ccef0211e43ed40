package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/server"
)

func (h *harness) pgConnString(principal, purpose string) string {
	s := fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=airlock sslmode=disable", h.pgAddr.IP, h.pgAddr.Port, principal, h.tokens[principal])
	if purpose != "" {
		s += " options='-c airlock.purpose=" + purpose + "'"
	}
	return s
}

func psql(t *testing.T, conn string, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command("psql", append([]string{conn, "-X", "-v", "ON_ERROR_STOP=0"}, args...)...)
	var out, errw strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errw
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("psql: %v (install the PostgreSQL client: scripts/ensure-postgres.sh)", err)
		}
	}
	return out.String(), errw.String()
}

func TestPsqlAgainstTheWireEndpoint(t *testing.T) {
	h := shared
	conn := h.pgConnString("analyst@partner", "research")
	out, errw := psql(t, conn, "-c", "SELECT region, count(*) AS visits FROM visits GROUP BY region ORDER BY region")
	if !strings.Contains(out, "north") || !strings.Contains(out, "(4 rows)") {
		t.Fatalf("governed query over psql: %s %s", out, errw)
	}
	_, errw = psql(t, conn, "-c", "SELECT name, ssn FROM visits")
	if !strings.Contains(errw, "ERROR") || !strings.Contains(errw, "rule aggregation.required") {
		t.Fatalf("refusal over psql: %q", errw)
	}
	out, _ = psql(t, conn, "-c", `\dt`)
	if !strings.Contains(out, "visits") || strings.Contains(out, "transactions") {
		t.Fatalf(`\dt must list only what the agreement exposes: %s`, out)
	}
	out, _ = psql(t, conn, "-c", `\d visits`)
	if !strings.Contains(out, "diagnosis") || strings.Contains(out, "ssn") || strings.Contains(out, " name ") {
		t.Fatalf(`\d visits shows hidden columns: %s`, out)
	}
	out, _ = psql(t, conn, "-At", "-c", "SELECT table_name FROM information_schema.tables")
	if strings.TrimSpace(out) != "visits" {
		t.Fatalf("information_schema.tables: %q", out)
	}
	// A wrong token never connects.
	bad := strings.Replace(conn, h.tokens["analyst@partner"], h.tokens["fraud@partnerbank"], 1)
	if _, errw := psql(t, bad, "-c", "SELECT 1"); !strings.Contains(errw, "password") {
		t.Fatalf("another principal's token was accepted: %q", errw)
	}
}

func TestPgxPreparedStatementsAndErrors(t *testing.T) {
	h := shared
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(h.pgConnString("fraud@partnerbank", ""))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// No purpose yet: refused by the agreement with SQLSTATE 42501.
	_, err = conn.Exec(ctx, "SELECT country, count(*) FROM transactions GROUP BY country")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "agreement.purpose") {
		t.Fatalf("got %v, want 42501 naming agreement.purpose", err)
	}
	if _, err := conn.Exec(ctx, "SET airlock.purpose = 'fraud_detection'"); err != nil {
		t.Fatal(err)
	}
	// Extended protocol with parameters, typed results.
	rows, err := conn.Query(ctx, "SELECT country, count(*) AS n, sum(amount) FROM transactions WHERE is_fraud = $1 AND country <> $2 GROUP BY country ORDER BY n DESC LIMIT $3", false, "XX", 3)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for rows.Next() {
		var country string
		var n int64
		var sum float64
		if err := rows.Scan(&country, &n, &sum); err != nil {
			t.Fatal(err)
		}
		if n < 25 || sum <= 0 {
			t.Fatalf("row %s %d %v", country, n, sum)
		}
		got++
	}
	if rows.Err() != nil || got != 3 {
		t.Fatalf("%d rows, %v", got, rows.Err())
	}
	// A prepared statement reused with different parameters.
	if _, err := conn.Prepare(ctx, "by_mcc", "SELECT count(*) FROM transactions WHERE mcc = $1"); err != nil {
		t.Fatal(err)
	}
	for _, mcc := range []string{"5411", "5541"} {
		var n int64
		if err := conn.QueryRow(ctx, "by_mcc", mcc).Scan(&n); err != nil || n < 25 {
			t.Fatalf("mcc %s: %d %v", mcc, n, err)
		}
	}
	// Analysis-rule refusals keep their rule name.
	_, err = conn.Exec(ctx, "SELECT iban, count(*) FROM transactions GROUP BY iban")
	if !errors.As(err, &pe) || !strings.Contains(pe.Message, "aggregation.identifier") {
		t.Fatalf("got %v", err)
	}
}

func TestPsycopg2Script(t *testing.T) {
	h := shared
	script := fmt.Sprintf(`
import psycopg2, sys
conn = psycopg2.connect(host=%q, port=%d, user="analyst@partner", password=%q, dbname="airlock", sslmode="disable")
cur = conn.cursor()
cur.execute("SET airlock.purpose = 'research'")
cur.execute("SELECT sex, count(*) FROM visits WHERE hospital <> %%s GROUP BY sex ORDER BY sex", ("nowhere",))
rows = cur.fetchall()
assert [r[0] for r in rows] == ["F", "M"], rows
try:
    cur.execute("SELECT ssn FROM visits")
    sys.exit("refusal expected")
except psycopg2.Error as e:
    conn.rollback()
    assert e.pgcode == "42501", e.pgcode
    assert "aggregation.required" in str(e), str(e)
print("ok", rows)
`, h.pgAddr.IP.String(), h.pgAddr.Port, h.tokens["analyst@partner"])
	// Debian's python3-psycopg2 belongs to the system python3.
	python := "/usr/bin/python3"
	if _, err := exec.LookPath(python); err != nil {
		python = "python3"
	}
	out, err := exec.Command(python, "-c", script).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok") {
		t.Fatalf("psycopg2: %v\n%s", err, out)
	}
}

func TestWireEndpointOverTLS(t *testing.T) {
	dir := t.TempDir()
	if err := demo.Init(dir); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "airlock"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	h, err := startHarnessOpts(server.Options{Workspace: dir, PGTLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	cfg, err := pgx.ParseConfig(strings.Replace(h.pgConnString("fraud@partnerbank", "fraud_detection"), "sslmode=disable", "sslmode=require", 1))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("TLS connect: %v", err)
	}
	defer conn.Close(context.Background())
	if !conn.PgConn().Conn().(interface{ ConnectionState() tls.ConnectionState }).ConnectionState().HandshakeComplete {
		t.Fatal("connection is not TLS")
	}
	var n int64
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM transactions WHERE country = 'DE'").Scan(&n); err != nil || n < 25 {
		t.Fatalf("query over TLS: %d %v", n, err)
	}
}

// A Bind with more (or fewer) values than the statement has parameters
// used to panic inside the statement; the client saw the runtime error and
// nothing was audited. It is a refusal now, audited, and the session goes on.
func TestWireBindMismatchIsARefusal(t *testing.T) {
	h := shared
	ctx := context.Background()
	pc := preparedOnWire(t, h, "s1", "SELECT country, count(*) FROM transactions WHERE country = $1 GROUP BY country", nil)
	before := h.node.Audit.Tree().Size()
	for _, values := range [][][]byte{{[]byte("DE"), []byte("x"), []byte("y")}, {}} {
		res := pc.ExecPrepared(ctx, "s1", values, nil, nil).Read()
		var pe *pgconn.PgError
		if !errors.As(res.Err, &pe) || pe.Code != "42601" || !strings.Contains(pe.Message, "rule sql.parameter") || strings.Contains(pe.Message, "runtime") {
			t.Fatalf("%d values bound: got %v, want 42601 naming sql.parameter", len(values), res.Err)
		}
	}
	if got := h.node.Audit.Tree().Size() - before; got != 2 {
		t.Fatalf("%d audit entries for two refused binds, want 2", got)
	}
	res := pc.ExecPrepared(ctx, "s1", [][]byte{[]byte("DE")}, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 {
		t.Fatalf("the session after the refusals: %v %d rows", res.Err, len(res.Rows))
	}
}

// A float parameter NaN (or ±Inf) has no SQL literal; formatted it became
// the identifier nan, which a derived table could alias to an identifier
// column and read past every rule. It is refused.
func TestWireNonFiniteParameterIsRefused(t *testing.T) {
	ctx := context.Background()
	const sql = "SELECT t.is_fraud, count(*) FROM (SELECT iban AS nan, is_fraud, mcc FROM transactions) AS t WHERE left(CAST($1 AS text), 6) = 'DE0099' OR t.mcc = '5814' GROUP BY t.is_fraud"
	pc := preparedOnWire(t, shared, "nan", sql, []uint32{701})
	for _, v := range []string{"NaN", "Infinity", "-Infinity"} {
		res := pc.ExecPrepared(ctx, "nan", [][]byte{[]byte(v)}, nil, nil).Read()
		var pe *pgconn.PgError
		if !errors.As(res.Err, &pe) || !strings.Contains(pe.Message, "rule sql.parameter") {
			t.Fatalf("parameter %s: %v (%d rows), want a sql.parameter refusal", v, res.Err, len(res.Rows))
		}
	}
}

// preparedOnWire opens a wire session as fraud@partnerbank and prepares sql
// as name; the session closes with the test.
func preparedOnWire(t *testing.T, h *harness, name, sql string, oids []uint32) *pgconn.PgConn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.pgConnString("fraud@partnerbank", "fraud_detection"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	pc := conn.PgConn()
	if _, err := pc.Prepare(ctx, name, sql, oids); err != nil {
		t.Fatal(err)
	}
	return pc
}

// A NUL cannot hide in a bytea parameter either: what is audited must be
// what runs, and the engine's SQL would end at the NUL.
func TestWireBinaryParameterWithNULIsRefused(t *testing.T) {
	pc := preparedOnWire(t, shared, "nul", "SELECT country, count(*) FROM transactions WHERE country = $1 GROUP BY country", []uint32{17})
	res := pc.ExecPrepared(context.Background(), "nul", [][]byte{[]byte("\\x610062")}, nil, nil).Read()
	var pe *pgconn.PgError
	if !errors.As(res.Err, &pe) || !strings.Contains(pe.Message, "rule sql.nul") {
		t.Fatalf("got %v (%d rows), want a sql.nul refusal", res.Err, len(res.Rows))
	}
}
