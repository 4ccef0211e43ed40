package server_test

import (
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

// metricValue reads one sample from a Prometheus text exposition.
func metricValue(t *testing.T, exposition, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+-]+)$`).FindStringSubmatch(exposition)
	if m == nil {
		t.Fatalf("metrics lack %s", series)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestMetricsDescribeTheKernel: what operators watch is there and moves
// with the requests: stage latencies (the engine's time is the run
// stage), audit commits and their batch sizes, the budget charged per
// agreement, and open wire sessions.
func TestMetricsDescribeTheKernel(t *testing.T) {
	h := newHarness(t, nil)
	if r := h.query(t, "analyst@partner", "research", "", "SELECT region, count(*) FROM visits GROUP BY region"); r.Status != 200 {
		t.Fatalf("DP query: %d %s", r.Status, r.Body)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.pgConnString("analyst@partner", "research"))
	if err != nil {
		t.Fatal(err)
	}
	m := h.scrape(t, "auditor@regulator")
	if got := metricValue(t, m, "airlock_wire_sessions"); got != 1 {
		t.Errorf("%v wire sessions open, want 1", got)
	}
	conn.Close(ctx)
	for _, series := range []string{
		`airlock_stage_seconds_count{op="sql.query",stage="prepare"}`,
		`airlock_stage_seconds_count{op="sql.query",stage="authorize"}`,
		`airlock_stage_seconds_count{op="sql.query",stage="charge"}`,
		`airlock_stage_seconds_count{op="sql.query",stage="run"}`,
		`airlock_stage_seconds_count{op="sql.query",stage="release"}`,
		`airlock_stage_seconds_count{op="sql.query",stage="audit"}`,
	} {
		if metricValue(t, m, series) < 1 {
			t.Errorf("%s did not count the query", series)
		}
	}
	if metricValue(t, m, "airlock_audit_commit_seconds_count") < 2 || metricValue(t, m, "airlock_audit_batch_entries_sum") < 2 {
		t.Error("audit commits (a reserve and a decision at least) are not counted")
	}
	if rho := metricValue(t, m, `airlock_budget_charged_total{agreement="partner-visits-research",resource="rho"}`); rho <= 0 {
		t.Errorf("budget charged %v, want the DP query's ρ", rho)
	}
	if metricValue(t, m, `airlock_requests_total{channel="http",decision="allow",op="sql.query",rule=""}`) != 1 {
		t.Error("the query is not counted by operation, channel and decision")
	}
}
