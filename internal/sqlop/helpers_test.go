package sqlop

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/engine"
	pgengine "github.com/airlock-dev/airlock/internal/engine/postgres"
	"github.com/airlock-dev/airlock/internal/query"
)

func newTestSampler() *dp.Sampler {
	var key [32]byte
	key[0] = 42
	return dp.NewSampler(rand.NewChaCha8(key))
}

func engineResult(rows [][]any) *engine.Result { return &engine.Result{Rows: rows} }

func pgTestDSN() string {
	if d := os.Getenv("AIRLOCK_TEST_PG_DSN"); d != "" {
		return d
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// loadBoundsPG loads rows "u,g,v" into a fresh PostgreSQL schema.
func loadBoundsPG(t *testing.T, rows []string) boundsEngine {
	t.Helper()
	schema, conn := pgScratch(t, "CREATE TABLE %[1]s.t (u text, g text, v numeric(18,2))")
	ctx := context.Background()
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(strings.Join(rows, "\n")+"\n"), "COPY "+schema+".t FROM STDIN (FORMAT csv)"); err != nil {
		t.Fatal(err)
	}
	return boundsEngine{pgTestEngine(t), query.Postgres, schema + `."t"`}
}

// pgScratch creates a fresh schema in the test PostgreSQL, runs setup in
// it (%[1]s is the schema name) and drops it when the test ends. The
// connection it returns closes with the test.
func pgScratch(t *testing.T, setup string) (string, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	schema := fmt.Sprintf("scratch_%d", time.Now().UnixNano())
	conn, err := pgx.Connect(ctx, pgTestDSN())
	if err != nil {
		t.Fatalf("PostgreSQL at %s: %v", pgTestDSN(), err)
	}
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema+"; "+fmt.Sprintf(setup, schema)); err != nil {
		t.Fatal(err)
	}
	return schema, conn
}

// pgTestEngine is the PostgreSQL engine adapter on the test database.
func pgTestEngine(t *testing.T) *pgengine.DB {
	t.Helper()
	e, err := pgengine.Open(context.Background(), pgTestDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}
