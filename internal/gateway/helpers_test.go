package gateway

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
	ctx := context.Background()
	schema := fmt.Sprintf("bounds_%d", time.Now().UnixNano())
	conn, err := pgx.Connect(ctx, pgTestDSN())
	if err != nil {
		t.Fatalf("PostgreSQL at %s: %v", pgTestDSN(), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE SCHEMA %s; CREATE TABLE %s.t (u text, g text, v numeric(18,2))", schema, schema)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), pgTestDSN()); err == nil {
			c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(strings.Join(rows, "\n")+"\n"), "COPY "+schema+".t FROM STDIN (FORMAT csv)"); err != nil {
		t.Fatal(err)
	}
	e, err := pgengine.Open(ctx, pgTestDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return boundsEngine{e, query.Postgres, schema + `."t"`}
}
