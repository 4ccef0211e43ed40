package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
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
	"github.com/airlock-dev/airlock/internal/fl"
	"github.com/airlock-dev/airlock/internal/jsonschema"
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
func startJobs(t testing.TB, d demo.JobDemo, stores int, prepare func(dir string), approve []string) *jobNet {
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

func (jn *jobNet) run(t testing.TB, principal, purpose string, job []byte) jobRun {
	t.Helper()
	h := jn.nodes[jn.d.Coordinator.Name]
	body, _ := json.Marshal(map[string]string{"job": string(job), "purpose": purpose})
	r := h.post(t, "/v1/jobs/run", h.tokens[principal], body)
	out := jobRun{apiResponse: r}
	if r.Status != 200 {
		return out
	}
	var doc any
	json.Unmarshal(mustRead(t, "../httpapi/openapi.json"), &doc)
	v := jsonschema.Validator{Root: doc.(map[string]any)}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var raw any
		json.Unmarshal(sc.Bytes(), &raw)
		for _, e := range v.Check(v.Resolve(map[string]any{"$ref": "#/components/schemas/JobEvent"}), raw, "$") {
			t.Errorf("a progress line vs openapi.json: %s", e)
		}
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
// answers of one shape — the same cells, survivors and notes — and at the
// hidden row's cell values whose difference is what the noise allows: the
// worlds' means over repeated runs differ by no more than the row's 120
// units plus four standard errors of the stated noise.
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
	const runs = 6
	hidden := "SKU-01|north|2026-W40"
	var mean [2]float64
	var shape [2]string
	var sigma float64
	for run := range runs {
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
					mean[w] += row[3].(float64) / runs
				}
			}
			sigma = sigmaOf(t, tb.Notes[0])
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
	se := sigma * math.Sqrt(2.0/runs)
	if d := math.Abs(mean[1] - mean[0]); d > 120+4*se {
		t.Errorf("the hidden row's cell: the worlds' means differ by %.0f, more than the row (120) and the noise (4 × %.0f)", d, se)
	}
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

// TestJobRefusals: each refusal names its rule and is audited where it is
// decided — on the coordinator (purpose, receiver, job file, too few
// members) or on the member's node (not approved, another version,
// withdrawn, budget, a step out of order or malformed, a request from a
// node that is not the job's coordinator).
func TestJobRefusals(t *testing.T) {
	d := demo.DemandDemo
	jn := startJobs(t, d, 2, func(dir string) {
		path := filepath.Join(dir, "exchange", "principals.yaml")
		b, _ := os.ReadFile(path)
		os.WriteFile(path, append(b, "  - {name: outsider@other, org: other, roles: [analyst], country: DE, region: eu, clearance: high}\n"...), 0o644)
	}, []string{"acme", "bolt", "corner"})
	ex := jn.nodes["exchange"]

	r := jn.run(t, d.Analyst, "marketing", jn.job)
	if r.Status != 403 || r.Error.Rule != "job.purpose" || entryOf(t, ex, "AL1900W").Rule != "job.purpose" {
		t.Errorf("wrong purpose: %d %.300s", r.Status, r.Body)
	}
	if r = jn.run(t, "outsider@other", "demand_forecasting", jn.job); r.Status != 403 || r.Error.Rule != "job.receiver" {
		t.Errorf("an org not in results_to: %d %.300s", r.Status, r.Body)
	}
	if r = jn.run(t, d.Analyst, "demand_forecasting", []byte("id: x\n")); r.Status != 400 || r.Error.Rule != "job.file" || entryOf(t, ex, "AL1900W").Rule != "job.file" {
		t.Errorf("a bad job file: %d %.300s", r.Status, r.Body)
	}

	// dash never approved: the round runs with the three that did, and
	// dash's node audits its refusal.
	r = jn.run(t, d.Analyst, "demand_forecasting", jn.job)
	if r.Status != 200 || len(r.events) != 2 || !strings.Contains(r.events[0].Round.Dropped["dash"], "job.unapproved") {
		t.Fatalf("dash unapproved: %d %.300s", r.Status, r.Body)
	}
	if e := entryOf(t, jn.nodes["dash"], "AL1901W"); e.Rule != "job.unapproved" || e.Extra["job"] != d.Job {
		t.Errorf("dash's entry: %+v", e)
	}
	assertNoEntry(t, jn.nodes["dash"], "AL1901I")

	// Another version of the file (one byte more) is approved by nobody.
	other := append(append([]byte{}, jn.job...), '\n')
	r = jn.run(t, d.Analyst, "demand_forecasting", other)
	if r.Status != 503 || r.Error.Rule != "job.too_few_participants" || strings.Count(r.Error.Message, "approved another version") != 3 {
		t.Errorf("another version: %d %.300s", r.Status, r.Body)
	}

	// corner withdraws: two left, below min_participants 3.
	if err := fedjob.Withdraw(filepath.Join(jn.dir, "corner"), d.Job, "corner", time.Now()); err != nil {
		t.Fatal(err)
	}
	r = jn.run(t, d.Analyst, "demand_forecasting", jn.job)
	if r.Status != 503 || r.Error.Rule != "job.too_few_participants" || !strings.Contains(r.Error.Message, "job.withdrawn") {
		t.Errorf("withdrawn: %d %.300s", r.Status, r.Body)
	}
	if e := entryOf(t, jn.nodes["corner"], "AL1901W"); e.Rule != "job.withdrawn" {
		t.Errorf("corner's entry: %+v", e)
	}

	// A node that is not the coordinator opens a round on acme; the
	// coordinator's steps out of order and malformed.
	acme := jn.peer(t, "bolt", "acme")
	boltClient := &federation.Client{Key: jn.keys["bolt"], Now: time.Now, Window: time.Minute}
	open, _ := json.Marshal(map[string]any{"job": jn.job, "round": 1, "round_id": make([]byte, 16)})
	env := federation.Envelope{Principal: federation.Principal{Name: "steward@bolt", Org: "bolt", Region: "eu"}, Purpose: "demand_forecasting", Op: "secagg.open", Payload: open}
	_, _, err := boltClient.Post(context.Background(), acme, fedjob.PathOpen, env, nil)
	var pe *federation.PeerError
	if !errors.As(err, &pe) {
		t.Errorf("bolt opened a round on acme: %v", err)
	}
	exClient := &federation.Client{Key: jn.keys["exchange"], Now: time.Now, Window: time.Minute}
	acmeFromEx := jn.peer(t, "exchange", "acme")
	env.Principal = federation.Principal{Name: d.Analyst, Org: "exchange", Region: "eu"}
	var opened map[string]any
	if _, _, err := exClient.Post(context.Background(), acmeFromEx, fedjob.PathOpen, env, &opened); err != nil {
		t.Fatalf("the coordinator's open: %v", err)
	}
	step := func(phase string, payload []byte) *federation.PeerError {
		e := federation.Envelope{Principal: env.Principal, Purpose: env.Purpose, Op: "secagg.step", Params: []any{strings.Repeat("00", 16), phase}, Payload: payload}
		var out map[string]any
		_, _, err := exClient.Post(context.Background(), acmeFromEx, fedjob.PathStep, e, &out)
		var pe *federation.PeerError
		errors.As(err, &pe)
		return pe
	}
	if pe := step("unmask", nil); pe == nil || pe.Rule != "secagg.phase" {
		t.Errorf("a step out of order: %v", pe)
	}
	if pe := step("share", []byte("garbage")); pe == nil || pe.Rule != "secagg.protocol_message" {
		t.Errorf("a malformed step: %v", pe)
	}
	if pe := step("share", nil); pe == nil || pe.Rule != "secagg.session" {
		t.Errorf("a step after the round ended: %v", pe)
	}
	n, _ := jn.nodes["acme"].node.Store.Size(context.Background())
	rules := map[string]int{}
	for i := range n {
		if e := lastEntryAt(t, jn.nodes["acme"], i); e.Decision == "deny" {
			rules[e.Event+" "+e.Rule]++
		}
	}
	for _, want := range []string{"AL1901W job.coordinator", "AL1902W secagg.phase", "AL1902W secagg.protocol_message", "AL1902W secagg.session"} {
		if rules[want] == 0 {
			t.Errorf("acme's log has no %s (%v)", want, rules)
		}
	}
}

// TestJobBudgetRunsOut: a member's ledger pays each run until its budget
// cannot; then it refuses (job.budget), and below min_participants the
// round is refused with nothing revealed.
func TestJobBudgetRunsOut(t *testing.T) {
	d := demo.DemandDemo
	jn := startJobs(t, d, 2, func(dir string) {
		path := filepath.Join(dir, d.Job+".yaml")
		b, _ := os.ReadFile(path)
		os.WriteFile(path, []byte(strings.ReplaceAll(string(b), "{epsilon: 20, delta: 1e-6, period: 720h}", "{epsilon: 9, delta: 1e-6, period: 720h}")), 0o644)
	}, nil)
	runs := 0
	for ; runs < 10; runs++ {
		r := jn.run(t, d.Analyst, "demand_forecasting", jn.job)
		if r.Status != 200 {
			if r.Status != 503 || r.Error.Rule != "job.too_few_participants" || strings.Count(r.Error.Message, "job.budget") != 4 {
				t.Fatalf("run %d: %d %.300s", runs+1, r.Status, r.Body)
			}
			break
		}
	}
	// ε = 9 at δ = 1e-6 holds ρ ≈ 1.0: two runs of ρ = 0.5.
	if runs != 2 {
		t.Errorf("%d runs before the budget ran out, want 2", runs)
	}
	if e := entryOf(t, jn.nodes["acme"], "AL1901W"); e.Rule != "job.budget" {
		t.Errorf("acme's entry: %+v", e)
	}
}

// censusData encodes with s the rows of the FL demo's census CSVs that
// keep admits (nil: all).
func censusData(t *testing.T, s fl.Schema, keep func(row map[string]string) bool, paths ...string) fl.Data {
	var d fl.Data
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs[1:] {
			row := map[string]string{}
			for i, h := range recs[0] {
				row[h] = rec[i]
			}
			if keep == nil || keep(row) {
				x, y := s.Encode(row)
				d.X, d.Y = append(d.X, x), append(d.Y, y)
			}
		}
	}
	return d
}

