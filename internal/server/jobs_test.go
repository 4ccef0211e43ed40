package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/fedjob"
)

// jobNet is a federated-job demo's nodes, in process.
type jobNet struct {
	*federationNet
	d    demo.JobDemo
	job  []byte
	keys map[string]*federation.NodeKey
}

// startJobs writes the demo, lets prepare edit it, has every member in
// approve (nil: all) approve the job file, and starts every node.
func startJobs(t *testing.T, d demo.JobDemo, stores int, prepare func(dir string), approve []string) *jobNet {
	t.Helper()
	dir := t.TempDir()
	if err := demo.InitJob(dir, d, stores); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(dir)
	}
	jn := &jobNet{federationNet: &federationNet{dir: dir, nodes: map[string]*harness{}}, d: d, keys: map[string]*federation.NodeKey{}}
	jn.job = mustRead(t, filepath.Join(dir, d.Job+".yaml"))
	j, err := fedjob.Parse(jn.job)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range append(append([]demo.JobNode{}, d.Members...), d.Coordinator) {
		ws := filepath.Join(dir, n.Name)
		skey, vkey, err := audit.LoadOrCreateKey(filepath.Join(ws, ".airlock"), n.Name)
		if err != nil {
			t.Fatal(err)
		}
		jn.keys[n.Name], _ = federation.ParseSigner(skey, vkey)
		if n != d.Coordinator && (approve == nil || slices.Contains(approve, n.Name)) {
			if _, err := fedjob.Approve(ws, j, n.Name, jn.keys[n.Name], "", time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		h, err := startHarness(ws, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.stop)
		jn.nodes[n.Name] = h
	}
	for n := range jn.nodes {
		jn.repoint(t, n)
	}
	return jn
}

// jobRun is a run's answer: the progress lines, or the refusal.
type jobRun struct {
	apiResponse
	events []fedjob.Event
	// lineError is a refusal after the first round (the stream's last line).
	lineError string
}

func (jn *jobNet) run(t *testing.T, principal, purpose string, job []byte) jobRun {
	t.Helper()
	h := jn.nodes[jn.d.Coordinator.Name]
	body, _ := json.Marshal(map[string]string{"job": string(job), "purpose": purpose})
	r := h.post(t, "/v1/jobs/run", h.tokens[principal], body)
	out := jobRun{apiResponse: r}
	if r.Status != 200 {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var line struct {
			fedjob.Event
			Error *struct{ Rule string } `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("a malformed progress line: %v: %.300s", err, sc.Text())
		}
		if line.Error != nil {
			out.lineError = line.Error.Rule
			continue
		}
		out.events = append(out.events, line.Event)
	}
	return out
}

// demandTruth is the plain sum over the retailers' files of each cell's
// clamped units and customers, keyed "sku|region|week".
func demandTruth(t *testing.T, dir string, retailers []string) map[string][2]float64 {
	out := map[string][2]float64{}
	for _, r := range retailers {
		f, err := os.Open(filepath.Join(dir, r, "data", "sales.csv"))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs[1:] {
			u, _ := strconv.ParseFloat(rec[4], 64)
			c, _ := strconv.ParseFloat(rec[5], 64)
			k := rec[3] + "|" + rec[1] + "|" + rec[0]
			v := out[k]
			v[0] += math.Min(u, 120)
			v[1] += math.Min(c, 80)
			out[k] = v
		}
	}
	return out
}

func sigmaOf(t *testing.T, note string) float64 {
	i := strings.Index(note, "σ = ")
	if i < 0 {
		t.Fatalf("note names no σ: %s", note)
	}
	var s float64
	if _, err := fmt.Sscan(note[i+len("σ = "):], &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDemandTotalsBySecureAggregation: four retailers' nodes and the
// exchange; the released totals per SKU × region × week are the plain
// sums over the four files plus noise of the stated σ (each cell within
// 5σ, the errors' spread within 25% of σ), the exchange's log records the
// round with its survivors, and each retailer's log records that the
// round read its data, what it paid, and the survivors it unmasked for.
func TestDemandTotalsBySecureAggregation(t *testing.T) {
	jn := startJobs(t, demo.DemandDemo, 10, nil, nil)
	r := jn.run(t, demo.DemandDemo.Analyst, "demand_forecasting", jn.job)
	if r.Status != 200 || len(r.events) != 2 || r.events[0].Round == nil || r.events[0].Round.Table == nil || !r.events[1].Done {
		t.Fatalf("run: %d %.300s", r.Status, r.Body)
	}
	rr := r.events[0].Round
	if strings.Join(rr.Survivors, ",") != "acme,bolt,corner,dash" || len(rr.Dropped) != 0 {
		t.Fatalf("survivors %v, dropped %v", rr.Survivors, rr.Dropped)
	}
	truth := demandTruth(t, jn.dir, []string{"acme", "bolt", "corner", "dash"})
	tb := rr.Table
	if len(tb.Rows) != len(demo.DemandSKUs)*len(demo.DemandRegions)*len(demo.DemandWeeks) {
		t.Fatalf("%d cells", len(tb.Rows))
	}
	sigmas := []float64{sigmaOf(t, tb.Notes[0]), sigmaOf(t, tb.Notes[1])}
	for m := range 2 {
		var sq float64
		for _, row := range tb.Rows {
			k := row[0].(string) + "|" + row[1].(string) + "|" + row[2].(string)
			got, _ := row[3+m].(float64), true
			e := got - truth[k][m]
			if math.Abs(e) > 5*sigmas[m] {
				t.Errorf("cell %s measure %d: %g, the plain sum is %g (σ %.1f)", k, m, got, truth[k][m], sigmas[m])
			}
			sq += e * e
		}
		spread := math.Sqrt(sq / float64(len(tb.Rows)))
		if math.Abs(spread-sigmas[m]) > 0.25*sigmas[m] {
			t.Errorf("measure %d: the errors' spread %.1f, the stated σ %.1f", m, spread, sigmas[m])
		}
	}
	ce := entryOf(t, jn.nodes["exchange"], "AL1900I")
	if ce.Extra["job_hash"] != rr.Hash || ce.Extra["survivors"] != "acme,bolt,corner,dash" {
		t.Errorf("the exchange's entry: %+v", ce.Extra)
	}
	for _, m := range []string{"acme", "bolt", "corner", "dash"} {
		h := jn.nodes[m]
		open, unmask := entryOf(t, h, "AL1901I"), entryOf(t, h, "AL1902I")
		if open.Extra["job_hash"] != rr.Hash || open.Extra["round"] != "1" || open.Rho != 0.5 || open.Datasets[0] != "sales" || open.Principal != demo.DemandDemo.Analyst {
			t.Errorf("%s's contribution entry: %+v", m, open)
		}
		if unmask.Extra["round_id"] != open.Extra["round_id"] || unmask.Extra["survivors"] != "acme,bolt,corner,dash" {
			t.Errorf("%s's unmasking entry: %+v", m, unmask.Extra)
		}
	}
	for _, sp := range r.events[1].Privacy {
		if sp.Rounds != 1 || sp.Rho != 0.5 || !(sp.Epsilon > 1) {
			t.Errorf("privacy spent: %+v", sp)
		}
	}
}

// TestDemandHiddenRecordPair: two worlds that differ only in one row of
// one retailer (a store's week of one SKU: 0 units or 120) release
// answers of one shape — the same cells, survivors and notes — whose
// difference at that cell is noise: across repeated runs, the two worlds'
// values there overlap, and no answer carries anything else that differs.
func TestDemandHiddenRecordPair(t *testing.T) {
	worlds := [2]*jobNet{}
	for w, units := range []string{"0", "120"} {
		worlds[w] = startJobs(t, demo.DemandDemo, 4, func(dir string) {
			path := filepath.Join(dir, "bolt", "data", "sales.csv")
			b, _ := os.ReadFile(path)
			lines := strings.Split(string(b), "\n")
			f := strings.Split(lines[1], ",")
			f[4], f[5] = units, "0"
			lines[1] = strings.Join(f, ",")
			os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644)
		}, nil)
	}
	hidden := "SKU-01|north|2026-W40"
	var values [2][]float64
	var shape [2]string
	for run := range 4 {
		for w, jn := range worlds {
			r := jn.run(t, demo.DemandDemo.Analyst, "demand_forecasting", jn.job)
			if r.Status != 200 || len(r.events) != 2 {
				t.Fatalf("world %d run %d: %d %.300s", w, run, r.Status, r.Body)
			}
			tb := r.events[0].Round.Table
			var cells []string
			for _, row := range tb.Rows {
				k := row[0].(string) + "|" + row[1].(string) + "|" + row[2].(string)
				cells = append(cells, k)
				if k == hidden {
					v := row[3].(float64)
					values[w] = append(values[w], v)
				}
			}
			s := strings.Join(cells, ";") + strings.Join(tb.Notes, ";") + strings.Join(r.events[0].Round.Survivors, ",")
			if shape[w] != "" && shape[w] != s {
				t.Fatal("one world's answers differ in shape between runs")
			}
			shape[w] = s
		}
	}
	if shape[0] != shape[1] {
		t.Errorf("the two worlds' answers differ beyond the noisy values:\n%.300s\n%.300s", shape[0], shape[1])
	}
	lo0, hi0 := minMax(values[0])
	lo1, hi1 := minMax(values[1])
	if hi0 < lo1 || hi1 < lo0 {
		t.Errorf("the hidden row's cell separates the worlds: %v vs %v", values[0], values[1])
	}
}

func minMax(v []float64) (float64, float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

// TestDemandParticipantKilledMidRound: a retailer stopped after sharing
// its keys, before sending its input, drops out; the round completes
// with the other three and sums only their rows. With two stopped, the
// round is refused (fewer than min_participants 3): no sum is revealed,
// and the refusal names the dropped members.
func TestDemandParticipantKilledMidRound(t *testing.T) {
	for _, kill := range [][]string{{"dash"}, {"corner", "dash"}} {
		jn := startJobs(t, demo.DemandDemo, 4, nil, nil)
		var once sync.Once
		jn.nodes["exchange"].node.Jobs.OnPhase = func(job string, round int, phase string) {
			if phase == "share" {
				once.Do(func() {
					for _, k := range kill {
						jn.nodes[k].stop()
					}
				})
			}
		}
		r := jn.run(t, demo.DemandDemo.Analyst, "demand_forecasting", jn.job)
		if len(kill) == 2 {
			if r.Status != 503 || r.Error.Rule != "job.too_few_participants" || !strings.Contains(r.Error.Message, "corner") || !strings.Contains(r.Error.Message, "dash") {
				t.Fatalf("two killed: %d %.300s", r.Status, r.Body)
			}
			if e := entryOf(t, jn.nodes["exchange"], "AL1900W"); e.Rule != "job.too_few_participants" {
				t.Errorf("the exchange's entry: %+v", e)
			}
			for _, m := range []string{"acme", "bolt"} {
				assertNoEntry(t, jn.nodes[m], "AL1902I")
			}
			continue
		}
		if r.Status != 200 || len(r.events) != 2 {
			t.Fatalf("one killed: %d %.300s", r.Status, r.Body)
		}
		rr := r.events[0].Round
		if strings.Join(rr.Survivors, ",") != "acme,bolt,corner" || !strings.Contains(rr.Dropped["dash"], "did not answer at input") {
			t.Fatalf("survivors %v dropped %v", rr.Survivors, rr.Dropped)
		}
		// The errors' mean over the cells is near 0 against the survivors'
		// sums and far below 0 against all four's (dash's rows are out).
		truth := demandTruth(t, jn.dir, []string{"acme", "bolt", "corner"})
		with := demandTruth(t, jn.dir, []string{"acme", "bolt", "corner", "dash"})
		sigma := sigmaOf(t, rr.Table.Notes[0])
		var mean, meanWith float64
		for _, row := range rr.Table.Rows {
			k := row[0].(string) + "|" + row[1].(string) + "|" + row[2].(string)
			got := row[3].(float64)
			mean += (got - truth[k][0]) / float64(len(rr.Table.Rows))
			meanWith += (got - with[k][0]) / float64(len(rr.Table.Rows))
		}
		se := sigma / math.Sqrt(float64(len(rr.Table.Rows)))
		if math.Abs(mean) > 4*se || meanWith > -4*se {
			t.Errorf("mean error %.1f against the survivors' sums, %.1f against all four's (standard error %.1f)", mean, meanWith, se)
		}
		// dash paid when it opened the round, though it dropped.
		for _, sp := range r.events[1].Privacy {
			if sp.Rounds != 1 {
				t.Errorf("privacy spent by %s: %+v", sp.Org, sp)
			}
		}
	}
}

func assertNoEntry(t *testing.T, h *harness, code string) {
	t.Helper()
	n, _ := h.node.Store.Size(context.Background())
	for i := range n {
		if e := lastEntryAt(t, h, i); e.Event == code {
			t.Errorf("an unexpected %s entry: %+v", code, e)
		}
	}
}
