package server_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// startupMessage builds a protocol 3.0 StartupMessage.
func startupMessage(params ...string) []byte {
	body := []byte{0, 3, 0, 0}
	for _, p := range params {
		body = append(append(body, p...), 0)
	}
	body = append(body, 0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(4+len(body))), body...)
}

// message builds a typed frontend message.
func message(typ byte, body []byte) []byte {
	return append(append([]byte{typ}, binary.BigEndian.AppendUint32(nil, uint32(4+len(body)))...), body...)
}

// FuzzWireMessages sends arbitrary bytes to the wire endpoint, raw and
// after a valid startup and authentication, and requires the server to
// survive every one (a panic anywhere would end the test binary) and to
// serve a real client afterwards.
func FuzzWireMessages(f *testing.F) {
	h := shared
	tok := h.tokens["fraud@partnerbank"]
	login := append(startupMessage("user", "fraud@partnerbank", "database", "airlock", "options", "-c airlock.purpose=fraud_detection"),
		message('p', append([]byte(tok), 0))...)
	for _, seed := range [][]byte{
		{}, {0, 0, 0, 8, 4, 210, 22, 47}, // SSLRequest
		{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2}, // CancelRequest
		{0x7f, 0xff, 0xff, 0xff},                              // a huge length
		message('Q', []byte("SELECT country, count(*) FROM transactions GROUP BY country\x00")),
		message('P', []byte("s\x00SELECT count(*) FROM transactions WHERE country = $1\x00\x00\x01\x00\x00\x00\x19")),
		message('B', []byte("\x00s\x00\x00\x00\x00\x03\x00\x00\x00\x02DE\x00\x00\x00\x01x\xff\xff\xff\xff\x00\x00")),
		message('X', nil),
	} {
		f.Add(false, seed)
		f.Add(true, seed)
	}
	f.Fuzz(func(t *testing.T, authenticated bool, data []byte) {
		c, err := net.Dial("tcp", h.pgAddr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if authenticated {
			c.Write(login)
		}
		c.Write(data)
		c.(*net.TCPConn).CloseWrite() // EOF: the server ends the session
		io.Copy(io.Discard, c)        // until it closes, or the deadline
	})
	f.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, h.pgConnString("fraud@partnerbank", "fraud_detection"))
		if err != nil {
			f.Fatalf("the wire endpoint after fuzzing: %v", err)
		}
		defer conn.Close(ctx)
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM transactions WHERE country = 'DE'").Scan(&n); err != nil {
			f.Fatalf("a query after fuzzing: %v", err)
		}
	})
}
