package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/differencing"
	"github.com/airlock-dev/airlock/internal/engine/duckdb"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/identity"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/sqlop"
	"github.com/airlock-dev/airlock/internal/store"
)

// benchRows is the size of the generated visits table (AIRLOCK_BENCH_ROWS,
// default 1M; make bench uses 10M).
func benchRows() int {
	if s := os.Getenv("AIRLOCK_BENCH_ROWS"); s != "" {
		n, _ := strconv.Atoi(s)
		return n
	}
	return 1_000_000
}

// bigWorkspace is the demo workspace with visits replaced by a generated
// Parquet file of rows rows (units = rows/10).
func bigWorkspace(b *testing.B, rows int, rule string) string {
	dir := b.TempDir()
	if err := demo.Init(dir); err != nil {
		b.Fatal(err)
	}
	gen, err := duckdb.Open(duckdb.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer gen.Close()
	pq := filepath.Join(dir, "data", "visits.parquet")
	q := fmt.Sprintf(`COPY (SELECT 'P' || lpad(CAST(hash(i) %% %d AS VARCHAR), 8, '0') AS patient_id,
		'name' || i AS name, 'ssn' || i AS ssn, DATE '1940-01-01' + CAST(i %% 25000 AS INTEGER) AS birth_date,
		CASE WHEN i %% 2 = 0 THEN 'F' ELSE 'M' END AS sex, lpad(CAST(i %% 90000 AS VARCHAR), 5, '1') AS zip,
		'D' || CAST(hash(i * 7) %% 50 AS VARCHAR) AS diagnosis, 'H' || CAST(i %% 12 AS VARCHAR) AS hospital,
		CASE i %% 4 WHEN 0 THEN 'north' WHEN 1 THEN 'south' WHEN 2 THEN 'east' ELSE 'west' END AS region,
		DATE '2023-01-01' + CAST(i %% 1095 AS INTEGER) AS visit_date, CAST((hash(i * 13) %% 5000000) / 100.0 AS DECIMAL(18,2)) AS cost
		FROM range(%d) t(i)) TO '%s' (FORMAT parquet)`, rows/10, rows, pq)
	if err := gen.Exec(context.Background(), q); err != nil {
		b.Fatal(err)
	}
	mf := filepath.Join(dir, "datasets", "visits.yaml")
	m, _ := os.ReadFile(mf)
	os.WriteFile(mf, bytes.Replace(m, []byte("data/visits.csv"), []byte("data/visits.parquet"), 1), 0o644)
	af := filepath.Join(dir, "agreements", "partner-visits-research.yaml")
	a, _ := os.ReadFile(af)
	switch rule {
	case "aggregation":
		a = []byte(aggregationAgreement)
	case "dp":
		// Room for every benchmark iteration.
		a = bytes.Replace(a, []byte("epsilon: 100\n"), []byte("epsilon: 1000000\n"), 1)
	}
	os.WriteFile(af, a, 0o644)
	return dir
}

// aggregationAgreement is partner-visits-research under the aggregation
// threshold rule (the shape issue #2 benchmarks).
const aggregationAgreement = `id: partner-visits-research
owner_org: stmary
recipient_org: partner
datasets: [visits]
actions: [query, plan]
purposes: [research]
regions: [eu]
valid_from: 2026-01-01T00:00:00Z
valid_until: 2027-12-31T00:00:00Z
rules:
  visits:
    kind: aggregation
    min_units: 10
    dimensions: [sex, diagnosis, hospital, region, visit_date]
    aggregates: {"*": [count], cost: [count, sum, avg], patient_id: [count]}
`

func postQuery(b *testing.B, url, tok, sql string) {
	body, _ := json.Marshal(map[string]any{"sql": sql, "purpose": "research"})
	req, _ := http.NewRequest("POST", url+"/v1/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var r struct {
		Rows  [][]any `json:"rows"`
		Error any     `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d: %v", resp.StatusCode, r.Error)
	}
}

// BenchmarkGatewayOverhead compares one governed aggregate through HTTP
// with the same SQL run straight on the node's DuckDB, on benchRows rows,
// alternating the two so both see the same machine load.
func BenchmarkGatewayOverhead(b *testing.B) {
	rows := benchRows()
	dir := bigWorkspace(b, rows, "aggregation")
	h, err := startHarness(dir, "")
	if err != nil {
		b.Fatal(err)
	}
	defer h.stop()
	tok := h.tokens["analyst@partner"]
	for _, q := range []struct{ name, sql string }{
		{"large", "SELECT diagnosis, count(*), avg(cost) FROM visits GROUP BY diagnosis"},
		{"small", "SELECT sex, count(*) FROM visits WHERE hospital = 'H3' AND region = 'east' AND visit_date = DATE '2024-05-01' GROUP BY sex"},
	} {
		b.Run(fmt.Sprintf("%s/rows=%d", q.name, rows), func(b *testing.B) {
			postQuery(b, h.url, tok, q.sql) // warm up
			// The governed SQL the gateway generates, to separate the
			// rule's own cost (the distinct-unit count) from the gateway's.
			plan, err := kernelQuery(h, "analyst@partner", "research", q.sql, share.Plan)
			if err != nil || plan.Plan == nil {
				b.Fatal(err)
			}
			var raw, rawGov, gov []time.Duration
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := h.node.Engine.Query(context.Background(), q.sql); err != nil {
					b.Fatal(err)
				}
				raw = append(raw, time.Since(t0))
				t0 = time.Now()
				if _, err := h.node.Engine.Query(context.Background(), plan.Plan.SQL); err != nil {
					b.Fatal(err)
				}
				rawGov = append(rawGov, time.Since(t0))
				t0 = time.Now()
				postQuery(b, h.url, tok, q.sql)
				gov = append(gov, time.Since(t0))
			}
			pr, prg, pg := p50(raw), p50(rawGov), p50(gov)
			b.ReportMetric(ms(pr), "raw-p50-ms")
			b.ReportMetric(ms(prg), "raw-governed-sql-p50-ms")
			b.ReportMetric(ms(pg), "http-p50-ms")
			b.ReportMetric(float64(pg)/float64(pr), "ratio-vs-raw")
			b.ReportMetric(float64(pg)/float64(prg), "ratio-vs-governed-sql")
			b.ReportMetric(ms(pg-prg), "gateway-overhead-p50-ms")
		})
	}
}

func p50(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// pairedRatio is the median over iterations of a[i]/b[i]: variants timed
// back to back in one iteration share the machine's load at that moment,
// so their ratio is steadier than the ratio of two medians.
func pairedRatio(a, b []time.Duration) float64 {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = float64(a[i]) / float64(b[i])
	}
	sort.Float64s(r)
	return r[len(r)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// kernelQuery runs one SQL operation through the node's kernel in
// process (no channel), as principal for purpose.
func kernelQuery(h *harness, principal, purpose, sql string, mode share.Mode) (*sqlop.Response, error) {
	id := identity.FromPrincipal(h.node.WS.Principals[principal], "token")
	res, err := h.node.Kernel.Do(context.Background(), govern.Request{Caller: share.Caller{Identity: id, Channel: "bench"}, Purpose: purpose, Mode: mode, Op: h.node.SQL.Query(sql, nil)})
	if err != nil {
		return nil, err
	}
	return sqlop.Answer(res), nil
}

// BenchmarkDifferencing (issue #13) times the governed aggregate with the
// differencing check against a history of 1,000 released answers, and the
// same aggregate under an agreement whose check is off, alternated. The
// history is the hard case for the check: 999 other answers whose cells
// have exactly the new cells' unit counts (the answer itself with its
// sketches' sums changed), so no earlier cell is passed over by its unit
// count and every one is compared bucket by bucket; plus the answer
// itself, which its repeats match in every bucket.
func BenchmarkDifferencing(b *testing.B) {
	rows := benchRows()
	dir := bigWorkspace(b, rows, "aggregation")
	off := strings.Replace(strings.Replace(aggregationAgreement, "id: partner-visits-research", "id: partner-visits-unchecked", 1),
		"    min_units: 10\n", "    min_units: 10\n    differencing: {off: true}\n", 1)
	os.WriteFile(filepath.Join(dir, "agreements", "partner-visits-unchecked.yaml"), []byte(off), 0o644)
	h, err := startHarness(dir, "")
	if err != nil {
		b.Fatal(err)
	}
	defer h.stop()
	tok := h.tokens["analyst@partner"]
	const sql = "SELECT diagnosis, count(*), avg(cost) FROM visits GROUP BY diagnosis"
	post := func(agreement string) {
		body, _ := json.Marshal(map[string]any{"sql": sql, "purpose": "research", "agreement": agreement})
		req, _ := http.NewRequest("POST", h.url+"/v1/query", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("%s: status %d: %s", agreement, resp.StatusCode, msg)
		}
	}
	post("partner-visits-research")
	post("partner-visits-unchecked")
	key := store.ReleaseKey{Agreement: "partner-visits-research", Dataset: "visits"}
	ctx := context.Background()
	_, err = h.node.Store.RecordReleases(ctx, []store.ReleaseAppend{{Key: key}}, func(newer []store.ReleaseRecord) ([]store.ReleaseRecord, error) {
		if len(newer) != 1 {
			return nil, fmt.Errorf("history holds %d answers, want 1", len(newer))
		}
		scheme, cells, err := differencing.DecodeAnswer(newer[0].Body)
		if err != nil {
			return nil, err
		}
		rng := rand.New(rand.NewPCG(1, 2))
		others := make([]store.ReleaseRecord, 999)
		for i := range others {
			for _, c := range cells {
				for j := range c.Sums {
					c.Sums[j] = differencing.Sums{W1: rng.Uint32() % differencing.Prime, W2: rng.Uint32() % differencing.Prime, WX: rng.Uint32() % differencing.Prime, WXX: rng.Uint32() % differencing.Prime}
				}
			}
			others[i] = newer[0]
			others[i].Body = differencing.EncodeAnswer(scheme, cells)
		}
		return others, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	post("partner-visits-research") // loads the history into memory
	stats := h.node.SQL.History.Stats()
	if stats.Answers < 1000 {
		b.Fatalf("history holds %d answers", stats.Answers)
	}
	b.Run(fmt.Sprintf("rows=%d/history=%d", rows, stats.Answers), func(b *testing.B) {
		var with, without []time.Duration
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			post("partner-visits-research")
			with = append(with, time.Since(t0))
			t0 = time.Now()
			post("partner-visits-unchecked")
			without = append(without, time.Since(t0))
		}
		st := h.node.SQL.History.Stats()
		b.ReportMetric(ms(p50(with)), "checked-p50-ms")
		b.ReportMetric(ms(p50(without)), "unchecked-p50-ms")
		b.ReportMetric(pairedRatio(with, without), "ratio")
		b.ReportMetric(float64(st.Cells), "history-cells")
		b.ReportMetric(float64(st.Bytes)/float64(st.Cells), "bytes-per-cell")
	})
}
