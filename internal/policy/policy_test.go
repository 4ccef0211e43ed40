package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/airlock-dev/airlock/internal/workspace"
)

const base = `// Test policies.
@id("partners-under-agreement")
permit (principal, action == Action::"query", resource)
when { context.agreement != "" && principal.org != resource.owner };

@id("stewards")
permit (principal, action, resource)
when { principal.org == resource.owner && principal.roles.contains("steward") };

@id("no-rows-outside-owner")
forbid (principal, action, resource)
when { context.query_kind == "rows" && principal.org != resource.owner };

permit (principal, action == Action::"audit_read", resource)
when { principal.roles.contains("auditor") };
`

func engine(t *testing.T, files map[string]string) *Engine {
	t.Helper()
	m := map[string][]byte{}
	for k, v := range files {
		m[k] = []byte(v)
	}
	e, err := Load(m)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var (
	visits  = Resource{Name: "visits", Owner: "stmary", Tier: "restricted", Region: "eu"}
	partner = Principal{Name: "analyst@partner", Org: "partner", Roles: []string{"analyst"}, Region: "eu"}
	steward = Principal{Name: "steward@stmary", Org: "stmary", Roles: []string{"steward"}, Region: "eu"}
	auditor = Principal{Name: "auditor@regulator", Org: "regulator", Roles: []string{"auditor"}}
	now     = time.Date(2026, 3, 4, 15, 30, 0, 0, time.UTC)
)

func TestDecisions(t *testing.T) {
	e := engine(t, map[string]string{"base.cedar": base})
	cases := []struct {
		name    string
		p       Principal
		action  string
		ctx     Context
		allowed bool
		reasons string
	}{
		{"partner with agreement", partner, "query", Context{Agreement: "a", QueryKind: "aggregate"}, true, "partners-under-agreement"},
		{"partner without agreement", partner, "query", Context{QueryKind: "aggregate"}, false, ""},
		{"partner plans: no permit for plan", partner, "plan", Context{Agreement: "a"}, false, ""},
		{"forbid overrides permit", partner, "query", Context{Agreement: "a", QueryKind: "rows"}, false, "no-rows-outside-owner"},
		{"steward any action", steward, "admin", Context{QueryKind: "rows"}, true, "stewards"},
		{"unannotated policy id is file:line", auditor, "audit_read", Context{}, true, "base.cedar:14"},
		{"auditor cannot query", auditor, "query", Context{}, false, ""},
		{"unknown action denied", partner, "drop_table", Context{Agreement: "a"}, false, ""},
	}
	for _, tc := range cases {
		tc.ctx.Now = now
		d := e.Decide(Request{Principal: tc.p, Action: tc.action, Resource: visits, Context: tc.ctx})
		if d.Allowed != tc.allowed || strings.Join(d.Reasons, ",") != tc.reasons || len(d.Errors) != 0 {
			t.Errorf("%s: got %+v, want allowed=%v reasons %q", tc.name, d, tc.allowed, tc.reasons)
		}
		if d.PolicyVersion != e.Version() {
			t.Errorf("%s: decision version %q, engine %q", tc.name, d.PolicyVersion, e.Version())
		}
	}
	// Deny by default: no policies at all.
	empty := engine(t, nil)
	if d := empty.Decide(Request{Principal: steward, Action: "query", Resource: visits}); d.Allowed {
		t.Fatalf("empty policy set allowed: %+v", d)
	}
	var nilEngine *Engine
	if d := nilEngine.Decide(Request{Principal: steward, Action: "query", Resource: visits}); d.Allowed {
		t.Fatalf("nil engine allowed: %+v", d)
	}
}

func TestEntityModel(t *testing.T) {
	// One permit per attribute; the reasons show which conditions held.
	e := engine(t, map[string]string{"m.cedar": `
@id("p.org") permit (principal, action, resource) when { principal.org == "partner" };
@id("p.roles") permit (principal, action, resource) when { principal.roles.contains("analyst") };
@id("p.country") permit (principal, action, resource) when { principal.country == "NL" };
@id("p.region") permit (principal, action, resource) when { principal.region == "eu" };
@id("p.clearance") permit (principal, action, resource) when { principal.clearance == "standard" };
@id("p.attr") permit (principal, action, resource) when { principal has team && principal.team == "blue" };
@id("p.attr-no-shadow") permit (principal, action, resource) when { principal.org == "evil" };
@id("p.uid") permit (principal == User::"analyst@partner", action, resource);
@id("r.uid") permit (principal, action, resource == Dataset::"visits");
@id("r.owner") permit (principal, action, resource) when { resource.owner == "stmary" };
@id("r.tier") permit (principal, action, resource) when { resource.tier == "restricted" };
@id("r.region") permit (principal, action, resource) when { resource.region == "eu" };
@id("a.plan") permit (principal, action == Action::"plan", resource);
@id("c.purpose") permit (principal, action, resource) when { context.purpose == "research" };
@id("c.agreement") permit (principal, action, resource) when { context.agreement == "ag-1" };
@id("c.client_region") permit (principal, action, resource) when { context.client_region == "us" };
@id("c.now") permit (principal, action, resource) when { context.now == 1772638200 };
@id("c.hour_utc") permit (principal, action, resource) when { context.hour_utc == 15 };
@id("c.columns") permit (principal, action, resource) when { context.columns.contains("cost") };
@id("c.classes") permit (principal, action, resource) when { context.classes.containsAll(["sensitive", "attribute"]) };
@id("c.query_kind") permit (principal, action, resource) when { context.query_kind == "aggregate" };
`})
	p := partner
	p.Country, p.Clearance = "NL", "standard"
	p.Attributes = map[string]string{"team": "blue", "org": "evil"}
	d := e.Decide(Request{Principal: p, Action: "plan", Resource: visits, Context: Context{
		Purpose: "research", Agreement: "ag-1", ClientRegion: "us", QueryKind: "aggregate",
		Now: now.In(time.FixedZone("CET", 3600)), Columns: []string{"cost", "sex"}, Classes: []string{"attribute", "sensitive"},
	}})
	want := []string{"a.plan", "c.agreement", "c.classes", "c.client_region", "c.columns", "c.hour_utc", "c.now", "c.purpose", "c.query_kind",
		"p.attr", "p.clearance", "p.country", "p.org", "p.region", "p.roles", "p.uid", "r.owner", "r.region", "r.tier", "r.uid"}
	if !d.Allowed || !slices.Equal(d.Reasons, want) || len(d.Errors) != 0 {
		t.Fatalf("got %+v\nwant reasons %v", d, want)
	}
}

func TestErrorNeverAllows(t *testing.T) {
	req := Request{Principal: partner, Action: "query", Resource: visits, Context: Context{Now: now}}
	// A permit whose condition errors (missing attribute) does not permit,
	// even though "|| true" would hold.
	e := engine(t, map[string]string{"p.cedar": `permit (principal, action, resource) when { principal.nonexistent == "x" || true };`})
	if d := e.Decide(req); d.Allowed || len(d.Errors) != 1 || !strings.Contains(d.Errors[0], "p.cedar:1: ") {
		t.Fatalf("erroring permit: got %+v, want deny with an error", d)
	}
	// A forbid whose condition errors denies, although a permit matches:
	// Cedar alone would skip the forbid and allow.
	e = engine(t, map[string]string{"p.cedar": `
@id("everyone") permit (principal, action, resource);
@id("no-night-shift") forbid (principal, action, resource) when { principal.shift == "night" };
@id("type-error") forbid (principal, action, resource) when { context.now > "noon" };
`})
	d := e.Decide(req)
	if d.Allowed || !slices.Equal(d.Reasons, []string{"no-night-shift", "type-error"}) || len(d.Errors) != 2 {
		t.Fatalf("erroring forbid: got %+v, want deny decided by the erroring forbids", d)
	}
	// The same forbid guarded with "has" evaluates and does not deny.
	e = engine(t, map[string]string{"p.cedar": `
@id("everyone") permit (principal, action, resource);
@id("no-night-shift") forbid (principal, action, resource) when { principal has shift && principal.shift == "night" };
`})
	if d := e.Decide(req); !d.Allowed || len(d.Errors) != 0 {
		t.Fatalf("guarded forbid: got %+v", d)
	}
	// An erroring permit does not block another permit (Cedar semantics),
	// and its error is still reported.
	e = engine(t, map[string]string{"p.cedar": `
@id("everyone") permit (principal, action, resource);
@id("broken") permit (principal, action, resource) when { principal.nonexistent == "x" };
`})
	if d := e.Decide(req); !d.Allowed || !slices.Equal(d.Reasons, []string{"everyone"}) || len(d.Errors) != 1 {
		t.Fatalf("erroring permit beside a matching one: got %+v", d)
	}
}

func TestVersion(t *testing.T) {
	a := map[string][]byte{"a.cedar": []byte(base), "b.cedar": []byte("")}
	b := map[string][]byte{"b.cedar": []byte(""), "a.cedar": []byte(base)}
	ea, err := Load(a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ea.Version(), "sha256:") || len(ea.Version()) != len("sha256:")+64 || ea.Version() != Version(b) {
		t.Fatalf("version %q, order-swapped %q", ea.Version(), Version(b))
	}
	for name, files := range map[string]map[string][]byte{
		"one byte more":  {"a.cedar": []byte(base + " "), "b.cedar": []byte("")},
		"other file":     {"a.cedar": []byte(base), "b.cedar": []byte(" ")},
		"renamed":        {"a.cedar": []byte(base), "c.cedar": []byte("")},
		"file removed":   {"a.cedar": []byte(base)},
		"content moved":  {"a.cedar": []byte(""), "b.cedar": []byte(base)},
		"boundary moved": {"a.cedar": []byte(base[:10]), "b.cedar": []byte(base[10:])},
	} {
		if Version(files) == ea.Version() {
			t.Errorf("%s: version unchanged", name)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	for name, c := range map[string]struct {
		files map[string]string
		want  []string
	}{
		"parse error names file and position": {
			map[string]string{"good.cedar": base, "broken.cedar": "permit (principal, action, resource);\n\nforbid (principal, action resource);"},
			// cedar-go reports the token after the unexpected one (3:35, ")").
			[]string{"policies/broken.cedar:3:", "parse error"},
		},
		"duplicate @id across files": {
			map[string]string{"a.cedar": `@id("x") permit (principal, action, resource);`, "b.cedar": "\n" + `@id("x") forbid (principal, action, resource);`},
			[]string{"policies/b.cedar:2:1", `"x"`, "policies/a.cedar:1:1"},
		},
		"empty @id": {
			map[string]string{"a.cedar": `@id("") permit (principal, action, resource);`},
			[]string{"policies/a.cedar:1:1", "empty @id"},
		},
		"@id colliding with a generated id": {
			map[string]string{"a.cedar": `permit (principal, action, resource);` + "\n" + `@id("a.cedar:1") permit (principal, action, resource);`},
			[]string{"already used at policies/a.cedar:1:1"},
		},
	} {
		m := map[string][]byte{}
		for k, v := range c.files {
			m[k] = []byte(v)
		}
		_, err := Load(m)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: got %v, want it to mention %q", name, err, w)
			}
		}
	}
}

var (
	principalsByName = map[string]Principal{"analyst@partner": partner, "steward@stmary": steward}
	datasetsByName   = map[string]Resource{"visits": visits}
)

func lookupPrincipal(n string) (Principal, bool) { p, ok := principalsByName[n]; return p, ok }
func lookupResource(n string) (Resource, bool)   { r, ok := datasetsByName[n]; return r, ok }

func TestRunTests(t *testing.T) {
	e := engine(t, map[string]string{"base.cedar": base})
	doc := []byte(`# cases
- {name: partner aggregate, principal: analyst@partner, resource: visits, context: {agreement: a, query_kind: aggregate}, expect: allow}
- {name: partner rows, principal: analyst@partner, resource: visits, context: {agreement: a, query_kind: rows}, expect: allow}
- name: inline principal and resource
  principal: {name: x, org: northbank, roles: [steward]}
  action: admin
  resource: {name: transactions, owner: northbank, tier: confidential, region: eu}
  expect: allow
- {name: resource mapping filled from the dataset, principal: steward@stmary, resource: {name: visits}, context: {now: "2026-01-02T10:00:00Z"}, expect: ALLOW}
- {name: unknown principal, principal: nobody, resource: visits, expect: deny}
- {name: unknown dataset, principal: analyst@partner, resource: nothing, expect: deny}
- {principal: analyst@partner, action: audit_read, resource: visits, expect: deny}
`)
	res, err := RunTests(e, "t.yaml", doc, lookupPrincipal, lookupResource)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		name   string
		line   int
		passed bool
		detail string
	}
	wants := []want{
		{"partner aggregate", 2, true, ""},
		{"partner rows", 3, false, "got deny (decided by no-rows-outside-owner), want allow"},
		{"inline principal and resource", 4, true, ""},
		{"resource mapping filled from the dataset", 9, true, ""},
		{"unknown principal", 10, false, `unknown principal "nobody"`},
		{"unknown dataset", 11, false, `unknown dataset "nothing"`},
		{"case 7", 12, true, ""},
	}
	if len(res) != len(wants) {
		t.Fatalf("got %d results: %+v", len(res), res)
	}
	for i, w := range wants {
		r := res[i]
		if r.File != "t.yaml" || r.Name != w.name || r.Line != w.line || r.Passed != w.passed || r.Detail != w.detail {
			t.Errorf("case %d: got %+v, want %+v", i, r, w)
		}
	}

	// The {cases: [...]} form, and nil lookups with inline mappings.
	res, err = RunTests(e, "t.yaml", []byte(`cases: [{principal: {name: s, org: stmary, roles: [steward]}, resource: {name: visits, owner: stmary}, expect: allow}]`), nil, nil)
	if err != nil || len(res) != 1 || !res[0].Passed {
		t.Fatalf("cases form: %+v, %v", res, err)
	}
	if res, err := RunTests(e, "t.yaml", nil, nil, nil); err != nil || len(res) != 0 {
		t.Fatalf("empty file: %+v, %v", res, err)
	}

	// A malformed file is an error naming the file and line.
	for name, c := range map[string]struct{ doc, want string }{
		"unknown case key":         {"- {principal: analyst@partner, resource: visits, expect: allow}\n- {principal: analyst@partner, resource: visits, contxt: {}, expect: deny}", `t.yaml:2: unknown key "contxt"`},
		"unknown context key":      {"- principal: analyst@partner\n  resource: visits\n  context: {purpse: research}\n  expect: deny", `t.yaml:3: unknown key "purpse" in context`},
		"unknown resource key":     {"- {principal: analyst@partner, resource: {name: visits, tear: x}, expect: deny}", `unknown key "tear" in resource`},
		"unknown principal key":    {"- {principal: {name: p, orgg: x}, resource: visits, expect: deny}", `unknown key "orgg" in principal`},
		"bad expect":               {"- {name: n, principal: analyst@partner, resource: visits, expect: alow}", `t.yaml:1: case "n": expect must be allow or deny`},
		"missing expect":           {"- {name: n, principal: analyst@partner, resource: visits}", "expect must be allow or deny"},
		"unknown action":           {"- {name: n, principal: analyst@partner, action: qeury, resource: visits, expect: deny}", `unknown action "qeury"`},
		"bad now":                  {"- {name: n, principal: analyst@partner, resource: visits, context: {now: yesterday}, expect: deny}", "context.now must be RFC 3339"},
		"no principal":             {"- {name: n, resource: visits, expect: deny}", "no principal"},
		"no resource":              {"- {name: n, principal: analyst@partner, expect: deny}", "no resource"},
		"not a list":               {"name: x", `unknown key "name" in the test file`},
		"scalar":                   {"hello", "want a list of test cases"},
		"bad yaml":                 {"- {name: [", "t.yaml"},
		"case is not a mapping":    {"- hello", "t.yaml:1: a test case must be a mapping"},
		"columns is not a list":    {"- {name: n, principal: analyst@partner, resource: visits, context: {columns: x}, expect: deny}", "t.yaml:1"},
		"resource mapping unnamed": {"- {name: n, principal: analyst@partner, resource: {owner: x}, expect: deny}", "resource has no name"},
	} {
		_, err := RunTests(e, "t.yaml", []byte(c.doc), lookupPrincipal, lookupResource)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error mentioning %q", name, err, c.want)
		}
	}
}

