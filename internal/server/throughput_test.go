package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/airlock-dev/airlock/internal/share"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/identity"
)

// BenchmarkThroughput16 measures small governed queries at 16 concurrent
// clients over HTTP against the same generated SQL run straight on the
// node's engine at the same concurrency, in alternating rounds of equal
// length so both see the same machine load. Reported: queries per second
// of each and the median over rounds of their ratio (target ≥ 0.8).
func BenchmarkThroughput16(b *testing.B) {
	h := newHarness(b, nil)
	const clients = 16
	sql := "SELECT country, count(*), sum(amount) FROM transactions WHERE merchant = 'Tesco #001' AND is_fraud = false GROUP BY country"
	tok := h.tokens["fraud@partnerbank"]
	plan, err := kernelQuery(h, "fraud@partnerbank", "fraud_detection", sql, share.Plan)
	if err != nil || plan.Plan == nil {
		b.Fatalf("plan: %v", err)
	}
	engineSQL := plan.Plan.SQL
	run := func(d time.Duration, one func() error) float64 {
		var n atomic.Int64
		var wg sync.WaitGroup
		end := time.Now().Add(d)
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					if err := one(); err != nil {
						b.Error(err)
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		return float64(n.Load()) / d.Seconds()
	}
	engine := func() error {
		_, err := h.node.Engine.Query(context.Background(), engineSQL) // DuckDB plans bind no parameters
		return err
	}
	governed := func() error {
		r := h.queryErr("fraud@partnerbank", "fraud_detection", sql, tok)
		return r
	}
	// The pipeline without HTTP: parsing, planning, policy, audit.
	inProcess := func() error {
		_, err := kernelQuery(h, "fraud@partnerbank", "fraud_detection", sql, share.Run)
		return err
	}
	run(time.Second, governed) // warm up
	run(time.Second, engine)
	rounds := max(3, b.N)
	var ratios, gwRatios []float64
	var sumE, sumG, sumP float64
	for range rounds {
		e := run(2*time.Second, engine)
		g := run(2*time.Second, governed)
		p := run(2*time.Second, inProcess)
		sumE, sumG, sumP = sumE+e, sumG+g, sumP+p
		ratios = append(ratios, g/e)
		gwRatios = append(gwRatios, p/e)
	}
	b.ReportMetric(sumE/float64(rounds), "engine-qps")
	b.ReportMetric(sumG/float64(rounds), "governed-qps")
	b.ReportMetric(sumP/float64(rounds), "in-process-qps")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(median(gwRatios), "in-process-ratio")
}

func identityOf(h *harness, principal string) identity.Identity {
	return identity.FromPrincipal(h.node.WS.Principals[principal], "token")
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// queryErr sends one governed query and says whether it was answered.
func (h *harness) queryErr(principal, purpose, sql, tok string) error {
	body, _ := json.Marshal(map[string]any{"sql": sql, "purpose": purpose})
	req, _ := http.NewRequest("POST", h.url+"/v1/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := benchClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// benchClient keeps a connection per client, as a real client pool does.
var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
