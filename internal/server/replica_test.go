package server_test

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/airlock-dev/airlock/internal/cli"
	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/dp"
)

// storeSchema names a fresh PostgreSQL schema for a test's state store and
// drops it when the test ends.
func storeSchema(t *testing.T, prefix string) string {
	schema := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	t.Cleanup(func() {
		if db, err := sql.Open("pgx", pgDSN()); err == nil {
			db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE")
			db.Close()
		}
	})
	return schema
}

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
	schema := storeSchema(t, "replicas")
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
	ok, exhausted := raceDP(t, []*harness{ha, hb}, 200)
	if ok != 7 || exhausted != 193 {
		t.Fatalf("%d answered, %d refused across two replicas; want exactly 7 and 193", ok, exhausted)
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

// A replica with its own node.key (or mask.key) on a shared state store
// would sign checkpoints the others' verifier rejects, or pseudonymize
// differently; it refuses to start, naming the file to copy.
func TestReplicaWithDifferentKeysRefusesToStart(t *testing.T) {
	schema := storeSchema(t, "keys")
	first, second := t.TempDir(), t.TempDir()
	for _, d := range []string{first, second} {
		if err := demo.Init(d); err != nil {
			t.Fatal(err)
		}
	}
	a, err := startHarnessSchema(first, pgDSN(), schema, true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.stop()
	if _, err := startHarnessSchema(second, pgDSN(), schema, false); err == nil || !strings.Contains(err.Error(), "node.key") {
		t.Fatalf("a replica with another node key started: %v", err)
	}
	// With the first node's keys it starts.
	for _, f := range []string{"node.key", "node.pub", "mask.key"} {
		b, _ := os.ReadFile(filepath.Join(first, ".airlock", f))
		os.WriteFile(filepath.Join(second, ".airlock", f), b, 0o600)
	}
	b, err := startHarnessSchema(second, pgDSN(), schema, false)
	if err != nil {
		t.Fatalf("a replica with the shared keys: %v", err)
	}
	b.stop()
}
