package server_test

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
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
	"github.com/airlock-dev/airlock/internal/collab"
	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/workspace"
)

type cleanroom struct {
	*federationNet
	keys map[string]*federation.NodeKey
}

// startCleanroom writes the clean-room demo for n banks, has every bank
// sign the collaboration and approve its templates, and starts the nodes.
func startCleanroom(t *testing.T, n, rows int) *cleanroom {
	t.Helper()
	return startCleanroomWith(t, n, rows, nil)
}

// startCleanroomWith lets prepare change the written workspaces first.
func startCleanroomWith(t *testing.T, n, rows int, prepare func(dir string)) *cleanroom {
	t.Helper()
	dir := t.TempDir()
	if err := demo.InitCleanroom(dir, n, rows); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(dir)
	}
	cr := &cleanroom{federationNet: &federationNet{dir: dir, nodes: map[string]*harness{}}, keys: map[string]*federation.NodeKey{}}
	for _, b := range demo.CleanroomNodes[:n] {
		ws := filepath.Join(dir, b.Name)
		skey, vkey, err := audit.LoadOrCreateKey(filepath.Join(ws, ".airlock"), b.Name)
		if err != nil {
			t.Fatal(err)
		}
		cr.keys[b.Name], _ = federation.ParseSigner(skey, vkey)
		cr.sign(t, b.Name, "fraud_overlap_by_country", "flagged_amounts_by_country")
		h, err := startHarness(ws, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.stop)
		cr.nodes[b.Name] = h
	}
	for _, b := range demo.CleanroomNodes[:n] {
		cr.repoint(t, b.Name)
	}
	return cr
}