// offices are the FL demo's members' census files under dir.
func offices(dir string) []string {
	var out []string
	for _, m := range demo.FLDemo.Members {
		out = append(out, filepath.Join(dir, m.Name, "data", "census.csv"))
	}
	return out
}

// TestFLDemoTrainsAcrossNodes: the FL demo's job (logistic regression,
// DP-SGD inside each office, 10 rounds) over three office nodes and the
// lab; one office approves with a row filter. The model scores the
// held-out fifth as well as DP allows (≥ 0.79, the majority class is
// 0.76); every round counts exactly the rows the owners admit; each
// office's log holds its ten contributions, each charged the round's ρ,
// and the privacy spent per office adds up.
func TestFLDemoTrainsAcrossNodes(t *testing.T) {
	d := demo.FLDemo
	jn := startJobs(t, d, 0, nil, []string{"selfemp", "public"})
	j, _ := fedjob.Parse(jn.job)
	if _, err := fedjob.Approve(filepath.Join(jn.dir, "private"), j, "private", jn.keys["private"], "age >= 30", time.Now()); err != nil {
		t.Fatal(err)
	}
	r := jn.run(t, d.Analyst, "research", jn.job)
	// Ten training rounds, the evaluation round, the end.
	if r.Status != 200 || len(r.events) != 12 || r.events[11].Model == nil || !r.events[10].Round.Evaluation || r.events[11].Score == nil {
		t.Fatalf("run: %d %.300s", r.Status, r.Body)
	}
	// private approved with age >= 30; its rows are the first office's.
	over30 := func(row map[string]string) bool { age, _ := strconv.Atoi(row["age"]); return age >= 30 }
	ps := offices(jn.dir)
	m := r.events[11].Model
	own := censusData(t, m.Schema, over30, ps[0])
	rest := censusData(t, m.Schema, nil, ps[1:]...)
	own.X, own.Y = append(own.X, rest.X...), append(own.Y, rest.Y...)
	admitted := int64(len(own.X))
	for _, e := range r.events[:11] {
		if e.Round.Rows != admitted || e.Round.Score == nil || len(e.Round.Survivors) != 3 {
			t.Fatalf("round %d: %d rows (the owners admit %d), score %v, survivors %v", e.Round.Round, e.Round.Rows, admitted, e.Round.Score, e.Round.Survivors)
		}
	}
	shape := fl.Model{Kind: m.Kind, Dim: m.Schema.Dim()}
	acc := shape.Score(m.Weights, censusData(t, m.Schema, nil, filepath.Join(jn.dir, "holdout.csv")))
	// The evaluation round measures the final model over the offices'
	// rows, noisily: it must be near the model's own score on those rows.
	final := *r.events[11].Score
	t.Logf("held-out accuracy %.4f; the evaluation round measured %.4f over the offices' rows (exactly %.4f)", acc, final, shape.Score(m.Weights, own))
	if acc < 0.79 {
		t.Errorf("held-out accuracy %.4f", acc)
	}
	if math.Abs(final-shape.Score(m.Weights, own)) > 0.01 {
		t.Errorf("the evaluation round measured %.4f, the final model scores %.4f on the offices' rows", final, shape.Score(m.Weights, own))
	}
	rho, evalRho := r.events[0].Round.Rho, r.events[10].Round.Rho
	for _, sp := range r.events[11].Privacy {
		if sp.Rounds != 11 || math.Abs(sp.Rho-10*rho-evalRho) > 1e-9 || !(evalRho > 0 && evalRho < rho/10) || !(sp.Epsilon > 0) {
			t.Errorf("privacy spent: %+v (ρ per round %g, evaluation %g)", sp, rho, evalRho)
		}
		h := jn.nodes[sp.Node]
		n, _ := h.node.Store.Size(context.Background())
		got := 0
		for i := range n {
			if e := lastEntryAt(t, h, i); e.Event == "AL1901I" && e.Extra["job_hash"] == j.Hash() && (e.Rho == rho || e.Rho == evalRho && e.Extra["evaluation"] == "true") {
				got++
				if sp.Node == "private" && e.Extra["row_filter"] != "age >= 30" {
					t.Errorf("private's entry does not name its row filter: %+v", e.Extra)
				}
			}
		}
		if got != 11 {
			t.Errorf("%s's log holds %d contributions, want 11 (ten rounds and the evaluation)", sp.Node, got)
		}
	}
}

