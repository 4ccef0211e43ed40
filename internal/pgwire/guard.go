package pgwire

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// guardedConn stands between a client and psql-wire. It terminates TLS
// itself (answering SSLRequest), so what it reads is always plaintext, and
// it frames every frontend message and checks the fields psql-wire decodes
// without bounds checks (a Bind parameter length below -1 sliced past its
// buffer and killed the process) before handing the bytes on. A malformed
// message ends the connection, not the server.
type guardedConn struct {
	net.Conn // the client connection, TLS once upgraded
	r        *bufio.Reader
	tls      *tls.Config
	maxMsg   int
	startup  bool // still in the untyped startup phase
	pending  []byte
	// ready is set once the server's first ReadyForQuery has gone out:
	// until then Write rewrites the handshake's parameters.
	ready bool
	conns *sync.Map
}

// ServerVersion is the server_version the endpoint announces: PostgreSQL
// 15's syntax, which drivers parse (pgx, libpq, pgJDBC); psql-wire would
// announce "150000", which libpq reads as version 1500000000.
const ServerVersion = "15.8"

// Write passes the server's messages on, rewriting the handshake's
// server_version parameter (psql-wire hard-codes it). Handshake messages
// are written one whole message per call.
func (c *guardedConn) Write(p []byte) (int, error) {
	if c.ready {
		return c.Conn.Write(p)
	}
	out := make([]byte, 0, len(p)+16)
	for rest := p; len(rest) >= 5; {
		size := int(binary.BigEndian.Uint32(rest[1:5]))
		if size < 4 || 1+size > len(rest) {
			out = append(out, rest...)
			break
		}
		msg := rest[:1+size]
		rest = rest[1+size:]
		switch msg[0] {
		case 'S':
			if key, _, ok := bytes.Cut(msg[5:], []byte{0}); ok && string(key) == "server_version" {
				body := append(append(append([]byte("server_version"), 0), ServerVersion...), 0)
				m := append([]byte{'S', 0, 0, 0, 0}, body...)
				binary.BigEndian.PutUint32(m[1:5], uint32(4+len(body)))
				msg = m
			}
		case 'Z':
			c.ready = true
		}
		out = append(out, msg...)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func guard(c net.Conn, tlsConfig *tls.Config, maxMsg int) *guardedConn {
	return &guardedConn{Conn: c, r: bufio.NewReaderSize(c, 4096), tls: tlsConfig, maxMsg: maxMsg, startup: true}
}

// errMalformed ends a connection whose message does not decode.
var errMalformed = errors.New("pgwire: malformed protocol message")

// Protocol codes of the untyped startup messages.
const (
	codeProtocol3 = 196608
	codeCancel    = 80877102
	codeSSL       = 80877103
	codeGSSENC    = 80877104
)

func (c *guardedConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if err := c.next(); err != nil {
			if errors.Is(err, errMalformed) && !c.startup {
				// As PostgreSQL does: say why before closing.
				c.Conn.Write(fatalMessage("08P01", "malformed protocol message"))
			}
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// next reads, checks and queues one message.
func (c *guardedConn) next() error {
	if c.startup {
		var hdr [8]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return err
		}
		size := int(binary.BigEndian.Uint32(hdr[:4]))
		if size < 8 || size > 10000 {
			return errMalformed
		}
		msg := make([]byte, size)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(c.r, msg[8:]); err != nil {
			return err
		}
		switch binary.BigEndian.Uint32(hdr[4:]) {
		case codeSSL:
			if c.tls == nil {
				_, err := c.Conn.Write([]byte{'N'})
				return err
			}
			if c.r.Buffered() > 0 {
				return errMalformed // bytes before the handshake: not a real client
			}
			if _, err := c.Conn.Write([]byte{'S'}); err != nil {
				return err
			}
			t := tls.Server(c.Conn, c.tls)
			if err := t.Handshake(); err != nil {
				return err
			}
			c.Conn, c.r = t, bufio.NewReaderSize(t, 4096)
			return nil
		case codeGSSENC:
			_, err := c.Conn.Write([]byte{'N'})
			return err
		case codeProtocol3:
			c.startup = false
		case codeCancel:
		default:
			return errMalformed
		}
		c.pending = msg
		return nil
	}
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return err
	}
	size := int(binary.BigEndian.Uint32(hdr[1:]))
	if size < 4 || size-4 > c.maxMsg {
		return errMalformed
	}
	msg := make([]byte, 1+size)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(c.r, msg[5:]); err != nil {
		return err
	}
	if err := checkMessage(hdr[0], msg[5:]); err != nil {
		return err
	}
	c.pending = msg
	return nil
}

// checkMessage checks the structure of the messages psql-wire decodes
// with lengths taken from the client.
func checkMessage(typ byte, body []byte) error {
	d := decoder{b: body}
	switch typ {
	case 'B': // Bind: portal, statement, formats, parameters, result formats
		d.cstring()
		d.cstring()
		d.int16s()
		n := d.count()
		for i := 0; i < n && d.err == nil; i++ {
			l := d.int32()
			switch {
			case l == -1:
			case l < -1 || int(l) > len(d.b):
				d.err = errMalformed
			default:
				d.b = d.b[l:]
			}
		}
		d.int16s()
	case 'P': // Parse: name, query, parameter types
		d.cstring()
		d.cstring()
		n := d.count()
		if n*4 > len(d.b) {
			d.err = errMalformed
		}
	case 'E': // Execute: portal, row limit
		d.cstring()
		d.int32()
	case 'D', 'C': // Describe, Close: kind, name
		if len(d.b) < 1 || (d.b[0] != 'S' && d.b[0] != 'P') {
			return errMalformed
		}
		d.b = d.b[1:]
		d.cstring()
	case 'Q', 'p': // Query, password
		d.cstring()
	}
	if d.err != nil {
		return fmt.Errorf("%w (%c)", d.err, typ)
	}
	return nil
}

// decoder reads protocol fields, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) cstring() {
	for i, c := range d.b {
		if c == 0 {
			d.b = d.b[i+1:]
			return
		}
	}
	d.err = errMalformed
}

func (d *decoder) int16() int {
	if len(d.b) < 2 {
		d.err = errMalformed
		return 0
	}
	v := int(int16(binary.BigEndian.Uint16(d.b)))
	d.b = d.b[2:]
	return v
}

func (d *decoder) int32() int32 {
	if len(d.b) < 4 {
		d.err = errMalformed
		return 0
	}
	v := int32(binary.BigEndian.Uint32(d.b))
	d.b = d.b[4:]
	return v
}

// count reads a non-negative int16 count.
func (d *decoder) count() int {
	n := d.int16()
	if n < 0 {
		d.err = errMalformed
		return 0
	}
	return n
}

// int16s reads a count and that many int16 values.
func (d *decoder) int16s() {
	n := d.count()
	if n*2 > len(d.b) {
		d.err = errMalformed
		return
	}
	d.b = d.b[n*2:]
}

// guardListener guards every connection it accepts and registers it, so
// statement handlers can send what psql-wire cannot (notices, COPY data).
type guardListener struct {
	net.Listener
	tls    *tls.Config
	maxMsg int
	conns  *sync.Map // remote address → *guardedConn
}

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	g := guard(c, l.tls, l.maxMsg)
	g.conns = l.conns
	l.conns.Store(c.RemoteAddr().String(), g)
	return g, nil
}

// Close forgets the connection and closes it.
func (c *guardedConn) Close() error {
	if c.conns != nil {
		// Only this connection's entry: a new connection from the same
		// address may already be registered.
		c.conns.CompareAndDelete(c.Conn.RemoteAddr().String(), c)
	}
	return c.Conn.Close()
}

// writeMessage sends one whole protocol message of type typ.
func (c *guardedConn) writeMessage(typ byte, body []byte) error {
	msg := make([]byte, 5, 5+len(body))
	msg[0] = typ
	binary.BigEndian.PutUint32(msg[1:5], uint32(4+len(body)))
	_, err := c.Conn.Write(append(msg, body...))
	return err
}
