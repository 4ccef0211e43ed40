package server_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/dp"
)

// dpHarness starts the demo with partner-visits-research turned into a DP
// agreement with the given budget.
func dpHarness(t *testing.T, budgetEps float64, extra string) *harness {
	return newHarness(t, func(dir string) {
		ag := fmt.Sprintf(`id: partner-visits-research
owner_org: stmary
recipient_org: partner
datasets: [visits]
actions: [query, plan]
purposes: [research]
regions: [eu]
valid_from: 2026-01-01T00:00:00Z
valid_until: 2027-12-31T00:00:00Z
budget: {epsilon: %v, delta: 1.0e-3, period: 24h}
rules:
  visits:
    kind: dp
    max_groups_per_unit: 3
    max_rows_per_group: 5
    epsilon_per_query: 1.0
    delta_per_query: 1.0e-6
    dimensions: [sex, diagnosis, hospital, region, visit_date]
    aggregates: {"*": [count], cost: [count, sum, avg, variance, stddev, median, percentile_cont], patient_id: [count]}
%s`, budgetEps, extra)
		os.WriteFile(filepath.Join(dir, "agreements", "partner-visits-research.yaml"), []byte(ag), 0o644)
		// These tests race hundreds of one principal's queries for the
		// budget: admit them all, so the ledger alone decides.
		setLimits(dir, "max_concurrent_queries: 256", "max_concurrent_per_principal: 256", "queue_wait: 60s")
	})
}

type dpResponse struct {
	apiResponse
	DP struct {
		Epsilon      float64 `json:"epsilon"`
		Cached       bool    `json:"cached"`
		RemainingEps float64 `json:"remaining_epsilon"`
		Columns      []struct {
			Column string  `json:"column"`
			Sigma  float64 `json:"noise_sigma"`
			CI95   float64 `json:"ci95_half_width"`
		} `json:"columns"`
	} `json:"dp"`
}

func dpQuery(t *testing.T, h *harness, sql string) dpResponse {
	r := h.query(t, "analyst@partner", "research", "", sql)
	var d dpResponse
	json.Unmarshal(r.Body, &d)
	d.apiResponse = r
	return d
}

