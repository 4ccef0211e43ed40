package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/cli"
	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/identity"
	"github.com/airlock-dev/airlock/internal/identity/jwttest"
	"github.com/airlock-dev/airlock/internal/store"
)

// newHarness serves the demo workspace (changed by prepare, if set) for
// one test or benchmark, stopped when it ends.
func newHarness(t testing.TB, prepare func(dir string)) *harness {
	t.Helper()
	dir := t.TempDir()
	if err := demo.Init(dir); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(dir)
	}
	h, err := startHarness(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.stop)
	return h
}

func TestAuthenticationFromTheAttackersSide(t *testing.T) {
	iss := jwttest.New(t)
	h := newHarness(t, func(dir string) {
		cfg, _ := os.ReadFile(filepath.Join(dir, "airlock.yaml"))
		cfg = append(cfg, []byte("auth:\n  jwt:\n    jwks_file: "+iss.Path+"\n    issuer: https://idp.test\n    audience: airlock\n    claims: {org: org, region: region}\n")...)
		os.WriteFile(filepath.Join(dir, "airlock.yaml"), cfg, 0o644)
	})
	sql := []byte(`{"sql": "SELECT count(*) FROM visits", "purpose": "research"}`)
	now := time.Now()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": "https://idp.test", "aud": "airlock", "sub": "analyst@partner", "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	// A valid JWT for a declared principal works.
	if r := h.post(t, "/v1/query", iss.Sign(t, "EdDSA", "ed", claims(nil), nil), sql); r.Status != 200 {
		t.Fatalf("valid JWT: %d %s", r.Status, r.Body)
	}
	other := jwttest.New(t)
	tok, id, hash, _ := identity.NewToken()
	h.node.Store.PutToken(context.Background(), store.Token{ID: id, Hash: hash, Principal: "analyst@partner", CreatedAt: now, ExpiresAt: now.Add(-time.Minute)})
	rtok, rid, rhash, _ := identity.NewToken()
	h.node.Store.PutToken(context.Background(), store.Token{ID: rid, Hash: rhash, Principal: "analyst@partner", CreatedAt: now})
	h.node.Store.RevokeToken(context.Background(), rid, now)
	good := h.tokens["analyst@partner"]
	for name, c := range map[string]struct{ token, want string }{
		"no token":            {"", "authn.missing"},
		"garbage":             {"hello", "authn.invalid"},
		"forged JWT":          {other.Sign(t, "EdDSA", "ed", claims(nil), nil), "authn.invalid"},
		"alg none":            {iss.Sign(t, "none", "ed", claims(nil), nil), "authn.invalid"},
		"HS256 key confusion": {iss.Sign(t, "HS256", "rsa", claims(nil), []byte(iss.JWKS.Keys[0].N)), "authn.invalid"},
		"expired JWT":         {iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }), nil), "authn.invalid"},
		"wrong audience":      {iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { c["aud"] = "someone-else" }), nil), "authn.invalid"},
		"wrong issuer":        {iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { c["iss"] = "https://evil.test" }), nil), "authn.invalid"},
		"expired API token":   {tok, "authn.invalid"},
		"revoked API token":   {rtok, "authn.invalid"},
		"forged API token":    {good[:len(good)-5] + "AAAAA", "authn.invalid"},
	} {
		r := h.post(t, "/v1/query", c.token, sql)
		if r.Status != 401 || r.Error.Rule != c.want {
			t.Errorf("%s: got %d %s, want 401 %s", name, r.Status, r.Body, c.want)
		}
		if c.token != "" && bytes.Contains(r.Body, []byte(c.token)) {
			t.Errorf("%s: response echoes the token", name)
		}
	}
}