func (cr *cleanroom) sign(t *testing.T, node string, templates ...string) {
	t.Helper()
	ws := filepath.Join(cr.dir, node)
	c, err := collab.Load(ws, demo.CleanroomID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := collab.Sign(ws, c, cr.keys[node]); err != nil {
		t.Fatal(err)
	}
	for _, tpl := range templates {
		if _, err := collab.Approve(ws, c, tpl, cr.keys[node]); err != nil {
			t.Fatal(err)
		}
	}
}

type cleanAnswer struct {
	apiResponse
	Result collab.Answer `json:"result"`
}

func (cr *cleanroom) ask(t *testing.T, principal string, body map[string]any) cleanAnswer {
	t.Helper()
	if body["purpose"] == nil {
		body["purpose"] = "fraud_detection"
	}
	b, _ := json.Marshal(body)
	h := cr.nodes["partnerbank"]
	r := h.post(t, "/v1/collaborations/"+demo.CleanroomID+"/query", h.tokens[principal], b)
	var a cleanAnswer
	json.Unmarshal(r.Body, &a)
	a.apiResponse = r
	return a
}

// truth is the plain computation over both banks' files: per country of
// northbank's rows, the counterparties both flag (or, with minAmount ≥ 0,
// northbank flags and partnerbank has a transfer of at least minAmount),
// and partnerbank's summed amounts over them.
func (cr *cleanroom) truth(t *testing.T, minAmount float64) (map[string]int, map[string]float64) {
	read := func(node string) [][]string {
		f, err := os.Open(filepath.Join(cr.dir, node, "data", "transactions.csv"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rows, _ := csv.NewReader(f).ReadAll()
		return rows[1:]
	}
	north := map[string]string{}
	for _, r := range read("northbank") {
		if r[4] == "true" {
			north[r[0]] = r[2]
		}
	}
	kept := map[string]bool{}
	sums := map[string]float64{}
	for _, r := range read("partnerbank") {
		amt, _ := strconv.ParseFloat(r[3], 64)
		if (minAmount < 0 && r[4] == "true") || (minAmount >= 0 && amt >= minAmount) {
			kept[r[0]] = true
			sums[r[0]] += amt
		}
	}
	counts, amounts := map[string]int{}, map[string]float64{}
	for iban, country := range north {
		if kept[iban] {
			counts[country]++
			amounts[country] += math.Min(math.Round(sums[iban]), 20000)
		}
	}
	return counts, amounts
}

func entryOf(t *testing.T, h *harness, code string) audit.Entry {
	t.Helper()
	n, _ := h.node.Store.Size(context.Background())
	for i := n; i > 0; i-- {
		e := lastEntryAt(t, h, i-1)
		if e.Event == code {
			return e
		}
	}
	t.Fatalf("no %s entry", code)
	return audit.Entry{}
}

// TestCleanroomOverlapAndIntersectionSum: two real nodes answer the
// template queries by the private join; the noisy counts and sums are
// near the plain join, and both logs record the query with the
// collaboration and template hashes.
func TestCleanroomOverlapAndIntersectionSum(t *testing.T) {
	cr := startCleanroom(t, 2, 3000)
	a := cr.ask(t, "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country"})
	if a.Status != 200 {
		t.Fatalf("overlap: %d %.300s", a.Status, a.Body)
	}
	counts, _ := cr.truth(t, -1)
	// Each bank adds σ² = 3 for ε = 1 (ρ split in three): sd ≈ 2.45.
	checkCells(t, a.Result, counts, nil, 15, 0)
	c, _ := collab.Load(filepath.Join(cr.dir, "northbank"), demo.CleanroomID)
	tpl := c.Template("fraud_overlap_by_country")
	for node, code := range map[string]string{"partnerbank": share.EventCode(share.OpCollabQuery, share.Run, true), "northbank": share.EventCode(share.OpCollabJoin, share.Run, true)} {
		e := entryOf(t, cr.nodes[node], code)
		if e.Extra["collaboration_hash"] != c.Hash() || e.Extra["template_hash"] != tpl.Hash() || e.Extra["querier"] != "fraud@partnerbank" || e.Extra["receivers"] != "partnerbank" {
			t.Errorf("%s's entry: %+v", node, e.Extra)
		}
		if e.Rho <= 0 {
			t.Errorf("%s charged nothing", node)
		}
	}

	// partnerbank's amounts over the counterparties northbank flags, by
	// northbank's country: partnerbank's items are expanded over countries.
	a = cr.ask(t, "fraud@partnerbank", map[string]any{"template": "flagged_amounts_by_country", "params": []any{500}})
	if a.Status != 200 {
		t.Fatalf("intersection-sum: %d %.300s", a.Status, a.Body)
	}
	counts, amounts := cr.truth(t, 500)
	// sums: Δ = 20000, ρ/4 per statistic each side: sd ≈ 40000·√2
	checkCells(t, a.Result, counts, amounts, 18, 6*40000*math.Sqrt2)

	// From its own log, northbank shows both uses were templates it approved.
	nb := cr.nodes["northbank"].node
	size, _ := nb.Store.Size(context.Background())
	leaves, _ := nb.Store.Leaves(context.Background(), 0, size)
	var entries []audit.Entry
	for _, l := range leaves {
		e, _ := audit.ParseEntry(l)
		entries = append(entries, e)
	}
	st, _ := collab.ReadStatement(filepath.Join(cr.dir, "northbank"), demo.CleanroomID, "northbank")
	uses := collab.Usage(entries, 0, c, st, c.Member("northbank"))
	if len(uses) != 2 || uses[0].Verdict != collab.UseApproved || uses[1].Verdict != collab.UseApproved || uses[1].Template != "flagged_amounts_by_country" || uses[0].Role != "contributed" {
		t.Errorf("northbank's usage: %+v", uses)
	}
	// Had it withdrawn its approval, the same log would say so.
	st.Approvals = st.Approvals[:0]
	if uses := collab.Usage(entries, 0, c, st, c.Member("northbank")); len(uses) != 2 || uses[0].Verdict != collab.UseUnapproved {
		t.Errorf("usage without approvals: %+v", uses)
	}
}

func checkCells(t *testing.T, a collab.Answer, counts map[string]int, amounts map[string]float64, countTol, sumTol float64) {
	t.Helper()
	if len(a.Rows) == 0 {
		t.Fatalf("no rows released: %+v", a)
	}
	seen := 0
	for _, r := range a.Rows {
		country := r[0].(string)
		n := r[1].(float64)
		if math.Abs(n-float64(counts[country])) > countTol {
			t.Errorf("%s: count %v, plain join %d", country, n, counts[country])
		}
		if amounts != nil && math.Abs(r[2].(float64)-amounts[country]) > sumTol {
			t.Errorf("%s: sum %v, plain join %v", country, r[2], amounts[country])
		}
		seen++
	}
	big := 0
	for _, n := range counts {
		if float64(n) > float64(a.Threshold)+countTol {
			big++
		}
	}
	if seen < big {
		t.Errorf("%d groups released, %d are well above the threshold", seen, big)
	}
}

// TestCleanroomRefusals: every refusal names its rule, is audited on the
// node that decided it, and releases nothing.
func TestCleanroomRefusals(t *testing.T) {
	cr := startCleanroom(t, 2, 600)
	sql := "SELECT a.country, count(*) FROM northbank.transactions a JOIN partnerbank.transactions b ON a.counterparty_iban = b.counterparty_iban GROUP BY a.country"
	for _, c := range []struct {
		name, principal string
		body            map[string]any
		status          int
		rule            string
	}{
		{"custom rule without a template", "fraud@partnerbank", map[string]any{"sql": sql}, 403, "collab.template_required"},
		{"not a querier", "steward@partnerbank", map[string]any{"template": "fraud_overlap_by_country"}, 403, "collab.querier"},
		{"wrong purpose", "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country", "purpose": "marketing"}, 403, "collab.purpose"},
		{"no such template", "fraud@partnerbank", map[string]any{"template": "everything"}, 403, "collab.template"},
		{"join on a non-key column", "fraud@partnerbank", map[string]any{"sql": strings.Replace(sql, "a.counterparty_iban = b.counterparty_iban", "a.merchant = b.counterparty_iban", 1)}, 422, "collab.join_key"},
	} {
		a := cr.ask(t, c.principal, c.body)
		if a.Status != c.status || a.Error.Rule != c.rule {
			t.Errorf("%s: %d %s, want %d %s (%.300s)", c.name, a.Status, a.Error.Rule, c.status, c.rule, a.Body)
		}
		if e := lastEntry(t, cr.nodes["partnerbank"]); e.Decision != "deny" || e.Rule != c.rule {
			t.Errorf("%s: audited as %+v", c.name, e)
		}
	}

	// A member without can_query, on its own node.
	nb := cr.nodes["northbank"]
	body, _ := json.Marshal(map[string]any{"template": "fraud_overlap_by_country", "purpose": "fraud_detection"})
	if r := nb.post(t, "/v1/collaborations/"+demo.CleanroomID+"/query", nb.tokens["steward@northbank"], body); r.Status != 403 || r.Error.Rule != "collab.cannot_query" {
		t.Errorf("member without can_query: %d %.300s", r.Status, r.Body)
	}
	if e := lastEntry(t, nb); e.Rule != "collab.cannot_query" {
		t.Errorf("northbank audited %+v", e)
	}
	// No such collaboration on the node.
	if r := nb.post(t, "/v1/collaborations/other/query", nb.tokens["steward@northbank"], body); r.Status != 404 || r.Error.Rule != "collab.unknown" {
		t.Errorf("unknown collaboration: %d %.300s", r.Status, r.Body)
	}

	// Partnerbank has not signed (its statement is gone): not in force.
	pst := filepath.Join(collab.Dir(filepath.Join(cr.dir, "partnerbank")), demo.CleanroomID+".partnerbank.json")
	os.Rename(pst, pst+".away")
	if a := cr.ask(t, "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country"}); a.Error.Rule != "collab.unsigned" {
		t.Errorf("unsigned: %d %.300s", a.Status, a.Body)
	}
	os.Rename(pst+".away", pst)

	// A template northbank has not approved.
	ws := filepath.Join(cr.dir, "northbank")
	st, _ := collab.ReadStatement(ws, demo.CleanroomID, "northbank")
	st.Approvals = nil
	b, _ := json.Marshal(st)
	os.WriteFile(filepath.Join(collab.Dir(ws), demo.CleanroomID+".northbank.json"), b, 0o644)
	if a := cr.ask(t, "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country"}); a.Error.Rule != "collab.template_unapproved" {
		t.Errorf("unapproved template: %d %.300s", a.Status, a.Body)
	}
	cr.sign(t, "northbank", "fraud_overlap_by_country")

	// Northbank changes its copy (a comment is a change): its node refuses
	// to contribute under a hash nobody signed, and says so.
	file := filepath.Join(collab.Dir(ws), demo.CleanroomID+".yaml")
	orig, _ := os.ReadFile(file)
	os.WriteFile(file, append(append([]byte{}, orig...), "# edited\n"...), 0o644)
	if a := cr.ask(t, "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country"}); a.Error.Rule != "collab.stale" {
		t.Errorf("stale copy: %d %.300s", a.Status, a.Body)
	}
	if e := lastEntry(t, cr.nodes["northbank"]); e.Event != share.EventCode(share.OpCollabJoin, share.Run, false) || e.Rule != "collab.stale" {
		t.Errorf("northbank audited the stale request as %+v", e)
	}
	os.WriteFile(file, orig, 0o644)
	if a := cr.ask(t, "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country"}); a.Status != 200 {
		t.Fatalf("restored: %d %.300s", a.Status, a.Body)
	}

	// A step of a session that is not open (a replay of a finished one,
	// or a forgery): refused and audited by northbank.
	env := federation.Envelope{Principal: federation.Principal{Name: "fraud@partnerbank", Org: "partnerbank", Region: "eu"}, Purpose: "fraud_detection",
		Op: "collab.step", Params: []any{hex.EncodeToString(make([]byte, 16)), "finish"}}
	var out any
	_, _, err := cr.nodes["partnerbank"].node.Peers.Post(context.Background(), cr.peer(t, "partnerbank", "northbank"), collab.PathStep, env, &out)
	var pe *federation.PeerError
	if !errors.As(err, &pe) || pe.Rule != "collab.session" {
		t.Errorf("step without a session: %v", err)
	}
	if e := lastEntry(t, cr.nodes["northbank"]); e.Event != share.EventCode(share.OpCollabStep, share.Run, false) {
		t.Errorf("northbank audited the stray step as %+v", e)
	}

	// Northbank leaves: at once, no query uses its data.
	c, _ := collab.Load(ws, demo.CleanroomID)
	if _, err := collab.Leave(ws, c, cr.keys["northbank"], cr.nodes["northbank"].node.Kernel.Now()); err != nil {
		t.Fatal(err)
	}
	if a := cr.ask(t, "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country"}); a.Error.Rule != "collab.member_left" || len(a.Result.Rows) != 0 {
		t.Errorf("after leave: %d %.300s", a.Status, a.Body)
	}

	// A member offline: nothing partial, a clear refusal.
	cr.nodes["northbank"].stop()
	if a := cr.ask(t, "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country"}); a.Error.Rule != "collab.member_unreachable" {
		t.Errorf("offline member: %d %.300s", a.Status, a.Body)
	}
}

