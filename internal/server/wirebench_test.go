package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func pct(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// BenchmarkWireVsHTTP compares one governed aggregate asked over the wire
// endpoint and over HTTP, alternated in each iteration: connect-and-query
// (a new connection each time: wire startup and token check, or a new TCP
// connection to HTTP) and on an open connection (a wire prepared statement
// executed again, an HTTP keep-alive request). Reports p50 and p99.
func BenchmarkWireVsHTTP(b *testing.B) {
	h := newHarness(b, nil)
	ctx := context.Background()
	const principal, purpose = "fraud@partnerbank", "fraud_detection"
	const sql = "SELECT country, count(*), sum(amount) FROM transactions WHERE mcc = $1 GROUP BY country"
	tok := h.tokens[principal]
	body, _ := json.Marshal(map[string]any{"sql": sql, "purpose": purpose, "params": []any{"5814"}})
	keepAlive := &http.Client{}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	httpAsk := func(c *http.Client) {
		req, _ := http.NewRequest("POST", h.url+"/v1/query", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("http: %v %v", err, resp)
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
	}
	connString := h.pgConnString(principal, purpose)
	wireOnce := func() {
		c, err := pgx.Connect(ctx, connString)
		if err != nil {
			b.Fatal(err)
		}
		rows, err := c.Query(ctx, sql, "5814")
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
		}
		rows.Close()
		c.Close(ctx)
	}
	open, err := pgx.Connect(ctx, connString)
	if err != nil {
		b.Fatal(err)
	}
	defer open.Close(ctx)
	if _, err := open.Prepare(ctx, "q", sql); err != nil {
		b.Fatal(err)
	}
	wirePrepared := func() {
		rows, err := open.Query(ctx, "q", "5814")
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
		}
		rows.Close()
	}
	variants := []struct {
		name string
		run  func()
	}{
		{"wire-connect-and-query", wireOnce},
		{"http-connect-and-query", func() { httpAsk(fresh) }},
		{"wire-prepared", wirePrepared},
		{"http-keepalive", func() { httpAsk(keepAlive) }},
	}
	for _, v := range variants {
		v.run() // warm up
	}
	times := map[string][]time.Duration{}
	n := max(b.N, 200)
	b.ResetTimer()
	for range n {
		for _, v := range variants {
			t0 := time.Now()
			v.run()
			times[v.name] = append(times[v.name], time.Since(t0))
		}
	}
	for _, v := range variants {
		b.ReportMetric(ms(pct(times[v.name], 0.5)), v.name+"-p50-ms")
		b.ReportMetric(ms(pct(times[v.name], 0.99)), v.name+"-p99-ms")
	}
	fmt.Printf("wire/http p50: connect-and-query %.2f, open connection %.2f\n",
		float64(pct(times["wire-connect-and-query"], 0.5))/float64(pct(times["http-connect-and-query"], 0.5)),
		float64(pct(times["wire-prepared"], 0.5))/float64(pct(times["http-keepalive"], 0.5)))
}