func TestRevocationTakesEffectOnTheNextRequest(t *testing.T) {
	h := newHarness(t, nil)
	q := func() apiResponse {
		return h.query(t, "analyst@partner", "research", "", "SELECT sex, count(*) FROM visits GROUP BY sex")
	}
	if r := q(); r.Status != 200 {
		t.Fatalf("before revocation: %d %s", r.Status, r.Body)
	}
	listed := func() bool {
		r := h.get(t, "/v1/datasets", h.tokens["analyst@partner"])
		return strings.Contains(string(r.Body), `"visits"`)
	}
	if !listed() {
		t.Fatal("the catalog does not list the dataset before revocation")
	}
	// The partner cannot revoke; the owner's steward can. A partner learns
	// nothing of which agreements exist: refusing an unknown one and one it
	// may not revoke read alike, naming no dataset.
	notMine := h.post(t, "/v1/agreements/partner-visits-research/revoke", h.tokens["analyst@partner"], nil)
	unknown := h.post(t, "/v1/agreements/no-such-agreement/revoke", h.tokens["analyst@partner"], nil)
	if notMine.Status != 403 || unknown.Status != 403 || notMine.Error.Rule != unknown.Error.Rule ||
		strings.Replace(notMine.Error.Message, "partner-visits-research", "X", 1) != strings.Replace(unknown.Error.Message, "no-such-agreement", "X", 1) ||
		strings.Contains(notMine.Error.Message, "visits ") {
		t.Fatalf("a partner revoking: %d %s; an unknown agreement: %d %s", notMine.Status, notMine.Body, unknown.Status, unknown.Body)
	}
	if r := h.post(t, "/v1/agreements/partner-visits-research/revoke?reason=breach", h.tokens["steward@stmary"], nil); r.Status != 200 {
		t.Fatalf("steward revoke: %d %s", r.Status, r.Body)
	}
	if r := q(); r.Status != 403 || r.Error.Rule != "agreement.revoked" {
		t.Fatalf("after revocation: %d %s", r.Status, r.Body)
	}
	if listed() {
		t.Fatal("the catalog still lists the dataset under a revoked agreement")
	}
}

