package server_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/internal/cli"
	"github.com/airlock-dev/airlock/internal/engine/duckdb"
)

// ownerCSV is an owner's own table: 40 customers, 2 segments.
func ownerCSV(t *testing.T) string {
	var b strings.Builder
	b.WriteString("customer_id,full_name,email,birth_date,city,segment,balance,active\n")
	for i := range 40 {
		fmt.Fprintf(&b, "C%03d,Person %d,p%d@example.org,19%02d-01-02,City %d,%s,%d.25,%v\n", i, i, i, 50+i%40, i%5, []string{"gold", "silver"}[i%2], 100+i, i%3 == 0)
	}
	p := filepath.Join(t.TempDir(), "customers.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInitWritesAWorkingWorkspace: airlock init around a CSV, a Parquet
// file and a PostgreSQL table writes a workspace that validates, whose
// policy tests pass, whose classes are suggested from the column names,
// and which a server then answers the printed example query on.
func TestInitWritesAWorkingWorkspace(t *testing.T) {
	csv := ownerCSV(t)
	parquet := filepath.Join(t.TempDir(), "customers.parquet")
	d, err := duckdb.Open(duckdb.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Exec(context.Background(), fmt.Sprintf("COPY (SELECT * FROM read_csv('%s', header = true)) TO '%s' (FORMAT parquet)", csv, parquet)); err != nil {
		t.Fatal(err)
	}
	d.Close()
	ctx := context.Background()
	schema := fmt.Sprintf("init_%d", time.Now().UnixNano())
	conn, err := pgx.Connect(ctx, pgDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), "CREATE TABLE "+schema+".customers (customer_id text, full_name text, email text, birth_date date, city text, segment text, balance numeric(12,2), active boolean)"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(csv)
	if _, err := conn.PgConn().CopyFrom(context.Background(), bytes.NewReader(b), "COPY "+schema+".customers FROM STDIN (FORMAT csv, HEADER true)"); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"csv": csv, "parquet": parquet, "postgres": pgDSN() + "#" + schema + ".customers"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ws")
			var out, errw bytes.Buffer
			if code := cli.Main([]string{"init", dir, "--data", data, "--owner", "acme", "--name", "customers"}, &out, &errw); code != 0 {
				t.Fatalf("init: exit %d\n%s%s", code, out.String(), errw.String())
			}
			if !strings.Contains(out.String(), "edit next") || !strings.Contains(out.String(), "airlock serve --workspace "+dir) {
				t.Fatalf("init does not say what to do next:\n%s", out.String())
			}
			manifest, _ := os.ReadFile(filepath.Join(dir, "datasets", "customers.yaml"))
			for _, want := range []string{`{name: "email", type: text, class: identifier}`, `{name: "birth_date", type: date, class: quasi_identifier}`,
				`class: sensitive}`, `{name: "segment", type: text, class: attribute}`, "privacy_unit: customer_id", "review"} {
				if !strings.Contains(string(manifest), want) {
					t.Errorf("manifest lacks %q:\n%s", want, manifest)
				}
			}
			out.Reset()
			if code := cli.Main([]string{"validate", dir}, &out, &errw); code != 0 || !strings.Contains(out.String(), "workspace version sha256:") {
				t.Fatalf("validate: %d %s %s", code, out.String(), errw.String())
			}
			if code := cli.Main([]string{"policy", "test", dir}, &out, &errw); code != 0 {
				t.Fatalf("policy test: %d %s %s", code, out.String(), errw.String())
			}
			h, err := startHarness(dir, "")
			if err != nil {
				t.Fatal(err)
			}
			defer h.stop()
			r := h.query(t, "analyst@partner", "research", "", "SELECT segment, count(*) FROM customers GROUP BY segment ORDER BY segment")
			if r.Status != 200 || len(r.Rows) != 2 || r.Rows[0][1] != 20.0 {
				t.Fatalf("the partner's aggregate: %d %s", r.Status, r.Body)
			}
			if r := h.query(t, "analyst@partner", "research", "", "SELECT email FROM customers"); r.Status == 200 {
				t.Fatalf("identifiers must not be released: %s", r.Body)
			}
		})
	}
}