// TestCleanroomThreeMembers: a collaboration of three banks is in force
// only with all three signatures; the query joins two of them; when the
// third leaves, the collaboration stops for everyone.
func TestCleanroomThreeMembers(t *testing.T) {
	cr := startCleanroomWith(t, 3, 600, func(dir string) {
		// a principal of an org that is not a member, on a member's node
		f, _ := os.OpenFile(filepath.Join(dir, "partnerbank", "principals.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("  - {name: spy@outsider, org: outsider, roles: [analyst], country: DE, region: eu, clearance: high}\n")
		f.Close()
	})
	if a := cr.ask(t, "spy@outsider", map[string]any{"template": "fraud_overlap_by_country"}); a.Status != 403 || a.Error.Rule != "collab.not_member" {
		t.Errorf("non-member: %d %.300s", a.Status, a.Body)
	}
	if a := cr.ask(t, "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country"}); a.Status != 200 {
		t.Fatalf("three members: %d %.300s", a.Status, a.Body)
	}
	ws := filepath.Join(cr.dir, "eastbank")
	c, _ := collab.Load(ws, demo.CleanroomID)
	collab.Leave(ws, c, cr.keys["eastbank"], cr.nodes["eastbank"].node.Kernel.Now())
	if a := cr.ask(t, "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country"}); a.Error.Rule != "collab.member_left" {
		t.Errorf("third member left: %d %.300s", a.Status, a.Body)
	}
}