// TestFLDemoAsSeparateProcesses runs the FL demo as its README says, with
// the real binary: four processes, the offices' approvals by the CLI, fl
// run writing the model, fl predict scoring the hold-out. Then one office
// is killed (SIGKILL) and the job runs again: the round completes with
// the two others (min_participants 2), naming the dead one; with a second
// killed, the run is refused and no sum is revealed.
func TestFLDemoAsSeparateProcesses(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	run := cliRunner(t, bin)
	d := demo.FLDemo
	run("demo", "fl", dir)
	jobFile := filepath.Join(dir, d.Job+".yaml")
	// Five rounds keep the test short; the approvals sign this version.
	b := mustRead(t, jobFile)
	os.WriteFile(jobFile, []byte(strings.Replace(string(b), "rounds: 10", "rounds: 5", 1)), 0o644)
	for _, m := range d.Members {
		run("fl", "approve", "--workspace", filepath.Join(dir, m.Name), jobFile)
	}
	nodes := append(append([]demo.JobNode{}, d.Members...), d.Coordinator)
	procs := map[string]*serveProc{}
	for _, n := range nodes {
		procs[n.Name] = startServe(t, bin, n.Name, filepath.Join(dir, n.Name), "")
	}
	for _, n := range nodes {
		for _, o := range nodes {
			if o.Name == n.Name {
				continue
			}
			args := []string{"peer", "add", "--workspace", filepath.Join(dir, n.Name), "--replace", "--name", o.Name, "--org", o.Name, "--region", "eu",
				"--url", procs[o.Name].peer, "--key", "@" + filepath.Join(dir, o.Name, ".airlock", "node.pub")}
			if o == d.Coordinator {
				args = append(args, "--represents", o.Name)
			}
			run(args...)
		}
	}
	token := strings.TrimSpace(run("token", "create", "--workspace", filepath.Join(dir, "lab"), "--principal", d.Analyst))
	model := filepath.Join(dir, "model.json")
	flRun := func() (string, error) {
		out, err := exec.Command(bin, "fl", "run", "--server", procs["lab"].http, "--token", token, "--out", model, jobFile).CombinedOutput()
		return string(out), err
	}
	var out string
	var err error
	for start := time.Now(); time.Since(start) < 20*time.Second; time.Sleep(300 * time.Millisecond) {
		if out, err = flRun(); err == nil {
			break
		}
	}
	if err != nil || strings.Count(out, "round ") != 5 || !strings.Contains(out, "final model: accuracy") || !strings.Contains(out, "privacy spent per member") || !strings.Contains(out, "model written to") {
		t.Fatalf("fl run: %v\n%s", err, out)
	}
	pred := run("fl", "predict", "--model", model, "--input", filepath.Join(dir, "holdout.csv"), "--summary")
	var acc float64
	// Above the majority class (0.754 on the hold-out) after five noisy rounds.
	if _, err := fmt.Sscanf(pred, "accuracy %f", &acc); err != nil || acc < 0.77 {
		t.Errorf("fl predict: %v\n%s", err, pred)
	}
	// An office's steward reads, from its own log, which rounds used its data.
	usage := run("fl", "usage", "--workspace", filepath.Join(dir, "private"), d.Job)
	if !strings.Contains(usage, "6 rounds of job salary-class read this node's data") || strings.Count(usage, "private,selfemp,public") != 6 {
		t.Errorf("fl usage:\n%s", usage)
	}
	procs["public"].cmd.Process.Kill()
	if out, err = flRun(); err != nil || strings.Count(out, "round ") != 5 || strings.Count(out, "dropped public: did not answer at open") != 6 {
		t.Errorf("fl run with public killed: %v\n%s", err, out)
	}
	procs["selfemp"].cmd.Process.Kill()
	if out, err = flRun(); err == nil || !strings.Contains(out, "job.too_few_participants") {
		t.Errorf("fl run with two killed: %v\n%s", err, out)
	}
}

