package postgres

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/engine/enginetest"
)

func testDSN() string {
	if d := os.Getenv("AIRLOCK_TEST_PG_DSN"); d != "" {
		return d
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// TestConformance runs the engine suite on a fixture table in a fresh
// schema of the test PostgreSQL.
func TestConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) enginetest.Target {
		ctx := context.Background()
		admin, err := pgx.Connect(ctx, testDSN())
		if err != nil {
			t.Fatalf("PostgreSQL at %s: %v", testDSN(), err)
		}
		schema := fmt.Sprintf("conformance_%d", time.Now().UnixNano())
		t.Cleanup(func() {
			admin.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			admin.Close(context.Background())
		})
		var cols []string
		for _, c := range enginetest.Columns {
			cols = append(cols, c[0]+" "+engine.SQLType("postgres", c[1]))
		}
		if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE SCHEMA %s; CREATE TABLE %s.fixture (%s)", schema, schema, strings.Join(cols, ", "))); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.PgConn().CopyFrom(ctx, strings.NewReader(enginetest.CSV), "COPY "+schema+".fixture FROM STDIN (FORMAT csv, HEADER true)"); err != nil {
			t.Fatal(err)
		}
		e, err := Open(ctx, testDSN())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return enginetest.Target{Engine: e, Table: schema + ".fixture"}
	})
}