// TestCleanroomHiddenRecordPair: two worlds that differ in one hidden
// record — one counterparty northbank flags that partnerbank also flags —
// give answers of the same shape, status and groups, whose counts differ
// only through the noise: the values of both worlds overlap.
func TestCleanroomHiddenRecordPair(t *testing.T) {
	const queries = 8 // of the ~10 the demo's ε = 20, δ = 10⁻⁶ budget pays at ε = 1
	var worlds [2][]float64
	var country string
	for w := range 2 {
		cr := startCleanroomWith(t, 2, 1500, func(dir string) {
			if w == 0 {
				return
			}
			// a counterparty partnerbank flags and northbank does not have
			north, _ := os.ReadFile(filepath.Join(dir, "northbank", "data", "transactions.csv"))
			f, _ := os.Open(filepath.Join(dir, "partnerbank", "data", "transactions.csv"))
			rows, _ := csv.NewReader(f).ReadAll()
			f.Close()
			for _, r := range rows[1:] {
				if r[4] == "true" && !strings.Contains(string(north), r[0]) && r[2] == "DE" {
					country = r[2]
					north = append(north, []byte(r[0]+",m01,"+r[2]+",100.00,true\n")...)
					os.WriteFile(filepath.Join(dir, "northbank", "data", "transactions.csv"), north, 0o644)
					return
				}
			}
			t.Fatal("no candidate hidden record")
		})
		for range queries {
			a := cr.ask(t, "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country"})
			if a.Status != 200 || strings.Join(a.Result.Columns, ",") != "country,counterparties" {
				t.Fatalf("world %d: %d %.300s", w, a.Status, a.Body)
			}
			for _, r := range a.Result.Rows {
				if r[0] == "DE" {
					worlds[w] = append(worlds[w], r[1].(float64))
				}
			}
		}
		if w == 0 {
			// The budget ends the series: a clear refusal, no answer.
			var last cleanAnswer
			for range 5 {
				if last = cr.ask(t, "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country"}); last.Status != 200 {
					break
				}
			}
			if last.Status != 429 || last.Error.Rule != "collab.budget" || len(last.Result.Rows) != 0 {
				t.Errorf("past the budget: %d %.300s", last.Status, last.Body)
			}
		}
	}
	if country != "DE" {
		t.Fatal("the hidden record was not added")
	}
	for w, v := range worlds {
		if len(v) < queries*3/4 {
			t.Fatalf("world %d released DE in %d of %d answers", w, len(v), queries)
		}
		if slices.Min(v) == slices.Max(v) {
			t.Errorf("world %d's DE count is the same every time (%v): no noise", w, v[0])
		}
	}
	// Overlapping ranges: no answer of either world is outside what the
	// other world also produced (up to the noise spread).
	if slices.Max(worlds[0]) < slices.Min(worlds[1]) || slices.Max(worlds[1]) < slices.Min(worlds[0]) {
		t.Errorf("the worlds' DE counts do not overlap: %v vs %v", worlds[0], worlds[1])
	}
}