// BenchmarkFLRoundAcrossNodes runs the FL demo's job (record-level
// DP-SGD in each office) over real nodes in one process — TLS peer
// requests, signed envelopes, each office's kernel op, ledger charge and
// audit entries, the coordinator's five phases — with 1 and with 5
// training rounds, each job ending with its evaluation round: the
// difference over 4 is one training round's cost.
func BenchmarkFLRoundAcrossNodes(b *testing.B) {
	d := demo.FLDemo
	for _, rounds := range []int{1, 5} {
		b.Run(fmt.Sprintf("rounds=%d", rounds), func(b *testing.B) {
			jn := startJobs(b, d, 0, func(dir string) {
				path := filepath.Join(dir, d.Job+".yaml")
				data, _ := os.ReadFile(path)
				text := strings.Replace(string(data), "rounds: 10", fmt.Sprintf("rounds: %d", rounds), 1)
				os.WriteFile(path, []byte(strings.ReplaceAll(text, "{epsilon: 4, delta: 1e-5, period: 720h}", "{epsilon: 1000, delta: 1e-5, period: 720h}")), 0o644)
			}, nil)
			for b.Loop() {
				if r := jn.run(b, d.Analyst, "research", jn.job); r.Status != 200 || len(r.events) != rounds+2 {
					b.Fatalf("run: %d %.300s", r.Status, r.Body)
				}
			}
		})
	}
}

