package policy

import (
	"strings"
	"testing"
	"time"
)

const base = `
@id("partners-under-agreement")
permit (principal, action == Action::"query", resource)
when { context.agreement != "" && principal.org != resource.owner };

@id("stewards")
permit (principal, action, resource)
when { principal.org == resource.owner && principal.roles.contains("steward") };

@id("no-rows-outside-owner")
forbid (principal, action, resource)
when { context.query_kind == "rows" && principal.org != resource.owner };

@id("clearance-attr")
forbid (principal, action, resource)
when { principal.needs_check == "yes" && principal.missing_attr == "x" };
`

func engine(t *testing.T, files map[string][]byte) *Engine {
	t.Helper()
	e, err := Load(files)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var visits = Resource{Name: "visits", Owner: "stmary", Tier: "restricted", Region: "eu"}

func TestDecisions(t *testing.T) {
	e := engine(t, map[string][]byte{"base.cedar": []byte(base)})
	partner := Principal{Name: "analyst@partner", Org: "partner", Roles: []string{"analyst"}}
	steward := Principal{Name: "steward@stmary", Org: "stmary", Roles: []string{"steward"}}
	cases := []struct {
		name    string
		p       Principal
		action  string
		ctx     Context
		allowed bool
		reason  string
	}{
		{"partner with agreement", partner, "query", Context{Agreement: "a", QueryKind: "aggregate"}, true, "base.cedar:partners-under-agreement"},
		{"partner without agreement", partner, "query", Context{QueryKind: "aggregate"}, false, ""},
		{"forbid overrides permit", partner, "query", Context{Agreement: "a", QueryKind: "rows"}, false, "base.cedar:no-rows-outside-owner"},
		{"steward any action", steward, "audit_read", Context{}, true, "base.cedar:stewards"},
		{"unknown action denied", partner, "admin", Context{Agreement: "a"}, false, ""},
	}
	for _, tc := range cases {
		tc.ctx.Now = time.Now()
		d := e.Decide(Request{Principal: tc.p, Action: tc.action, Resource: visits, Context: tc.ctx})
		if d.Allowed != tc.allowed {
			t.Errorf("%s: got allowed=%v (%v %v), want %v", tc.name, d.Allowed, d.Reasons, d.Errors, tc.allowed)
		}
		if tc.reason != "" && (len(d.Reasons) == 0 || d.Reasons[0] != tc.reason) {
			t.Errorf("%s: reasons %v, want %s", tc.name, d.Reasons, tc.reason)
		}
	}
}

func TestErrorNeverAllows(t *testing.T) {
	// A permit whose condition errors (missing attribute) must not allow.
	e := engine(t, map[string][]byte{"p.cedar": []byte(`permit (principal, action, resource) when { principal.nonexistent == "x" || true };`)})
	d := e.Decide(Request{Principal: Principal{Name: "x"}, Action: "query", Resource: visits, Context: Context{Now: time.Now()}})
	if d.Allowed || len(d.Errors) == 0 {
		t.Fatalf("got %+v, want deny with an error", d)
	}
}

func TestVersion(t *testing.T) {
	a := engine(t, map[string][]byte{"a.cedar": []byte(base), "b.cedar": []byte("")})
	b := engine(t, map[string][]byte{"b.cedar": []byte(""), "a.cedar": []byte(base)})
	c := engine(t, map[string][]byte{"a.cedar": []byte(base + " "), "b.cedar": []byte("")})
	if a.Version() != b.Version() || a.Version() == c.Version() || !strings.HasPrefix(a.Version(), "sha256:") {
		t.Fatalf("versions %s %s %s", a.Version(), b.Version(), c.Version())
	}
}

func TestParseErrorNamesFile(t *testing.T) {
	_, err := Load(map[string][]byte{"broken.cedar": []byte("permit (principal, action resource);")})
	if err == nil || !strings.Contains(err.Error(), "broken.cedar") {
		t.Fatalf("got %v", err)
	}
}

func TestRunTests(t *testing.T) {
	e := engine(t, map[string][]byte{"base.cedar": []byte(base)})
	doc := []byte(`
- {name: partner aggregate, principal: p, resource: visits, context: {agreement: a, query_kind: aggregate}, expect: allow}
- {name: partner rows, principal: p, resource: visits, context: {agreement: a, query_kind: rows}, expect: allow}
`)
	res, err := RunTests(e, "t.yaml", doc,
		func(string) (Principal, bool) { return Principal{Name: "p", Org: "partner"}, true },
		func(string) (Resource, bool) { return visits, true })
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || !res[0].Passed || res[1].Passed || !strings.Contains(res[1].Detail, "want allow") {
		t.Fatalf("got %+v", res)
	}
}