// TestDemoWorkspace runs the demo workspace's own policy tests against its
// policies, resolving principals and datasets from its files.
func TestDemoWorkspace(t *testing.T) {
	dir := filepath.Join("..", "demo", "workspace")
	files := map[string][]byte{}
	matches, _ := filepath.Glob(filepath.Join(dir, "policies", "*.cedar"))
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(m)] = b
	}
	if len(files) == 0 {
		t.Skip("no demo policies")
	}
	e, err := Load(files)
	if err != nil {
		t.Fatal(err)
	}
	var ps struct{ Principals []workspace.Principal }
	b, err := os.ReadFile(filepath.Join(dir, "principals.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ps); err != nil {
		t.Fatal(err)
	}
	principals := map[string]Principal{}
	for _, p := range ps.Principals {
		principals[p.Name] = Principal{Name: p.Name, Org: p.Org, Region: p.Region, Country: p.Country, Clearance: p.Clearance, Roles: p.Roles, Attributes: p.Attributes}
	}
	datasets := map[string]Resource{}
	manifests, _ := filepath.Glob(filepath.Join(dir, "datasets", "*.yaml"))
	for _, m := range manifests {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		var man workspace.Manifest
		if err := yaml.Unmarshal(b, &man); err != nil {
			t.Fatal(err)
		}
		datasets[man.Name] = Resource{Name: man.Name, Owner: man.Owner, Tier: man.Tier, Region: man.Region}
	}
	tests, _ := filepath.Glob(filepath.Join(dir, "policies", "tests", "*.yaml"))
	for _, f := range tests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res, err := RunTests(e, filepath.Base(f), b,
			func(n string) (Principal, bool) { p, ok := principals[n]; return p, ok },
			func(n string) (Resource, bool) { r, ok := datasets[n]; return r, ok })
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if !r.Passed {
				t.Errorf("%s:%d %s: %s", r.File, r.Line, r.Name, r.Detail)
			}
		}
	}
}

func TestConcurrentDecide(t *testing.T) {
	e := engine(t, map[string]string{"base.cedar": base})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				ctx := Context{Agreement: "a", QueryKind: "aggregate", Now: now}
				if (i+j)%2 == 0 {
					ctx.QueryKind = "rows"
				}
				d := e.Decide(Request{Principal: partner, Action: "query", Resource: visits, Context: ctx})
				if d.Allowed != (ctx.QueryKind == "aggregate") {
					t.Errorf("got %+v for %+v", d, ctx)
					return
				}
			}
		})
	}
	wg.Wait()
}
