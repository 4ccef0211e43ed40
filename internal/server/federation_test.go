package server_test

import (
	"database/sql"
	"errors"
	"fmt"

	"context"
	"crypto/tls"
	"encoding/json"
	"golang.org/x/mod/sumdb/note"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/cli"
	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/jsonschema"
	"github.com/airlock-dev/airlock/internal/sqlop"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// federationNet is the federation demo's four nodes in this process, on
// loopback mutual TLS with ephemeral ports.
type federationNet struct {
	dir   string
	nodes map[string]*harness
}

const fedSQL = "SELECT diagnosis, count(*), avg(cost) FROM visits GROUP BY diagnosis"

// startFederation writes the demo (rows visits per hospital), lets
// prepare edit the workspaces, starts every node, and points each peers
// file at the others' actual addresses.
func startFederation(t testing.TB, rows int, prepare func(dir string)) *federationNet {
	t.Helper()
	dir := t.TempDir()
	if err := demo.InitFederation(dir, rows); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(dir)
	}
	f := &federationNet{dir: dir, nodes: map[string]*harness{}}
	for _, n := range demo.FederationNodes {
		h, err := startHarness(filepath.Join(dir, n.Name), "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.stop)
		f.nodes[n.Name] = h
	}
	for _, n := range demo.FederationNodes {
		f.repoint(t, n.Name)
	}
	return f
}

// repoint rewrites a node's peers file with the others' real URLs.
func (f *federationNet) repoint(t testing.TB, node string) {
	t.Helper()
	ws := filepath.Join(f.dir, node)
	b, _ := os.ReadFile(filepath.Join(ws, workspace.PeersFile))
	peers, probs := workspace.ParsePeers(b)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	for _, p := range peers {
		if h := f.nodes[p.Name]; h != nil {
			p.URL = h.peerURL
		}
	}
	if err := workspace.WritePeers(ws, peers); err != nil {
		t.Fatal(err)
	}
	if err := f.nodes[node].node.Reload(); err != nil {
		t.Fatal(err)
	}
}

type fedAnswer struct {
	apiResponse
	Notes      []string                `json:"notes"`
	Access     string                  `json:"access"`
	Federation *sqlop.FederationReport `json:"federation"`
}

func (f *federationNet) ask(t *testing.T, principal, sql string) fedAnswer {
	t.Helper()
	r := f.nodes["research"].query(t, principal, "research", "", sql)
	var a fedAnswer
	json.Unmarshal(r.Body, &a)
	a.apiResponse = r
	return a
}

func (f *federationNet) peer(t *testing.T, from, name string) *workspace.Peer {
	t.Helper()
	p := f.nodes[from].node.Kernel.Snapshot().WS.Peers[name]
	if p == nil {
		t.Fatalf("%s has no peer %s", from, name)
	}
	return p
}

// lastEntry is a node's newest audit entry.
func lastEntry(t *testing.T, h *harness) audit.Entry {
	t.Helper()
	n, _ := h.node.Store.Size(context.Background())
	leaves, err := h.node.Store.Leaves(context.Background(), n-1, n)
	if err != nil || len(leaves) != 1 {
		t.Fatalf("last entry: %v", err)
	}
	e, err := audit.ParseEntry(leaves[0])
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestFederatedQueryCombinesWhatEachMemberReleases(t *testing.T) {
	f := startFederation(t, 4000, nil)
	a := f.ask(t, "analyst@research", fedSQL)
	if a.Status != 200 {
		t.Fatalf("federated query: %d %s", a.Status, a.Body)
	}
	// The answer is what the OpenAPI document says a query answers.
	var doc map[string]any
	json.Unmarshal(mustRead(t, "../httpapi/openapi.json"), &doc)
	v := jsonschema.Validator{Root: doc}
	var body any
	json.Unmarshal(a.Body, &body)
	schema := v.Resolve(map[string]any{"$ref": "#/components/schemas/QueryResponse"})
	for _, e := range v.Check(schema, body, "$") {
		t.Errorf("federated answer vs openapi.json: %s", e)
	}
	rep := a.Federation
	if rep == nil || rep.Partial || len(rep.Members) != 3 {
		t.Fatalf("federation report = %+v", rep)
	}
	access := map[string]string{}
	byNode := map[string]sqlop.MemberReport{}
	for _, m := range rep.Members {
		access[m.Node] = m.Access
		byNode[m.Node] = m
		// The receipt verifies offline against the pinned key, and names
		// the member's own audit entry, which recorded this request.
		if err := federation.VerifyReceipt(f.peer(t, "research", m.Node), m.Receipt); err != nil {
			t.Errorf("%s receipt: %v", m.Node, err)
		}
		e := lastEntryAt(t, f.nodes[m.Node], m.Receipt.AuditIndex)
		if e.Decision != "allow" || e.Channel != "peer" || e.Principal != "analyst@research" || e.Extra["peer"] != "research" || e.Extra["peer_request"] != a.RequestID {
			t.Errorf("%s entry %d = %+v, want the allowed peer request of analyst@research", m.Node, m.Receipt.AuditIndex, e)
		}
		if got := audit.LeafHash(mustCanonical(t, e)); string(got[:]) != string(m.Receipt.LeafHash) {
			t.Errorf("%s receipt leaf hash is not its entry's", m.Node)
		}
	}
	if access["stmary"] != "dp" || access["stjohn"] != "dp" || access["mercy"] != "aggregation" {
		t.Fatalf("member access = %v", access)
	}
	// Each DP member charged its own budget; the coordinator charged none.
	for _, n := range []string{"stmary", "stjohn"} {
		if dp := byNode[n].DP; dp == nil || dp.SpentEpsilon <= 0 {
			t.Errorf("%s spent nothing: %+v", n, dp)
		}
	}
	if ledger, _ := f.nodes["research"].node.Store.Ledger(context.Background()); len(ledger) != 0 {
		t.Errorf("the coordinator has ledger rows %v: members charge, never the coordinator", ledger)
	}
	if ledger, _ := f.nodes["mercy"].node.Store.Ledger(context.Background()); len(ledger) != 0 {
		t.Errorf("mercy (threshold rule) charged a budget: %v", ledger)
	}
	// Combined noise: variances add over the two DP members.
	var countNoise *sqlop.DPColumn
	for i := range rep.Noise {
		if rep.Noise[i].Column == "count" {
			countNoise = &rep.Noise[i]
		}
	}
	if countNoise == nil {
		t.Fatalf("no combined noise for count: %+v", rep.Noise)
	}
	var want float64
	for _, n := range []string{"stmary", "stjohn"} {
		for _, c := range byNode[n].DP.Columns {
			if c.Column == "m0" {
				want += c.Sigma * c.Sigma
			}
		}
	}
	if math.Abs(countNoise.Sigma-math.Sqrt(want)) > 1e-9 || countNoise.CI95 <= 0 {
		t.Errorf("combined count noise σ=%v ci=%v, want σ=%v", countNoise.Sigma, countNoise.CI95, math.Sqrt(want))
	}
	// The coordinator's entry names every member's entry.
	e := lastEntry(t, f.nodes["research"])
	for _, m := range rep.Members {
		if !strings.Contains(e.Extra["federation_members"], m.Node+":") {
			t.Errorf("coordinator entry %v does not name %s", e.Extra, m.Node)
		}
	}
	// Mercy releases only groups of at least 10 patients: every row it
	// contributed to is in its own answer, and no group appears that no
	// member released.
	if len(a.Rows) == 0 || len(rep.RowMembers) != len(a.Rows) {
		t.Fatalf("rows %d, row members %d", len(a.Rows), len(rep.RowMembers))
	}
	for i, ms := range rep.RowMembers {
		if len(ms) == 0 {
			t.Errorf("row %v has no member", a.Rows[i])
		}
	}
}

func lastEntryAt(t *testing.T, h *harness, idx uint64) audit.Entry {
	t.Helper()
	leaves, err := h.node.Store.Leaves(context.Background(), idx, idx+1)
	if err != nil || len(leaves) != 1 {
		t.Fatalf("entry %d: %v", idx, err)
	}
	e, err := audit.ParseEntry(leaves[0])
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// The coordinator combines exactly: with every member under a threshold
// rule and no noise, the federated count equals the sum of each
// member's own count, group by group.
func TestFederatedCountsAreTheMembersSums(t *testing.T) {
	f := startFederation(t, 3000, func(dir string) {
		for _, n := range []string{"stmary", "stjohn"} {
			ag := filepath.Join(dir, n, "agreements", n+"-research.yaml")
			b, _ := os.ReadFile(filepath.Join(dir, "mercy", "agreements", "mercy-research.yaml"))
			s := strings.ReplaceAll(string(b), "mercy", n)
			s = strings.Replace(s, "egress:\n  - {to: [eu], outputs: [aggregate]}\n", "", 1)
			os.WriteFile(ag, []byte(s), 0o644)
		}
	})
	a := f.ask(t, "analyst@research", "SELECT sex, count(*) AS n, sum(cost) AS total FROM visits WHERE diagnosis <> 'I10' GROUP BY sex ORDER BY n DESC")
	if a.Status != 200 || len(a.Rows) != 2 {
		t.Fatalf("%d %s", a.Status, a.Body)
	}
	want := map[string]float64{}
	for _, n := range []string{"stmary", "stjohn", "mercy"} {
		h := f.nodes[n]
		r := h.query(t, "steward@"+n, "", "", "SELECT sex, count(*) FROM visits WHERE diagnosis <> 'I10' GROUP BY sex")
		if r.Status != 200 {
			t.Fatalf("%s steward: %s", n, r.Body)
		}
		for _, row := range r.Rows {
			want[row[0].(string)] += row[1].(float64)
		}
	}
	for _, row := range a.Rows {
		if got := row[1].(float64); got != want[row[0].(string)] {
			t.Errorf("sex %v: federated count %v, members' sum %v", row[0], got, want[row[0].(string)])
		}
	}
	if a.Rows[0][1].(float64) < a.Rows[1][1].(float64) {
		t.Errorf("ORDER BY n DESC not applied: %v", a.Rows)
	}
}

func TestFederatedRefusals(t *testing.T) {
	f := startFederation(t, 2000, nil)
	t.Run("residency: a us principal asking about eu data", func(t *testing.T) {
		a := f.ask(t, "visitor@research", fedSQL)
		if a.Status != 403 || a.Error.Rule != "federation.member" || !strings.Contains(a.Error.Message, "residency-destination") ||
			!strings.Contains(a.Error.Message, "stmary") || !strings.Contains(a.Error.Message, "stjohn") || strings.Contains(a.Error.Message, "mercy") {
			t.Fatalf("%d %s", a.Status, a.Body)
		}
		e := lastEntry(t, f.nodes["stmary"])
		if e.Decision != "deny" || e.Principal != "visitor@research" || !strings.Contains(e.Message, "residency-destination") {
			t.Errorf("stmary did not audit its residency refusal: %+v", e)
		}
	})
	t.Run("residency: us data leaves only under the agreement's egress", func(t *testing.T) {
		ag := filepath.Join(f.dir, "mercy", "agreements", "mercy-research.yaml")
		editWorkspaceFile(t, filepath.Join(f.dir, "mercy"), "agreements/mercy-research.yaml", "egress:\n  - {to: [eu], outputs: [aggregate]}\n", "")
		if err := f.nodes["mercy"].node.Reload(); err != nil {
			t.Fatal(err)
		}
		a := f.ask(t, "analyst@research", fedSQL)
		if a.Status != 403 || !strings.Contains(a.Error.Message, "member mercy refused") || !strings.Contains(a.Error.Message, "residency") {
			t.Fatalf("%d %s", a.Status, a.Body)
		}
		b, _ := os.ReadFile(ag)
		os.WriteFile(ag, []byte(strings.Replace(string(b), "rules:", "egress:\n  - {to: [eu], outputs: [aggregate]}\nrules:", 1)), 0o644)
		if err := f.nodes["mercy"].node.Reload(); err != nil {
			t.Fatal(err)
		}
		if a := f.ask(t, "analyst@research", fedSQL); a.Status != 200 {
			t.Fatalf("with egress back: %d %s", a.Status, a.Body)
		}
	})
	t.Run("a shape that needs unreleased values", func(t *testing.T) {
		for _, sql := range []string{
			"SELECT diagnosis, count(*) FROM visits GROUP BY diagnosis HAVING count(*) > 5",
			"SELECT count(DISTINCT patient_id) FROM visits",
			"SELECT patient_id FROM visits",
		} {
			if a := f.ask(t, "analyst@research", sql); a.Status != 422 || a.Error.Rule != "federation.shape" {
				t.Errorf("%s: %d %s", sql, a.Status, a.Body)
			}
		}
	})
	t.Run("a member that is down", func(t *testing.T) {
		f.nodes["mercy"].stop()
		start := time.Now()
		a := f.ask(t, "analyst@research", fedSQL)
		if a.Status != 503 || a.Error.Rule != "federation.member" || !strings.Contains(a.Error.Message, "member mercy is unreachable") {
			t.Fatalf("%d %s", a.Status, a.Body)
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("refusing took %v", time.Since(start))
		}
		if e := lastEntry(t, f.nodes["research"]); e.Decision != "deny" || !strings.Contains(e.Extra["federation_missing"], "mercy") {
			t.Errorf("coordinator entry = %+v", e)
		}
	})
	t.Run("a partial answer where the dataset allows it", func(t *testing.T) {
		editWorkspaceFile(t, filepath.Join(f.dir, "research"), "datasets/visits.yaml", "    timeout: 20s\n", "    timeout: 20s\n    partial: true\n")
		// Manifests load at start: restart the coordinator on its files.
		old := f.nodes["research"]
		old.stop()
		h, err := startHarness(filepath.Join(f.dir, "research"), "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.stop)
		f.nodes["research"] = h
		a := f.ask(t, "analyst@research", fedSQL)
		if a.Status != 200 || !a.Federation.Partial || len(a.Federation.Members) != 2 || len(a.Federation.Missing) != 1 || a.Federation.Missing[0].Node != "mercy" {
			t.Fatalf("%d %s", a.Status, a.Body)
		}
	})
}

// A stuck member holds the coordinator no longer than the member deadline.
func TestFederatedSlowMemberIsCutOff(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-stuck })}
	f := startFederation(t, 1000, func(dir string) {
		editWorkspaceFile(t, filepath.Join(dir, "research"), "datasets/visits.yaml", "    timeout: 20s\n", "    timeout: 2s\n")
	})
	// mercy's key, but a server that never answers: pinned TLS with a key
	// the test does not hold would fail the handshake, so impersonate
	// mercy's node with its own key file.
	key := loadNodeKey(t, filepath.Join(f.dir, "mercy"))
	cfg, _ := key.ServerTLS(time.Now())
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	f.nodes["mercy"].peerURL = "https://" + l.Addr().String()
	f.repoint(t, "research")
	start := time.Now()
	a := f.ask(t, "analyst@research", fedSQL)
	if a.Status != 503 || !strings.Contains(a.Error.Message, "member mercy did not answer before the deadline") {
		t.Fatalf("%d %s", a.Status, a.Body)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("a stuck member held the coordinator %v (deadline 2s)", took)
	}
}

func loadNodeKey(t *testing.T, ws string) *federation.NodeKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ws, ".airlock", "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Fields(string(b))
	k, err := federation.ParseSigner(parts[0], parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Attacks on the peer endpoint, from a client holding some key.
func TestPeerEndpointRefusesForgedReplayedAndMisaddressedRequests(t *testing.T) {
	f := startFederation(t, 1000, nil)
	stmary := f.nodes["stmary"]
	research := loadNodeKey(t, filepath.Join(f.dir, "research"))
	_, stmaryPub, _ := federation.ParseVerifier(f.peer(t, "research", "stmary").Key)
	env := func() federation.Envelope {
		now := time.Now().UTC()
		return federation.Envelope{From: "research", To: "stmary", Principal: federation.Principal{Name: "analyst@research", Org: "research", Region: "eu"},
			Purpose: "research", Op: "sql.query", SQL: "SELECT diagnosis AS k0, count(*) AS m0 FROM visits GROUP BY diagnosis",
			Nonce: federation.NewNonce(), IssuedAt: now, NotAfter: now.Add(time.Minute), RequestID: "test"}
	}
	send := func(key *federation.NodeKey, body any) (int, string) {
		t.Helper()
		cfg, _ := key.ClientTLS(time.Now(), stmaryPub)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		b, _ := json.Marshal(body)
		resp, err := c.Post(stmary.peerURL+"/peer/v1/query", "application/json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		rb, _ := io.ReadAll(resp.Body)
		var e struct{ Error struct{ Rule string } }
		json.Unmarshal(rb, &e)
		return resp.StatusCode, e.Error.Rule
	}
	seal := func(key *federation.NodeKey, e federation.Envelope) federation.SignedRequest {
		sr, err := key.Seal(e)
		if err != nil {
			t.Fatal(err)
		}
		return sr
	}
	// A valid request is answered once; its replay is refused.
	good := seal(research, env())
	if st, rule := send(research, good); st != 200 {
		t.Fatalf("valid request: %d %s", st, rule)
	}
	if st, rule := send(research, good); st != 401 || rule != "peer.replay" {
		t.Errorf("replay: %d %s", st, rule)
	}
	auditedRule := func(want string) {
		t.Helper()
		if e := lastEntry(t, stmary); e.Decision != "deny" || e.Rule != want || e.Event != "AL1600W" {
			t.Errorf("stmary's last entry = %s %s %s, want a peer refusal %s", e.Decision, e.Rule, e.Event, want)
		}
	}
	auditedRule("peer.replay")
	// A stranger's key: unknown peer (the TLS handshake works, the key is
	// not pinned), refused and audited.
	stranger := newNodeKey(t, "research")
	if st, rule := send(stranger, seal(stranger, env())); st != 401 || rule != "peer.unknown" {
		t.Errorf("unknown key: %d %s", st, rule)
	}
	auditedRule("peer.unknown")
	// A known peer's channel carrying an envelope signed by another key.
	if st, rule := send(research, seal(stranger, env())); st != 401 || rule != "peer.signature" {
		t.Errorf("forged signature: %d %s", st, rule)
	}
	// Tampering after signing.
	sr := seal(research, env())
	sr.Envelope = []byte(strings.Replace(string(sr.Envelope), "count(*)", "sum(cost)", 1))
	if st, rule := send(research, sr); st != 401 || rule != "peer.signature" {
		t.Errorf("tampered envelope: %d %s", st, rule)
	}
	// Impersonation: research signs as stjohn.
	e := env()
	e.From = "stjohn"
	if st, rule := send(research, seal(research, e)); st != 401 || rule != "peer.impersonation" {
		t.Errorf("impersonation: %d %s", st, rule)
	}
	// Addressed to another node (a request to stjohn relayed to stmary).
	e = env()
	e.To = "stjohn"
	if st, rule := send(research, seal(research, e)); st != 403 || rule != "peer.recipient" {
		t.Errorf("misaddressed: %d %s", st, rule)
	}
	// Expired, and a window too long.
	e = env()
	e.IssuedAt, e.NotAfter = time.Now().Add(-10*time.Minute), time.Now().Add(-9*time.Minute)
	if st, rule := send(research, seal(research, e)); st != 401 || rule != "peer.expired" {
		t.Errorf("expired: %d %s", st, rule)
	}
	e = env()
	e.NotAfter = e.IssuedAt.Add(24 * time.Hour)
	if st, rule := send(research, seal(research, e)); st != 401 || rule != "peer.window" {
		t.Errorf("long window: %d %s", st, rule)
	}
	// A peer acting for an org it may not represent.
	e = env()
	e.Principal.Org = "stjohn"
	if st, rule := send(research, seal(research, e)); st != 403 || rule != "peer.represent" {
		t.Errorf("foreign org: %d %s", st, rule)
	}
	auditedRule("peer.represent")
	// A principal without a region would be judged where the peer is.
	e = env()
	e.Principal.Region = ""
	if st, rule := send(research, seal(research, e)); st != 401 || rule != "peer.principal" {
		t.Errorf("no region: %d %s", st, rule)
	}
	// Not even when the peers file says so: no peer speaks for the org
	// that owns this node's data (its stewards read rows).
	editWorkspaceFile(t, filepath.Join(f.dir, "stmary"), workspace.PeersFile, "  org: research\n", "  org: research\n      represents: [research, stmary]\n")
	if err := stmary.node.Reload(); err != nil {
		t.Fatal(err)
	}
	e = env()
	e.Principal = federation.Principal{Name: "steward@stmary", Org: "stmary", Roles: []string{"steward"}, Region: "eu"}
	e.SQL = "SELECT name, ssn FROM visits LIMIT 1"
	if st, rule := send(research, seal(research, e)); st != 403 || rule != "peer.represent" {
		t.Errorf("acting for the owner: %d %s", st, rule)
	}
	// The coordinator side: a member whose TLS key is not the pinned one.
	peers := f.nodes["research"].node.Kernel.Snapshot().WS.Peers
	wrong := *peers["stjohn"]
	wrong.URL = f.nodes["stmary"].peerURL // stmary's endpoint, pinned as stjohn
	var out struct{}
	_, _, err := f.nodes["research"].node.Peers.Post(context.Background(), &wrong, "/peer/v1/query", federation.Envelope{}, &out)
	if pe, ok := err.(*federation.PeerError); !ok || pe.Rule != "federation.member_key" {
		t.Errorf("wrong peer key: %v", err)
	}
}

func newNodeKey(t *testing.T, name string) *federation.NodeKey {
	t.Helper()
	dir := t.TempDir()
	skey, vkey, err := audit.LoadOrCreateKey(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := federation.ParseSigner(skey, vkey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Witnessing: honest logs are cosigned by every peer; a log that shows
// one history to one witness and another to a second is caught by the
// second, from what the first cosigned.
func TestWitnessesCosignAndCatchAForkedLog(t *testing.T) {
	f := startFederation(t, 1000, nil)
	ctx := context.Background()
	if a := f.ask(t, "analyst@research", fedSQL); a.Status != 200 {
		t.Fatalf("%d %s", a.Status, a.Body)
	}
	for _, n := range []string{"research", "stjohn", "mercy"} {
		if errs := f.nodes[n].node.WitnessPeers(ctx); len(errs) > 0 {
			t.Fatalf("%s witnessing: %v", n, errs)
		}
	}
	stmary := f.nodes["stmary"]
	r := stmary.get(t, "/v1/audit/checkpoint/cosigned", stmary.tokens["auditor@stmary"])
	if r.Status != 200 {
		t.Fatalf("cosigned checkpoint: %d %s", r.Status, r.Body)
	}
	cp, by, err := federation.VerifyCosigned(r.Body, stmary.node.Verifier, stmary.node.Kernel.Snapshot().WS.Peers)
	if err != nil || len(by) != 3 || cp.Size == 0 {
		t.Fatalf("cosigned by %v (%v), size %v", by, err, cp)
	}
	// airlock audit verify checks the served history against the
	// checkpoint its peers cosigned, with their pinned keys.
	verify := func(quorum string) (int, string) {
		var out, errw strings.Builder
		code := cli.Main([]string{"audit", "verify", "--server", stmary.url, "--token", stmary.tokens["auditor@stmary"], "--pubkey", stmary.node.Verifier,
			"--peers", filepath.Join(f.dir, "stmary", workspace.PeersFile), "--quorum", quorum}, &out, &errw)
		return code, out.String() + errw.String()
	}
	if code, out := verify("3"); code != 0 || !strings.Contains(out, "cosigned by mercy, research, stjohn (3 of 3 peers") {
		t.Fatalf("audit verify --peers: %d %s", code, out)
	}
	if code, out := verify("4"); code != 1 || !strings.Contains(out, "3 valid cosignatures") {
		t.Errorf("audit verify with a quorum of 4: %d %s", code, out)
	}
	// A tampered cosignature is an error, not a silently missing one.
	bad := strings.Replace(string(r.Body), "— stjohn ", "— stjohn A", 1)
	if _, _, err := federation.VerifyCosigned([]byte(bad), stmary.node.Verifier, stmary.node.Kernel.Snapshot().WS.Peers); err == nil {
		t.Error("a corrupted cosignature verified")
	}

	// The fork: stmary's key serves tree X to research and tree Y to stjohn.
	skey := strings.Fields(string(mustRead(t, filepath.Join(f.dir, "stmary", ".airlock", "node.key"))))[0]
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	var x, y audit.Tree
	for i := 0; i < 40; i++ {
		x.Append(audit.LeafHash([]byte{byte(i)}))
		if i == 17 {
			y.Append(audit.LeafHash([]byte("rewritten")))
		} else {
			y.Append(audit.LeafHash([]byte{byte(i)}))
		}
	}
	_, stjohnKey, _ := federation.ParseVerifier(f.peer(t, "research", "stjohn").Key)
	treeFor := func(r *http.Request) *audit.Tree {
		if len(r.TLS.PeerCertificates) > 0 && stjohnKey.Equal(r.TLS.PeerCertificates[0].PublicKey) {
			return &y
		}
		return &x
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /peer/v1/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		tr := treeFor(r)
		root, _ := tr.Root(tr.Size())
		signed, _ := note.Sign(&note.Note{Text: audit.FormatCheckpoint(stmary.node.Audit.Origin(), tr.Size(), root)}, signer)
		json.NewEncoder(w).Encode(map[string]string{"checkpoint": string(signed)})
	})
	mux.HandleFunc("GET /peer/v1/consistency", func(w http.ResponseWriter, r *http.Request) {
		from, _ := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
		to, _ := strconv.ParseUint(r.URL.Query().Get("to"), 10, 64)
		hs, err := treeFor(r).ConsistencyProof(from, to)
		if err != nil {
			http.Error(w, `{"error":{"rule":"audit.range","message":"no"}}`, 400)
			return
		}
		var out [][]byte
		for _, h := range hs {
			out = append(out, h[:])
		}
		json.NewEncoder(w).Encode(map[string]any{"proof": out})
	})
	mux.HandleFunc("POST /peer/v1/cosignature", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) })
	key := loadNodeKey(t, filepath.Join(f.dir, "stmary"))
	cfg, _ := key.ServerTLS(time.Now())
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	defer srv.Close()
	// A fresh pair of witnesses that have not seen the real stmary.
	for _, n := range []string{"research", "stjohn", "mercy"} {
		db, ok := f.nodes[n].node.Store.(interface{ DB() *sql.DB })
		if !ok {
			t.Fatalf("store %T has no DB", f.nodes[n].node.Store)
		}
		if _, err := db.DB().Exec(`DELETE FROM witnessed WHERE origin = 'stmary'`); err != nil {
			t.Fatal(err)
		}
	}
	f.nodes["stmary"].peerURL = "https://" + l.Addr().String()
	f.repoint(t, "research")
	f.repoint(t, "stjohn")
	p := func(n string) *workspace.Peer { return f.peer(t, n, "stmary") }
	all := func(n string) []*workspace.Peer {
		var out []*workspace.Peer
		for _, q := range f.nodes[n].node.Kernel.Snapshot().WS.Peers {
			out = append(out, q)
		}
		return out
	}
	if err := f.nodes["research"].node.Witness.WitnessPeer(ctx, p("research"), all("research")); err != nil {
		t.Fatalf("research cosigning tree X: %v", err)
	}
	err = f.nodes["stjohn"].node.Witness.WitnessPeer(ctx, p("stjohn"), all("stjohn"))
	var fork *federation.ForkError
	if !errors.As(err, &fork) || !strings.Contains(fork.Reason, "two different trees of 40 entries") {
		t.Fatalf("stjohn witnessing tree Y: %v, want a fork", err)
	}
	e := lastEntry(t, f.nodes["stjohn"])
	if e.Decision != "deny" || e.Rule != "witness.fork" || e.Event != "AL1601W" || !strings.Contains(e.Message, "against what research cosigned") {
		t.Errorf("fork not audited: %+v", e)
	}
	// Both checkpoints are signed by stmary's key: evidence for anyone.
	for _, cp := range [][]byte{fork.A, fork.B} {
		if _, err := audit.ParseCheckpoint(cp, stmary.node.Verifier); err != nil {
			t.Errorf("evidence does not verify: %v", err)
		}
	}
	if v := metricValue(t, f.nodes["stjohn"].scrape(t, "auditor@stjohn"), "airlock_witness_forks_total"); v != 1 {
		t.Errorf("fork metric = %v", v)
	}
	// And a log that rewrites what a witness cosigned is caught by it alone.
	x = audit.Tree{}
	for i := 0; i < 41; i++ {
		x.Append(audit.LeafHash([]byte{byte(i + 1)}))
	}
	if err := f.nodes["research"].node.Witness.WitnessPeer(ctx, p("research"), nil); !errors.As(err, &fork) {
		t.Errorf("research on a rewritten, longer tree: %v, want a fork", err)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A member that answers a request with an answer (and a valid receipt)
// it gave to another question is refused by the coordinator.
func TestCoordinatorRefusesAnAnswerToAnotherRequest(t *testing.T) {
	f := startFederation(t, 1000, nil)
	research := f.nodes["research"].node
	var earlier json.RawMessage
	env := federation.Envelope{Principal: federation.Principal{Name: "analyst@research", Org: "research", Region: "eu"}, Purpose: "research", Op: "sql.query",
		SQL: "SELECT diagnosis AS k0, sum(cost) AS m0, count(cost) AS m1 FROM visits WHERE sex = 'F' GROUP BY diagnosis", RequestID: "earlier"}
	if _, _, err := research.Peers.Post(context.Background(), f.peer(t, "research", "mercy"), "/peer/v1/query", env, &earlier); err != nil {
		t.Fatal(err)
	}
	key := loadNodeKey(t, filepath.Join(f.dir, "mercy"))
	cfg, _ := key.ServerTLS(time.Now())
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(earlier) })}
	go srv.Serve(l)
	defer srv.Close()
	f.nodes["mercy"].peerURL = "https://" + l.Addr().String()
	f.repoint(t, "research")
	a := f.ask(t, "analyst@research", fedSQL) // same columns as the earlier answer
	if a.Status != 503 || !strings.Contains(a.Error.Message, "member mercy its receipt answers another request") {
		t.Fatalf("%d %s", a.Status, a.Body)
	}
}

// A cosignature line is stored as the log re-encodes it, and a bad one is
// refused and audited.
func TestCosignaturesAreCheckedAndReencoded(t *testing.T) {
	f := startFederation(t, 1000, nil)
	ctx := context.Background()
	stmary := f.nodes["stmary"]
	rk := loadNodeKey(t, filepath.Join(f.dir, "research"))
	signed, err := stmary.node.Audit.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	body, _, _ := strings.Cut(string(signed), "\n\n")
	line := rk.Cosign(body+"\n", time.Now())
	post := func(cos string) (int, string) {
		_, pub, _ := federation.ParseVerifier(stmary.node.Verifier)
		cfg, _ := rk.ClientTLS(time.Now(), pub)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		b, _ := json.Marshal(map[string]string{"checkpoint": string(signed), "cosignature": cos})
		resp, err := c.Post(stmary.peerURL+"/peer/v1/cosignature", "application/json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		rb, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(rb)
	}
	if st, b := post(strings.Replace(line, "— research ", "— research AAAA", 1)); st != 401 || !strings.Contains(b, "witness.cosignature") {
		t.Fatalf("bad cosignature: %d %s", st, b)
	}
	if e := lastEntry(t, stmary); e.Rule != "witness.cosignature" || e.Event != "AL1601W" {
		t.Errorf("refused cosignature not audited: %+v", e)
	}
	if st, b := post(line); st != 200 {
		t.Fatalf("valid cosignature: %d %s", st, b)
	}
	// Stray whitespace around a valid line is stored re-encoded, and the
	// served note verifies (this checkpoint is of the empty tree: a size
	// the log can be cosigned at too).
	if st, b := post("\n\n" + strings.TrimSuffix(line, "\n") + "  "); st != 200 {
		t.Fatalf("valid cosignature with stray whitespace: %d %s", st, b)
	}
	got, err := federation.CosignedCheckpoint(ctx, stmary.node.Audit, stmary.node.Store, stmary.node.Verifier)
	if err != nil || got == nil {
		t.Fatalf("cosigned: %q %v", got, err)
	}
	if _, by, err := federation.VerifyCosigned(got, stmary.node.Verifier, stmary.node.Kernel.Snapshot().WS.Peers); err != nil || len(by) != 1 {
		t.Fatalf("served cosigned checkpoint: %v %v\n%s", by, err, got)
	}
}

// Two worlds that differ only in one hidden patient: a Mercy patient
// whose diagnosis no other Mercy patient has, so Mercy's threshold
// withholds the group. The federated answers (rows, which members
// released each row, each member's row count and notes, errors) are the
// same in both worlds: the coordinator neither sees nor shows what a
// member withheld. (A group that meets the threshold counts the patient,
// as it does for a local analyst under this rule: only DP hides that.)
func TestFederatedAnswerDoesNotDependOnAHiddenPatient(t *testing.T) {
	thresholdEverywhere := func(dir string) {
		for _, n := range []string{"stmary", "stjohn"} {
			b, _ := os.ReadFile(filepath.Join(dir, "mercy", "agreements", "mercy-research.yaml"))
			s := strings.ReplaceAll(string(b), "mercy", n)
			s = strings.Replace(s, "egress:\n  - {to: [eu], outputs: [aggregate]}\n", "", 1)
			os.WriteFile(filepath.Join(dir, n, "agreements", n+"-research.yaml"), []byte(s), 0o644)
		}
		// Several questions about the same groups: the members' own
		// differencing checks would (rightly) refuse some; this test is
		// about what the coordinator passes on.
		for _, n := range []string{"stmary", "stjohn", "mercy"} {
			editWorkspaceFile(t, filepath.Join(dir, n), "agreements/"+n+"-research.yaml", "    min_units: 10\n", "    min_units: 10\n    differencing: {off: true}\n")
		}
	}
	hidden := func(dir string) {
		thresholdEverywhere(dir)
		f, err := os.OpenFile(filepath.Join(dir, "mercy", "data", "visits.csv"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("P9999999,Hidden Person,999-99-9999,1970-01-01,F,34602,Z99.9,Harbour Clinic,south,2024-06-21,4321.00\n")
		f.Close()
	}
	type view struct {
		Status     int
		Columns    []string
		Rows       [][]any
		RowMembers [][]string
		Members    []string
		Notes      []string
		Error      string
	}
	answer := func(prepare func(string)) []view {
		f := startFederation(t, 2000, prepare)
		var out []view
		for _, sql := range []string{fedSQL, "SELECT diagnosis, count(*), sum(cost) FROM visits WHERE visit_date < '2025-01-01' GROUP BY diagnosis", "SELECT count(*) FROM visits WHERE diagnosis = 'Z99.9'"} {
			a := f.ask(t, "analyst@research", sql)
			v := view{Status: a.Status, Columns: a.Columns, Rows: a.Rows, Notes: a.Notes, Error: a.Error.Rule + ": " + a.Error.Message}
			if a.Federation != nil {
				v.RowMembers = a.Federation.RowMembers
				for _, m := range a.Federation.Members {
					v.Members = append(v.Members, fmt.Sprintf("%s %s %d", m.Node, m.Access, m.Rows))
				}
			}
			out = append(out, v)
		}
		return out
	}
	without, with := answer(thresholdEverywhere), answer(hidden)
	for i := range without {
		a, b := fmt.Sprintf("%+v", without[i]), fmt.Sprintf("%+v", with[i])
		if i < 2 && without[i].Status != 200 {
			t.Fatalf("query %d: %s", i, a)
		}
		if a != b {
			t.Errorf("query %d differs across a hidden patient:\nwithout: %s\nwith:    %s", i, a, b)
		}
	}
}
