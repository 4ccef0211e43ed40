package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestListenersAreBounded attacks both listeners from outside: a flood of
// silent wire connections, a body trickled a byte at a time, connections
// past the limits. Each is answered or dropped in bounded time, and the
// memory the flood holds stays within MaxConnections × WireMessageBytes.
func TestListenersAreBounded(t *testing.T) {
	const maxConns = 8
	h := newHarness(t, func(dir string) {
		setLimits(dir, "max_connections: 8", "max_connections_per_client: 8", "handshake_timeout: 700ms", "http_read_timeout: 1s", "http_idle_timeout: 1s")
	})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	// Silent connections to the wire endpoint (300; 2,000 under make
	// stress): 8 are held, the rest are told FATAL 53300 at once.
	flood := 300
	if os.Getenv("AIRLOCK_STRESS") != "" {
		flood = 2000
	}
	var conns []net.Conn
	refused := 0
	for range flood {
		c, err := net.Dial("tcp", h.pgAddr.String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		b, _ := io.ReadAll(c)
		if bytes.Contains(b, []byte("53300")) {
			refused++
		}
	}
	if refused != flood-maxConns {
		t.Fatalf("%d of %d connections refused, want %d", refused, flood, flood-maxConns)
	}
	if m := h.scrape(t, "auditor@regulator"); !strings.Contains(m, fmt.Sprintf(`airlock_connections_refused_total{listener="wire"} %d`, refused)) {
		t.Errorf("the refused connections are not counted in /metrics")
	}
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	if grew := int64(during.HeapInuse) - int64(before.HeapInuse); grew > 32<<20 {
		t.Fatalf("the flood holds %d MiB of heap; the bound is %d × 256 KiB", grew>>20, maxConns)
	}
	// The silent ones are dropped after the handshake timeout...
	time.Sleep(time.Second)
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a silent connection is still held after the handshake timeout (%v)", err)
		}
	}
	// ...and a real client connects, authenticates and stays past it.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.pgConnString("fraud@partnerbank", "fraud_detection"))
	if err != nil {
		t.Fatalf("a client after the flood: %v", err)
	}
	time.Sleep(time.Second)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM transactions WHERE country = 'DE'").Scan(&n); err != nil || n == 0 {
		t.Fatalf("an authenticated session idle past the handshake timeout: %v %d", err, n)
	}
	conn.Close(ctx)

	// HTTP: a body trickled a byte at a time is cut at the read timeout.
	slow, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	cut := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		for {
			if _, err := slow.Write([]byte(" ")); err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
			slow.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			if _, err := slow.Read(make([]byte, 512)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if time.Since(start) > 10*time.Second {
				break
			}
		}
		cut <- time.Since(start)
	}()
	if d := <-cut; d > 5*time.Second {
		t.Fatalf("a trickled body was held for %v", d)
	}
	// Past the connection limit, HTTP says 503 with Retry-After.
	var held []net.Conn
	for range maxConns {
		c, _ := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond)
	over, _ := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	over.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(over)
	over.Close()
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 503")) || !bytes.Contains(b, []byte("Retry-After: 1")) || !bytes.Contains(b, []byte("limit.connections")) {
		t.Fatalf("a connection over the HTTP limit got %q", b)
	}
}