// TestCleanroomDemoAsSeparateProcesses runs the clean-room demo as its
// README says, with the real binary: two processes, each bank signs and
// approves with the CLI, peers re-pinned to the ephemeral ports, and the
// fraud analyst's template query through `airlock collab query`.
func TestCleanroomDemoAsSeparateProcesses(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	run := cliRunner(t, bin)
	run("demo", "cleanroom", "--rows", "1500", dir)
	banks := demo.CleanroomNodes[:2]
	for _, b := range banks {
		ws := filepath.Join(dir, b.Name)
		run("collab", "sign", "--workspace", ws, demo.CleanroomID)
		run("collab", "approve", "--workspace", ws, demo.CleanroomID, "fraud_overlap_by_country")
	}
	procs := map[string]*serveProc{}
	for _, b := range banks {
		procs[b.Name] = startServe(t, bin, b.Name, filepath.Join(dir, b.Name), "")
	}
	for _, b := range banks {
		for _, o := range banks {
			if o.Name != b.Name {
				run("peer", "add", "--workspace", filepath.Join(dir, b.Name), "--replace", "--name", o.Name, "--org", o.Name, "--region", o.Region,
					"--url", procs[o.Name].peer, "--key", "@"+filepath.Join(dir, o.Name, ".airlock", "node.pub"))
			}
		}
	}
	token := strings.TrimSpace(run("token", "create", "--workspace", filepath.Join(dir, "partnerbank"), "--principal", "fraud@partnerbank"))
	var out []byte
	var err error
	for start := time.Now(); time.Since(start) < 20*time.Second; time.Sleep(300 * time.Millisecond) {
		out, err = exec.Command(bin, "collab", "query", "--server", procs["partnerbank"].http, "--token", token, "--json",
			"--template", "fraud_overlap_by_country", demo.CleanroomID).CombinedOutput()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("collab query: %v\n%s", err, out)
	}
	var a struct {
		Result collab.Answer `json:"result"`
	}
	if err := json.Unmarshal(out, &a); err != nil || len(a.Result.Rows) == 0 || a.Result.Template != "fraud_overlap_by_country" {
		t.Fatalf("answer: %v\n%s", err, out)
	}
	// The table form names the collaboration and its hash.
	text := run("collab", "query", "--server", procs["partnerbank"].http, "--token", token, "--template", "fraud_overlap_by_country", demo.CleanroomID)
	if !strings.Contains(text, "country") || !strings.Contains(text, "collaboration fraud-consortium") {
		t.Errorf("table output:\n%s", text)
	}
	// Northbank's steward checks, from its own log, what its data was used for.
	usage := run("collab", "usage", "--workspace", filepath.Join(dir, "northbank"), demo.CleanroomID)
	if strings.Count(usage, "approved template") != 2 || !strings.Contains(usage, "fraud@partnerbank") {
		t.Errorf("collab usage:\n%s", usage)
	}
}