func TestEveryDecisionIsAudited(t *testing.T) {
	h := shared
	ctx := context.Background()
	before, _ := h.node.Store.Size(ctx)
	ok := h.query(t, "analyst@partner", "research", "", "SELECT hospital, count(*) FROM visits GROUP BY hospital")
	denied := h.query(t, "analyst@partner", "marketing", "", "SELECT hospital, count(*) FROM visits GROUP BY hospital")
	if ok.Status != 200 || denied.Status != 403 {
		t.Fatalf("got %d and %d", ok.Status, denied.Status)
	}
	after, _ := h.node.Store.Size(ctx)
	if after < before+2 {
		t.Fatalf("audit grew by %d, want >= 2", after-before)
	}
	// The allowed response carries its audit index; that entry says what happened.
	raw, err := h.node.Store.Leaves(ctx, ok.AuditIndex, ok.AuditIndex+1)
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	json.Unmarshal(raw[0], &e)
	if e["decision"] != "allow" || e["principal"] != "analyst@partner" || e["agreement"] != "partner-visits-research" ||
		e["purpose"] != "research" || e["rows_returned"].(float64) != 12 || !strings.HasPrefix(e["policy_version"].(string), "sha256:") ||
		e["fingerprint"] == "" || !strings.Contains(strings.Join(toStrings(e["columns"]), ","), "visits.hospital") {
		t.Fatalf("audit entry %s", raw[0])
	}
	// Stewards read entries about their datasets; partners read nothing.
	get := func(tok string) (int, []byte) {
		req, _ := http.NewRequest("GET", h.url+"/v1/audit?limit=5&decision=deny", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.Bytes()
	}
	if code, body := get(h.tokens["steward@stmary"]); code != 200 || !bytes.Contains(body, []byte(`"rule":"agreement.purpose"`)) {
		t.Fatalf("steward audit read: %d %s", code, body)
	}
	if code, _ := get(h.tokens["analyst@partner"]); code != 403 {
		t.Fatalf("partner read the audit log: %d", code)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestAuditVerifyCLIDetectsRewrite(t *testing.T) {
	h := newHarness(t, nil)
	for i := 0; i < 5; i++ {
		h.query(t, "analyst@partner", "research", "", "SELECT sex, count(*) FROM visits GROUP BY sex")
	}
	since := filepath.Join(t.TempDir(), "trusted.checkpoint")
	run := func() (int, string) {
		var out, errw bytes.Buffer
		code := cli.Main([]string{"audit", "verify", "--server", h.url, "--token", h.tokens["auditor@regulator"], "--since", since, "--pubkey", h.node.Verifier}, &out, &errw)
		return code, out.String() + errw.String()
	}
	if code, out := run(); code != 0 || !strings.Contains(out, "audit log ok") {
		t.Fatalf("first verify: %d %s", code, out)
	}
	h.query(t, "analyst@partner", "research", "", "SELECT region, count(*) FROM visits GROUP BY region")
	if code, out := run(); code != 0 {
		t.Fatalf("verify after growth: %d %s", code, out)
	}
	// The operator rewrites entry 2 in the store.
	db := h.node.Store.(interface{ DB() *sqlDB }).DB()
	if _, err := db.Exec(`UPDATE audit_leaves SET data = CAST(replace(CAST(data AS TEXT), 'analyst@partner', 'analyst@partnex') AS BLOB) WHERE idx = 2`); err != nil {
		t.Fatal(err)
	}
	code, out := run()
	if code == 0 || !strings.Contains(out, "tampered at index 2") {
		t.Fatalf("rewrite not detected: %d %s", code, out)
	}
}

func TestHotReloadChangesPolicyVersion(t *testing.T) {
	h := newHarness(t, nil)
	v1 := h.node.Kernel.Snapshot().Policy.Version()
	p := filepath.Join(h.dir, "policies", "base.cedar")
	b, _ := os.ReadFile(p)
	// Forbid the partner outright; the running server must pick it up.
	b = append(b, []byte("\n@id(\"freeze-partner\")\nforbid (principal, action, resource) when { principal.org == \"partner\" };\n")...)
	os.WriteFile(p, b, 0o644)
	deadline := time.Now().Add(5 * time.Second)
	for h.node.Kernel.Snapshot().Policy.Version() == v1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	r := h.query(t, "analyst@partner", "research", "", "SELECT sex, count(*) FROM visits GROUP BY sex")
	if r.Status != 403 || r.Error.Rule != "policy" || !strings.Contains(r.Error.Message, "freeze-partner") {
		t.Fatalf("after reload: %d %s", r.Status, r.Body)
	}
}

func TestAuditExportVerifiesOffline(t *testing.T) {
	h := newHarness(t, nil)
	h.query(t, "fraud@partnerbank", "fraud_detection", "", "SELECT country, count(*) FROM transactions WHERE amount < 5 GROUP BY country")
	h.query(t, "analyst@partner", "research", "", "SELECT name FROM visits")
	dir := t.TempDir()
	export, cp := filepath.Join(dir, "log.jsonl"), filepath.Join(dir, "log.checkpoint")
	var out, errw bytes.Buffer
	if code := cli.Main([]string{"audit", "export", "--workspace", h.dir, "--checkpoint", cp}, &out, &errw); code != 0 {
		t.Fatalf("export: %s", errw.String())
	}
	os.WriteFile(export, out.Bytes(), 0o644)
	verify := func() (int, string) {
		var o, e bytes.Buffer
		code := cli.Main([]string{"audit", "verify", "--log", export, "--checkpoint", cp, "--pubkey", h.node.Verifier}, &o, &e)
		return code, o.String() + e.String()
	}
	if code, msg := verify(); code != 0 {
		t.Fatalf("offline verify of a fresh export: %s", msg)
	}
	// Change one byte of the second entry in the export.
	lines := strings.SplitN(out.String(), "\n", 3)
	lines[1] = strings.Replace(lines[1], "analyst@partner", "analyst@partnex", 1)
	os.WriteFile(export, []byte(strings.Join(lines, "\n")), 0o644)
	if code, msg := verify(); code == 0 || !strings.Contains(msg, "do not hash to the signed checkpoint") {
		t.Fatalf("tampered export verified: %d %s", code, msg)
	}
}
