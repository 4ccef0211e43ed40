// Package netlimit bounds a TCP listener: how many connections it holds at
// once, in total and per client address, and how long a connection may take
// to authenticate. Together with a protocol's per-connection buffer size
// they bound the memory a flood of unauthenticated connections can take:
// at most MaxConns × (buffer per connection), whatever the attacker sends.
//
// A connection over a limit is accepted and closed at once (after an
// optional protocol-level goodbye), so the kernel's backlog never fills and
// well-behaved clients get a clear error instead of a hang.
package netlimit

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Config sizes a Listener. Zero values take the defaults below.
type Config struct {
	// MaxConns is the most connections held at once (default 256).
	MaxConns int
	// MaxConnsPerClient is the most held at once from one IP (default 32).
	MaxConnsPerClient int
	// HandshakeTimeout is how long a new connection has to authenticate,
	// after which its reads and writes fail (0: no deadline; HTTP servers
	// have their own).
	HandshakeTimeout time.Duration
	// Reject, if set, writes a protocol-level refusal to a connection over
	// a limit before it is closed.
	Reject func(c net.Conn, reason string)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// CheckAndSetDefaults fills unset fields.
func (c *Config) CheckAndSetDefaults() error {
	if c.MaxConns == 0 {
		c.MaxConns = 256
	}
	if c.MaxConnsPerClient == 0 {
		c.MaxConnsPerClient = 32
	}
	if c.MaxConns < 0 || c.MaxConnsPerClient < 0 || c.HandshakeTimeout < 0 {
		return errors.New("netlimit: limits must not be negative")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Listener is a net.Listener with limits.
type Listener struct {
	net.Listener
	cfg Config

	mu       sync.Mutex
	total    int
	perIP    map[string]int
	byRemote map[string]*Conn
	rejected uint64
}

// Wrap puts limits on l.
func Wrap(l net.Listener, cfg Config) (*Listener, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Listener{Listener: l, cfg: cfg, perIP: map[string]int{}, byRemote: map[string]*Conn{}}, nil
}

// Accept returns the next connection within the limits; connections over
// them are refused and closed without being returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := clientIP(c.RemoteAddr())
		l.mu.Lock()
		reason := ""
		switch {
		case l.total >= l.cfg.MaxConns:
			reason = "too many connections to this server"
		case l.perIP[ip] >= l.cfg.MaxConnsPerClient:
			reason = "too many connections from this client address"
		default:
			l.total++
			l.perIP[ip]++
		}
		if reason != "" {
			l.rejected++
		}
		l.mu.Unlock()
		if reason != "" {
			go l.refuse(c, reason)
			continue
		}
		lc := &Conn{Conn: c, l: l, ip: ip, remote: c.RemoteAddr().String()}
		l.mu.Lock()
		l.byRemote[lc.remote] = lc
		l.mu.Unlock()
		if l.cfg.HandshakeTimeout > 0 {
			c.SetDeadline(l.cfg.Now().Add(l.cfg.HandshakeTimeout))
		}
		return lc, nil
	}
}

func (l *Listener) refuse(c net.Conn, reason string) {
	defer c.Close()
	if l.cfg.Reject != nil {
		c.SetDeadline(l.cfg.Now().Add(time.Second))
		l.cfg.Reject(c, reason)
	}
}

// Stats is what a Listener holds and has refused.
type Stats struct {
	Open     int
	Rejected uint64
}

// Stats reports the open connections and how many were refused.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Open: l.total, Rejected: l.rejected}
}

// Authenticated lifts the handshake deadline of the connection from
// remote, for protocols that learn who authenticated only by address.
func (l *Listener) Authenticated(remote net.Addr) {
	if remote == nil {
		return
	}
	l.mu.Lock()
	c := l.byRemote[remote.String()]
	l.mu.Unlock()
	if c != nil {
		c.Authenticated()
	}
}

func (l *Listener) release(c *Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.byRemote, c.remote)
	ip := c.ip
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// Conn is a connection counted against its Listener's limits until closed.
type Conn struct {
	net.Conn
	l      *Listener
	ip     string
	remote string
	once   sync.Once
}

// Close releases the connection's place.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}

// Authenticated lifts the handshake deadline: the protocol has
// authenticated the connection's peer.
func (c *Conn) Authenticated() { c.Conn.SetDeadline(time.Time{}) }

func clientIP(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