const attackJoin = "FROM partnerbank.transactions a JOIN eastbank.transactions b ON a.counterparty_iban = b.counterparty_iban"

// TestCleanroomFilterErrorIsNoOracle (found in the attack round): an
// ill-typed condition (a text column used as a boolean, a text column
// compared with a decimal) would make the partner's engine fail per row,
// only if some row passed the conditions before it — an exact answer to
// "does the partner hold such a row". Each member checks its side's
// conditions against its column types before reading anything, so both
// worlds get the same refusal, naming collab.filter.
func TestCleanroomFilterErrorIsNoOracle(t *testing.T) {
	cr := startCleanroom(t, 3, 600)
	q := func(where string) cleanAnswer {
		return cr.ask(t, "fraud@partnerbank", map[string]any{"sql": "SELECT count(*) " + attackJoin + " WHERE " + where})
	}
	none := q("b.amount > 1000000 AND b.merchant") // no eastbank row has amount > 10^6
	some := q("b.amount > 1 AND b.merchant")       // every eastbank row does
	if none.Status != some.Status || none.Error.Rule != some.Error.Rule {
		t.Errorf("the outcome depends on eastbank's rows: amount>10^6 -> %d %q, amount>1 -> %d %q",
			none.Status, none.Error.Rule, some.Status, some.Error.Rule)
	}
	for _, w := range []string{"b.merchant", "b.country", "b.merchant = b.amount"} {
		if a := q(w); a.Error.Rule != "collab.filter" {
			t.Errorf("ill-typed filter %q reached eastbank's engine: %d %q", w, a.Status, a.Error.Rule)
		}
	}
}

// cutProxy forwards TCP to a node and cuts every connection, and accepts
// no more, once the node has sent more than limit bytes: the node going
// away mid-protocol.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	sent  int
	limit int
	conns []net.Conn
	cut   bool
}

func startCutProxy(t *testing.T, target string, limit int) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, limit: limit}
	t.Cleanup(func() { p.cutAll() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go io.Copy(s, c)
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						p.mu.Lock()
						p.sent += n
						over := p.sent > p.limit
						p.mu.Unlock()
						if over {
							p.cutAll()
							return
						}
						c.Write(buf[:n])
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *cutProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

// TestCleanroomPartnerGoneMidProtocol: northbank accepts the session (and
// charges its budget) and then disappears while answering: the querier
// gets a clear refusal naming the rule, nothing is released, and both
// nodes' logs hold the outcome.
func TestCleanroomPartnerGoneMidProtocol(t *testing.T) {
	cr := startCleanroom(t, 2, 1500)
	target := strings.TrimPrefix(cr.nodes["northbank"].peerURL, "https://")
	proxy := startCutProxy(t, target, 24<<10) // past the handshake and the statements, inside the open answer
	ws := filepath.Join(cr.dir, "partnerbank")
	b, _ := os.ReadFile(filepath.Join(ws, workspace.PeersFile))
	peers, _ := workspace.ParsePeers(b)
	for _, p := range peers {
		if p.Name == "northbank" {
			p.URL = "https://" + proxy.ln.Addr().String()
		}
	}
	workspace.WritePeers(ws, peers)
	if err := cr.nodes["partnerbank"].node.Reload(); err != nil {
		t.Fatal(err)
	}
	a := cr.ask(t, "fraud@partnerbank", map[string]any{"template": "fraud_overlap_by_country"})
	if a.Status != 503 || a.Error.Rule != "collab.member_unreachable" || len(a.Result.Rows) != 0 || !strings.Contains(a.Error.Message, "nothing was released") {
		t.Fatalf("partner gone: %d %.300s", a.Status, a.Body)
	}
	proxy.mu.Lock()
	cut := proxy.cut
	proxy.mu.Unlock()
	if !cut {
		t.Fatal("the proxy never cut the partner off")
	}
	if e := lastEntry(t, cr.nodes["partnerbank"]); e.Decision != "deny" || e.Rule != "collab.member_unreachable" || e.RowsReturned != 0 {
		t.Errorf("partnerbank audited %+v", e)
	}
	// northbank decided and recorded its side before it went away.
	if e := entryOf(t, cr.nodes["northbank"], share.EventCode(share.OpCollabJoin, share.Run, true)); e.Extra["querier"] != "fraud@partnerbank" {
		t.Errorf("northbank's entry: %+v", e.Extra)
	}
}