func TestDPQueryReleasesNoisyAnswersWithAccuracy(t *testing.T) {
	h := dpHarness(t, 50, "")
	d := dpQuery(t, h, "SELECT diagnosis, count(*) AS n, avg(cost) AS mean_cost FROM visits GROUP BY diagnosis")
	if d.Status != 200 {
		t.Fatalf("%d %s", d.Status, d.Body)
	}
	if d.DP.Epsilon != 1 || len(d.DP.Columns) != 3 || d.DP.Columns[1].Sigma <= 0 || d.DP.Columns[1].CI95 <= 0 {
		t.Fatalf("dp report: %s", d.Body)
	}
	// Frequent diagnoses survive partition selection; the noisy count of the
	// commonest stays near its bounded value: 17,050 raw visits, 9,249 once
	// each patient counts at most 5 (computed from the CSV). The gap is the
	// price of bounding a heavy-tailed contribution, not noise.
	found := false
	for _, row := range d.Rows {
		if row[0] == "I10" {
			found = true
			if n := row[1].(float64); math.Abs(n-9249) > 500 {
				t.Fatalf("noisy count of I10 = %v, far from its bounded value 9249", n)
			}
		}
	}
	// The demo has 40 diagnoses; the rarest are dropped by selection, and
	// the answer does not say how many.
	if !found || len(d.Rows) >= 40 || strings.Contains(string(d.Body), "suppressed") || !strings.Contains(string(d.Body), "may have been dropped") {
		t.Fatalf("I10 released %v; %d of 40 groups released (want fewer, with the fixed note only): %s", found, len(d.Rows), d.Body)
	}
	// The same question again costs nothing and returns the same answer.
	again := dpQuery(t, h, "SELECT diagnosis, count(*) AS n, avg(cost) AS mean_cost FROM visits GROUP BY diagnosis")
	if !again.DP.Cached || string(mustJSON(again.Rows)) != string(mustJSON(d.Rows)) || again.DP.RemainingEps != d.DP.RemainingEps {
		t.Fatalf("repeat not served from the stored answer: cached=%v remaining %v vs %v", again.DP.Cached, again.DP.RemainingEps, d.DP.RemainingEps)
	}
	// A dry run reports the cost and spends nothing.
	plan := h.post(t, "/v1/query/plan", h.tokens["analyst@partner"], []byte(`{"sql": "SELECT sex, sum(cost) FROM visits GROUP BY sex", "purpose": "research"}`))
	var p dpResponse
	json.Unmarshal(plan.Body, &p)
	if plan.Status != 200 || p.DP.Epsilon != 1 || p.DP.RemainingEps != d.DP.RemainingEps {
		t.Fatalf("dry run: %d %s", plan.Status, plan.Body)
	}
	// DP keeps the aggregation rule's column roles.
	if r := dpQuery(t, h, "SELECT zip, count(*) FROM visits GROUP BY zip"); r.Status != 422 || r.Error.Rule != "aggregation.dimension" {
		t.Fatalf("group by zip: %d %s", r.Status, r.Body)
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

func TestDPBudgetIsSpentExactlyOnce(t *testing.T) {
	// A budget that fits exactly 7 queries (7.5 in rho), raced by 200.
	perQuery := dp.RhoForEpsDelta(1.0, 1e-6)
	budget := dp.EpsilonForRho(7.5*perQuery, 1e-3/2)
	h := dpHarness(t, budget, "")
	ok, exhausted := raceDP(t, []*harness{h}, 200)
	if ok != 7 || exhausted != 193 {
		t.Fatalf("%d answered, %d refused; want exactly 7 and 193", ok, exhausted)
	}
	r := dpQuery(t, h, "SELECT count(*) FROM visits WHERE sex = 'F'")
	if r.Status != 429 || !containsAll(string(r.Body), "remaining_epsilon", "refresh") {
		t.Fatalf("exhausted refusal lacks remaining budget and refresh time: %s", r.Body)
	}
	// The ledger survives a restart.
	h.stop()
	h2, err := startHarness(h.dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer h2.stop()
	if r := dpQuery(t, h2, "SELECT count(*) FROM visits WHERE sex = 'M'"); r.Status != 429 {
		t.Fatalf("after restart the budget was fresh again: %d %s", r.Status, r.Body)
	}
}

// raceDP sends n concurrent DP queries with distinct texts (so none is a
// cached repeat), spread over the given replicas, and counts the answered
// and the budget-refused ones.
func raceDP(t *testing.T, hs []*harness, n int) (ok, exhausted int64) {
	var okN, exN atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := dpQuery(t, hs[i%len(hs)], fmt.Sprintf("SELECT count(*) FROM visits WHERE hospital <> 'h%d'", i))
			switch {
			case r.Status == 200:
				okN.Add(1)
			case r.Status == 429 && r.Error.Rule == "dp.budget_exhausted":
				exN.Add(1)
			default:
				t.Errorf("%d %s", r.Status, r.Body)
			}
		}(i)
	}
	wg.Wait()
	return okN.Load(), exN.Load()
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !json.Valid([]byte(s)) || !contains(s, x) {
			return false
		}
	}
	return true
}

