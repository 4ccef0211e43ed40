package server_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/demo"
)

// ownPostgres is a PostgreSQL cluster the test creates in a temp dir and
// runs on a free loopback port, so an outage can be real (the server is
// stopped) without touching the machine's own cluster.
type ownPostgres struct {
	bin, dir string
	port     int
}

func startOwnPostgres(t *testing.T) *ownPostgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		t.Fatal("pg_ctl not found: run scripts/ensure-postgres.sh")
	}
	p := &ownPostgres{bin: filepath.Dir(bins[len(bins)-1]), dir: filepath.Join(os.TempDir(), fmt.Sprintf("airlock-pg-%d", time.Now().UnixNano()))}
	os.MkdirAll(p.dir, 0o700)
	exec.Command("chown", "postgres", p.dir).Run()
	t.Cleanup(func() { p.ctl("stop", "-m", "immediate"); os.RemoveAll(p.dir) })
	if out, err := p.asPostgres(filepath.Join(p.bin, "initdb"), "-D", p.dir+"/data", "-A", "trust", "-U", "postgres").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	p.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	p.start(t)
	return p
}

func (p *ownPostgres) asPostgres(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func (p *ownPostgres) ctl(args ...string) ([]byte, error) {
	return p.asPostgres(filepath.Join(p.bin, "pg_ctl"), append([]string{"-D", p.dir + "/data", "-w"}, args...)...).CombinedOutput()
}

func (p *ownPostgres) start(t *testing.T) {
	t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", p.port, p.dir)
	if out, err := p.ctl("-o", opts, "-l", p.dir+"/log", "start"); err != nil {
		t.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
}

func (p *ownPostgres) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

// TestStressStoreOutageTwoReplicas (make stress): two replicas on a state
// store whose PostgreSQL is stopped outright and started again. Both answer
// 503 naming the store while it is down (never 401), /readyz fails on both,
// and both recover without a restart.
func TestStressStoreOutageTwoReplicas(t *testing.T) {
	if os.Getenv("AIRLOCK_STRESS") == "" {
		t.Skip("stress test: make stress")
	}
	pg := startOwnPostgres(t)
	dir := t.TempDir()
	if err := demo.Init(dir); err != nil {
		t.Fatal(err)
	}
	a, err := startHarnessSchema(dir, pg.dsn(), "outage", true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.stop()
	b, err := startHarnessSchema(dir, pg.dsn(), "outage", false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.stop()
	b.tokens = a.tokens
	const q = "SELECT country, count(*) FROM transactions GROUP BY country"
	ready := func(h *harness) int {
		resp, err := http.Get(h.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, h := range []*harness{a, b} {
		if r := h.query(t, "fraud@partnerbank", "fraud_detection", "", q); r.Status != 200 {
			t.Fatalf("before the outage: %d %s", r.Status, r.Body)
		}
	}
	if out, err := pg.ctl("stop", "-m", "immediate"); err != nil {
		t.Fatalf("pg_ctl stop: %v %s", err, out)
	}
	for i := range 100 {
		for _, h := range []*harness{a, b} {
			if r := h.query(t, "fraud@partnerbank", "fraud_detection", "", q); r.Status != 503 || r.Error.Rule != "store.unavailable" {
				t.Fatalf("request %d during the outage: %d %s", i, r.Status, r.Body)
			}
		}
	}
	if ready(a) != 503 || ready(b) != 503 {
		t.Fatal("/readyz passes while the store is down")
	}
	pg.start(t)
	deadline := time.Now().Add(20 * time.Second)
	for _, h := range []*harness{a, b} {
		for ready(h) != 200 {
			if time.Now().After(deadline) {
				t.Fatal("a replica did not recover within 20 s of the store's return")
			}
			time.Sleep(200 * time.Millisecond)
		}
		if r := h.query(t, "fraud@partnerbank", "fraud_detection", "", q); r.Status != 200 {
			t.Fatalf("after the outage: %d %s", r.Status, r.Body)
		}
	}
}
