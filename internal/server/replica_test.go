package server_test

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/airlock-dev/airlock/internal/cli"
	"github.com/airlock-dev/airlock/internal/dp"
)

func pgDSN() string {
	if d := os.Getenv("AIRLOCK_TEST_PG_DSN"); d != "" {
		return d
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// TestTwoReplicasShareBudgetAndAuditLog runs two nodes on one PostgreSQL
// state store: 200 concurrent DP queries split across them race for a
// budget that fits exactly 7, and the merged audit log verifies as one
// linear history.
func TestTwoReplicasShareBudgetAndAuditLog(t *testing.T) {
	schema := fmt.Sprintf("replicas_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		if db, err := sql.Open("pgx", pgDSN()); err == nil {
			db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE")
			db.Close()
		}
	})
	perQuery := dp.RhoForEpsDelta(1.0, 1e-6)
	budget := dp.EpsilonForRho(7.5*perQuery, 1e-3/2)
	// One workspace (files, node key) for both replicas, as behind a load balancer.
	a := dpHarness(t, budget, "")
	a.stop() // restart it on PostgreSQL
	ha, err := startHarnessSchema(a.dir, pgDSN(), schema, true)
	if err != nil {
		t.Fatalf("replica A on PostgreSQL at %s: %v", pgDSN(), err)
	}
	defer ha.stop()
	hb, err := startHarnessSchema(a.dir, pgDSN(), schema, false)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.stop()
	hb.tokens = ha.tokens
	var ok, exhausted atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			h := ha
			if i%2 == 1 {
				h = hb
			}
			r := dpQuery(t, h, fmt.Sprintf("SELECT count(*) FROM visits WHERE hospital <> 'r%d'", i))
			switch {
			case r.Status == 200:
				ok.Add(1)
			case r.Status == 429:
				exhausted.Add(1)
			default:
				t.Errorf("%d %s", r.Status, r.Body)
			}
		}(i)
	}
	wg.Wait()
	if ok.Load() != 7 || exhausted.Load() != 193 {
		t.Fatalf("%d answered, %d refused across two replicas; want exactly 7 and 193", ok.Load(), exhausted.Load())
	}
	// Both replicas serve the same verifiable history.
	since := filepath.Join(t.TempDir(), "cp")
	for _, h := range []*harness{ha, hb, ha} {
		var out, errw bytes.Buffer
		code := cli.Main([]string{"audit", "verify", "--server", h.url, "--token", ha.tokens["auditor@regulator"], "--since", since, "--pubkey", ha.node.Verifier}, &out, &errw)
		if code != 0 {
			t.Fatalf("audit verify against %s: %s %s", h.url, out.String(), errw.String())
		}
	}
	size, _ := ha.node.Store.Size(t.Context())
	if size < 200 {
		t.Fatalf("merged log has %d entries, want >= 200", size)
	}
}