func contains(s, sub string) bool { return len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0) }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestDPBudgetRefreshesEachPeriod(t *testing.T) {
	// A budget that fits one query per 3-second period.
	perQuery := dp.RhoForEpsDelta(1.0, 1e-6)
	h := dpHarness(t, dp.EpsilonForRho(1.5*perQuery, 1e-3/2), "")
	af := filepath.Join(h.dir, "agreements", "partner-visits-research.yaml")
	b, _ := os.ReadFile(af)
	os.WriteFile(af, []byte(strings.Replace(string(b), "period: 24h", "period: 3s", 1)), 0o644)
	h.stop()
	h2, err := startHarness(h.dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer h2.stop()
	// Start right after a period boundary so the two first queries share a period.
	time.Sleep(time.Until(time.Now().Truncate(3 * time.Second).Add(3*time.Second + 100*time.Millisecond)))
	if r := dpQuery(t, h2, "SELECT count(*) FROM visits WHERE sex = 'F'"); r.Status != 200 {
		t.Fatalf("first query: %d %s", r.Status, r.Body)
	}
	if r := dpQuery(t, h2, "SELECT count(*) FROM visits WHERE sex = 'M'"); r.Status != 429 {
		t.Fatalf("second query in the same period: %d %s", r.Status, r.Body)
	}
	time.Sleep(time.Until(time.Now().Truncate(3 * time.Second).Add(3*time.Second + 100*time.Millisecond)))
	if r := dpQuery(t, h2, "SELECT count(*) FROM visits WHERE sex = 'M'"); r.Status != 200 {
		t.Fatalf("after the refresh: %d %s", r.Status, r.Body)
	}
}

func TestDPWithLaplaceNoise(t *testing.T) {
	h := dpHarness(t, 50, "    noise: laplace\n")
	d := dpQuery(t, h, "SELECT sex, count(*) AS n, sum(cost) FROM visits GROUP BY sex")
	if d.Status != 200 || len(d.Rows) != 2 {
		t.Fatalf("%d %s", d.Status, d.Body)
	}
	if !strings.Contains(string(d.Body), `"mechanism":"discrete Laplace"`) || d.DP.Epsilon != 1 {
		t.Fatalf("laplace rule not applied: %s", d.Body)
	}
}

func TestDPMedianIsNearTheTrueMedian(t *testing.T) {
	// At ε = 1 per query a tail percentile over [0, 50000] is coarse (ε per
	// group is split over three statistics and L0 = 3 groups); with ε = 20
	// per query both quantiles must land within a few bins of the truth.
	h0 := dpHarness(t, 500, "")
	af := filepath.Join(h0.dir, "agreements", "partner-visits-research.yaml")
	b, _ := os.ReadFile(af)
	os.WriteFile(af, []byte(strings.Replace(string(b), "epsilon_per_query: 1.0", "epsilon_per_query: 20.0", 1)), 0o644)
	h0.stop()
	h, err := startHarness(h0.dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	d := dpQuery(t, h, "SELECT region, median(cost) AS m, percentile_cont(0.9) WITHIN GROUP (ORDER BY cost) AS p90 FROM visits GROUP BY region ORDER BY region")
	if d.Status != 200 || len(d.Rows) != 4 {
		t.Fatalf("%d %s", d.Status, d.Body)
	}
	truth := h.query(t, "steward@stmary", "", "", "SELECT region, median(cost), percentile_cont(0.9) WITHIN GROUP (ORDER BY cost) FROM visits GROUP BY region ORDER BY region")
	if truth.Status != 200 {
		t.Fatalf("steward: %s", truth.Body)
	}
	const bin = 50000.0 / 256
	for i, row := range d.Rows {
		for j := 1; j <= 2; j++ {
			got, want := row[j].(float64), truth.Rows[i][j].(float64)
			// Contribution bounding and the 195-EUR bins allow a few bins of error.
			if math.Abs(got-want) > 4*bin {
				t.Errorf("region %v column %d: DP %.0f vs true %.0f", row[0], j, got, want)
			}
		}
	}
	if !strings.Contains(string(d.Body), "permute-and-flip") {
		t.Fatalf("quantile mechanism not reported: %s", d.Body)
	}
}

// Identical DP queries in flight at once are answered once and charged
// once (they used to be charged 8 to 14 times for 20 requests).
func TestIdenticalConcurrentDPQueriesAreChargedOnce(t *testing.T) {
	perQuery := dp.RhoForEpsDelta(1.0, 1e-6)
	h := dpHarness(t, dp.EpsilonForRho(2.5*perQuery, 1e-3/2), "")
	const n = 20
	var wg sync.WaitGroup
	bodies := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := dpQuery(t, h, "SELECT sex, count(*) FROM visits GROUP BY sex")
			if r.Status != 200 {
				t.Errorf("identical query %d: %d %s", i, r.Status, r.Body)
			}
			bodies[i] = string(mustJSON(r.Rows))
		}()
	}
	wg.Wait()
	for i := range bodies {
		if bodies[i] != bodies[0] {
			t.Fatalf("identical queries got different answers: %s vs %s", bodies[i], bodies[0])
		}
	}
	// One charge so far: one more distinct query fits, a second does not.
	if r := dpQuery(t, h, "SELECT count(*) FROM visits WHERE sex = 'F'"); r.Status != 200 {
		t.Fatalf("the budget was charged more than once for one answer: %d %s", r.Status, r.Body)
	}
	if r := dpQuery(t, h, "SELECT count(*) FROM visits WHERE sex = 'M'"); r.Status != 429 {
		t.Fatalf("third charge: %d %s, want 429", r.Status, r.Body)
	}
}