// TestUnnoisedJobAndBadModels: an unnoised training job (every member in
// every round, as the job file requires) runs and reruns; a global model
// with a weight that is not finite (or beyond fedjob.MaxWeight) is
// refused before training.
func TestUnnoisedJobAndBadModels(t *testing.T) {
	d := demo.FLDemo
	jn := startJobs(t, d, 0, func(dir string) {
		path := filepath.Join(dir, d.Job+".yaml")
		b, _ := os.ReadFile(path)
		text := strings.Replace(string(b), "rounds: 10", "rounds: 1", 1)
		text = strings.Replace(text, "min_participants: 2", "min_participants: 3", 1)
		os.WriteFile(path, []byte(strings.Replace(text, "privacy: record", "privacy: none", 1)), 0o644)
	}, nil)
	for run := range 2 {
		if r := jn.run(t, d.Analyst, "research", jn.job); r.Status != 200 || len(r.events) != 3 || r.events[0].Round.Rho != 0 || r.events[2].Score == nil {
			t.Fatalf("run %d: %d %.300s", run+1, r.Status, r.Body)
		}
	}
	j, _ := fedjob.Parse(jn.job)
	plan := j.Plan()
	global := make([]float64, plan.Model.Size())
	global[0] = 1e300
	open, _ := json.Marshal(map[string]any{"job": jn.job, "round": 1, "round_id": make([]byte, 16), "global": global})
	env := federation.Envelope{Principal: federation.Principal{Name: d.Analyst, Org: "lab", Region: "eu"}, Purpose: "research", Op: "secagg.open", Payload: open}
	client := &federation.Client{Key: jn.keys["lab"], Now: time.Now, Window: time.Minute}
	var out map[string]any
	_, _, err := client.Post(context.Background(), jn.peer(t, "lab", "public"), fedjob.PathOpen, env, &out)
	var pe *federation.PeerError
	if !errors.As(err, &pe) || pe.Rule != "secagg.protocol_message" {
		t.Errorf("a global weight of 1e300: %v", err)
	}
}

