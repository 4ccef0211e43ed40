package netlimit

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func listen(t *testing.T, cfg Config) (*Listener, chan net.Conn) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Wrap(raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	return l, accepted
}

func dial(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readRefusal reads what a refused connection was told before it closed.
func readRefusal(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal(err)
	}
	return string(b)
}

func TestLimitsTotalAndPerClient(t *testing.T) {
	reject := func(c net.Conn, reason string) { io.WriteString(c, "no: "+reason) }
	l, accepted := listen(t, Config{MaxConns: 3, MaxConnsPerClient: 2, Reject: reject})
	a, b := dial(t, l), dial(t, l)
	<-accepted
	held := <-accepted
	// A third from the same address is over the per-client limit.
	if got := readRefusal(t, dial(t, l)); got != "no: too many connections from this client address" {
		t.Fatalf("third connection from one client: %q", got)
	}
	if s := l.Stats(); s.Open != 2 || s.Rejected != 1 {
		t.Fatalf("stats %+v, want 2 open, 1 rejected", s)
	}
	// Closing one frees its place.
	held.Close()
	dial(t, l)
	select {
	case <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("a freed place was not reused")
	}
	_, _ = a, b
}

func TestTotalLimitAcrossClients(t *testing.T) {
	l, accepted := listen(t, Config{MaxConns: 1, MaxConnsPerClient: 10, Reject: func(c net.Conn, r string) { io.WriteString(c, r) }})
	dial(t, l)
	<-accepted
	if got := readRefusal(t, dial(t, l)); got != "too many connections to this server" {
		t.Fatalf("over the total: %q", got)
	}
}

func TestHandshakeDeadlineUntilAuthenticated(t *testing.T) {
	l, accepted := listen(t, Config{HandshakeTimeout: 200 * time.Millisecond})
	dial(t, l)
	silent := <-accepted
	buf := make([]byte, 1)
	start := time.Now()
	if _, err := silent.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a silent connection's read: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("deadline after %v", d)
	}
	// Once authenticated, the connection may stay idle.
	client := dial(t, l)
	authed := <-accepted
	l.Authenticated(client.LocalAddr())
	go func() { time.Sleep(400 * time.Millisecond); client.Write([]byte("x")) }()
	if _, err := authed.Read(buf); err != nil {
		t.Fatalf("an authenticated connection was cut: %v", err)
	}
}
