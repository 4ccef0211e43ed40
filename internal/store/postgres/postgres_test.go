package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/store/storetest"
)

// testDSN is the PostgreSQL the integration tests use. They fail, never
// skip, when it does not answer.
func testDSN() string {
	if d := os.Getenv("AIRLOCK_TEST_PG_DSN"); d != "" {
		return d
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

func TestConformance(t *testing.T) {
	prefix := fmt.Sprintf("storetest_%d", time.Now().UnixNano())
	var mu sync.Mutex
	storetest.Run(t, func(t *testing.T, name string) store.Store {
		mu.Lock()
		defer mu.Unlock()
		schema := prefix + "_" + name
		s, err := Open(context.Background(), testDSN(), schema)
		if err != nil {
			t.Fatalf("PostgreSQL at %s: %v (start it with scripts/ensure-postgres.sh)", testDSN(), err)
		}
		t.Cleanup(func() {
			s.Close()
			db, err := sql.Open("pgx", testDSN())
			if err == nil {
				db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE")
				db.Close()
			}
		})
		return s
	})
}
