package server_test

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/demo"
)

// storeProxy stands between a node and its PostgreSQL state store, so a
// test can cut the store off (an outage) and restore it, without touching
// the cluster itself.
type storeProxy struct {
	l       net.Listener
	target  string
	down    atomic.Bool
	dials   atomic.Int64 // connection attempts that reached the proxy while down
	mu      sync.Mutex
	conns   []net.Conn
	stopped chan struct{}
}

func newStoreProxy(t *testing.T, target string) *storeProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &storeProxy{l: l, target: target, stopped: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() { l.Close(); p.cut() })
	return p
}

func (p *storeProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			p.dials.Add(1)
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { io.Copy(s, c); s.Close() }()
		go func() { io.Copy(c, s); c.Close() }()
	}
}

// cut drops every connection and refuses new ones.
func (p *storeProxy) cut() {
	p.down.Store(true)
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

func (p *storeProxy) restore() { p.down.Store(false) }

// TestStoreOutage: while the state store is unreachable, valid tokens get
// 503 naming the store (never 401 "invalid credentials"), requests do not
// each open a store connection, /readyz fails and /healthz does not; when
// the store returns the node recovers without a restart.
func TestStoreOutage(t *testing.T) {
	u, _ := url.Parse(pgDSN())
	proxy := newStoreProxy(t, u.Host)
	u.Host = proxy.l.Addr().String()
	schema := storeSchema(t, "outage")
	dir := t.TempDir()
	if err := demo.Init(dir); err != nil {
		t.Fatal(err)
	}
	h, err := startHarnessSchema(dir, u.String(), schema, true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	const q = "SELECT country, count(*) FROM transactions GROUP BY country"
	if r := h.query(t, "fraud@partnerbank", "fraud_detection", "", q); r.Status != 200 {
		t.Fatalf("before the outage: %d %s", r.Status, r.Body)
	}
	get := func(path string) int {
		resp, err := http.Get(h.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if get("/readyz") != 200 {
		t.Fatal("not ready before the outage")
	}

	proxy.cut()
	for i := range 200 {
		r := h.query(t, "fraud@partnerbank", "fraud_detection", "", q)
		if r.Status != 503 || r.Error.Rule != "store.unavailable" || strings.Contains(string(r.Body), "credentials") {
			t.Fatalf("request %d during the outage: %d %s", i, r.Status, r.Body)
		}
	}
	if d := proxy.dials.Load(); d > 20 {
		t.Fatalf("200 requests during the outage made %d store connection attempts; the breaker should make a handful", d)
	}
	if get("/readyz") != 503 || get("/healthz") != 200 {
		t.Fatalf("during the outage: /readyz %d (want 503), /healthz %d (want 200)", get("/readyz"), get("/healthz"))
	}

	proxy.restore()
	deadline := time.Now().Add(15 * time.Second)
	for get("/readyz") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the node did not recover within 15 s of the store's return")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := h.query(t, "fraud@partnerbank", "fraud_detection", "", q); r.Status != 200 {
		t.Fatalf("after the outage: %d %s", r.Status, r.Body)
	}
}