// TestOtherModelsTrainAcrossNodes: the FL demo's offices train the other
// two models of a job file over the same nodes — a one-hidden-layer MLP
// for the salary class, and linear regression of age from the other
// columns — and the final models do what their kind is for on the
// hold-out: the MLP classifies above the majority class, the regression
// predicts age better than its mean.
func TestOtherModelsTrainAcrossNodes(t *testing.T) {
	d := demo.FLDemo
	variants := map[string]func(string) string{
		"mlp": func(job string) string {
			return strings.Replace(strings.Replace(job, "model: logistic", "model: mlp\n  hidden: 8", 1), "rounds: 10", "rounds: 4", 1)
		},
		"linear": func(job string) string {
			i, j := strings.Index(job, "  numeric:\n"), strings.Index(job, "  categorical:\n")
			job = job[:i] + job[j:]
			job = strings.Replace(job, "  label: salary_class\n  positive: \">50K\"\n", "  label: age\n  label_mean: 38.4\n  label_std: 13.1\n", 1)
			return strings.Replace(strings.Replace(job, "model: logistic", "model: linear", 1), "rounds: 10", "rounds: 4", 1)
		},
	}
	for name, edit := range variants {
		jn := startJobs(t, d, 0, func(dir string) {
			path := filepath.Join(dir, d.Job+".yaml")
			b, _ := os.ReadFile(path)
			os.WriteFile(path, []byte(edit(string(b))), 0o644)
		}, nil)
		r := jn.run(t, d.Analyst, "research", jn.job)
		if r.Status != 200 || len(r.events) != 6 || r.events[5].Model == nil || r.events[5].Score == nil {
			t.Fatalf("%s: %d %.300s", name, r.Status, r.Body)
		}
		m := r.events[5].Model
		shape := fl.Model{Kind: m.Kind, Dim: m.Schema.Dim(), Hidden: m.Hidden}
		score := shape.Score(m.Weights, censusData(t, m.Schema, nil, filepath.Join(jn.dir, "holdout.csv")))
		own := censusData(t, m.Schema, nil, offices(jn.dir)...)
		exact := shape.Score(m.Weights, own)
		t.Logf("%s: held-out score %.4f; the evaluation round measured %.4f over the offices' rows, exactly %.4f", name, score, *r.events[5].Score, exact)
		if !r.events[4].Round.Evaluation || math.Abs(*r.events[5].Score-exact) > 0.03 {
			t.Errorf("%s: the evaluation round measured %.4f, the final model scores %.4f on the offices' rows", name, *r.events[5].Score, exact)
		}
		switch name {
		case "mlp":
			if m.Kind != fl.MLP || len(m.Weights) != 8*(m.Schema.Dim()+1)+9 || score < 0.77 {
				t.Errorf("the MLP: %d weights, accuracy %.4f", len(m.Weights), score)
			}
		case "linear":
			// Mean squared error in standardised units: the mean scores about 1.
			if m.Kind != fl.Linear || score > 0.85 {
				t.Errorf("the regression's mean squared error %.4f on the standardised age", score)
			}
		}
	}
}
