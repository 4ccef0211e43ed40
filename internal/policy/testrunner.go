package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// TestCase is one policy test: a request and the expected decision. A file
// is a list of cases, or a mapping {cases: [...]}:
//
//	cases:
//	  - name: partner aggregate under agreement
//	    principal: analyst@partner   # a declared name, or a mapping like Principal
//	    action: query                # default query
//	    resource: visits             # a dataset name, or {name, owner, tier, region}
//	    context: {purpose: research, agreement: a, client_region: eu, query_kind: aggregate,
//	              now: 2026-01-02T10:00:00Z, columns: [x], classes: [attribute]}
//	    expect: allow                # allow | deny
type TestCase struct {
	Name      string
	Principal Principal
	Action    string
	Resource  Resource
	Context   Context
	Expect    string // allow | deny
	Line      int    // line of the case in its file
	// Problem, when set, says why the case cannot run (an unknown principal
	// or dataset); RunTests reports it as a failure.
	Problem string
}

// TestResult is the outcome of one case.
type TestResult struct {
	File, Name string
	Line       int // line of the case in its file
	Passed     bool
	Got        Decision
	// Detail says why a case failed: the decision and its reasons, or an
	// unknown principal or dataset.
	Detail string
}

// yamlCase is a case as written.
type yamlCase struct {
	Name      string    `yaml:"name"`
	Principal yaml.Node `yaml:"principal"`
	Action    string    `yaml:"action"`
	Resource  yaml.Node `yaml:"resource"`
	Context   struct {
		Purpose      string   `yaml:"purpose"`
		Agreement    string   `yaml:"agreement"`
		ClientRegion string   `yaml:"client_region"`
		Now          string   `yaml:"now"`
		Columns      []string `yaml:"columns"`
		Classes      []string `yaml:"classes"`
		QueryKind    string   `yaml:"query_kind"`
	} `yaml:"context"`
	Expect string `yaml:"expect"`
}

var (
	caseKeys      = []string{"name", "principal", "action", "resource", "context", "expect"}
	contextKeys   = []string{"purpose", "agreement", "client_region", "now", "columns", "classes", "query_kind"}
	resourceKeys  = []string{"name", "owner", "tier", "region"}
	principalKeys = []string{"name", "org", "roles", "country", "region", "clearance", "attributes"}
)

// checkKeys refuses keys of a mapping node that are not allowed (a typo such
// as "contxt" would otherwise silently test something else).
func checkKeys(file string, n *yaml.Node, what string, allowed []string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: %s must be a mapping", file, n.Line, what)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(allowed, k.Value) {
			return fmt.Errorf("%s:%d: unknown key %q in %s (known: %s)", file, k.Line, k.Value, what, strings.Join(allowed, ", "))
		}
	}
	return nil
}

func child(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// ParseTests reads a policy test file. Principals and datasets given by name
// are resolved with principal and resource (either may be nil when every case
// spells its principal or resource out as a mapping); a name that does not
// resolve sets the case's Problem. An unknown key, a missing principal or
// resource, or a bad expect, action or context.now is an error naming the
// file and line.
func ParseTests(file string, doc []byte, principal func(string) (Principal, bool), resource func(string) (Resource, bool)) ([]TestCase, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, nil // empty file
	}
	list := root.Content[0]
	if list.Kind == yaml.MappingNode {
		if err := checkKeys(file, list, "the test file", []string{"cases"}); err != nil {
			return nil, err
		}
		if list = child(list, "cases"); list == nil {
			return nil, nil
		}
	}
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: want a list of test cases", file, list.Line)
	}
	var out []TestCase
	for i, item := range list.Content {
		c, err := parseCase(file, i, item, principal, resource)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func parseCase(file string, i int, item *yaml.Node, principal func(string) (Principal, bool), resource func(string) (Resource, bool)) (TestCase, error) {
	if err := checkKeys(file, item, "a test case", caseKeys); err != nil {
		return TestCase{}, err
	}
	if ctx := child(item, "context"); ctx != nil && ctx.Kind != yaml.ScalarNode {
		if err := checkKeys(file, ctx, "context", contextKeys); err != nil {
			return TestCase{}, err
		}
	}
	var y yamlCase
	if err := item.Decode(&y); err != nil {
		return TestCase{}, fmt.Errorf("%s:%d: %w", file, item.Line, err)
	}
	c := TestCase{Name: y.Name, Action: y.Action, Line: item.Line}
	if c.Name == "" {
		c.Name = fmt.Sprintf("case %d", i+1)
	}
	where := fmt.Sprintf("%s:%d: case %q", file, item.Line, c.Name)
	if c.Action == "" {
		c.Action = ActionQuery
	}
	if !slices.Contains(Actions, c.Action) {
		return TestCase{}, fmt.Errorf("%s: unknown action %q (known: %s)", where, c.Action, strings.Join(Actions, ", "))
	}
	switch c.Expect = strings.ToLower(strings.TrimSpace(y.Expect)); c.Expect {
	case "allow", "deny":
	default:
		return TestCase{}, fmt.Errorf("%s: expect must be allow or deny, not %q", where, y.Expect)
	}
	var err error
	if c.Principal, c.Problem, err = parsePrincipal(where, file, &y.Principal, principal); err != nil {
		return TestCase{}, err
	}
	var problem string
	if c.Resource, problem, err = parseResource(where, file, &y.Resource, resource); err != nil {
		return TestCase{}, err
	}
	if c.Problem == "" {
		c.Problem = problem
	}
	c.Context = Context{
		Purpose: y.Context.Purpose, Agreement: y.Context.Agreement, ClientRegion: y.Context.ClientRegion,
		QueryKind: y.Context.QueryKind, Columns: y.Context.Columns, Classes: y.Context.Classes,
	}
	if y.Context.Now != "" {
		if c.Context.Now, err = time.Parse(time.RFC3339, y.Context.Now); err != nil {
			return TestCase{}, fmt.Errorf("%s: context.now must be RFC 3339 (e.g. 2026-01-02T15:04:05Z), not %q", where, y.Context.Now)
		}
	}
	return c, nil
}

// parsePrincipal reads a principal name (resolved with lookup; problem says
// if it does not resolve) or a mapping.
func parsePrincipal(where, file string, n *yaml.Node, lookup func(string) (Principal, bool)) (p Principal, problem string, err error) {
	switch n.Kind {
	case 0:
		return Principal{}, "", fmt.Errorf("%s: no principal", where)
	case yaml.ScalarNode:
		if lookup != nil {
			if p, ok := lookup(n.Value); ok {
				return p, "", nil
			}
		}
		return Principal{Name: n.Value}, fmt.Sprintf("unknown principal %q", n.Value), nil
	}
	if err := checkKeys(file, n, "principal", principalKeys); err != nil {
		return Principal{}, "", err
	}
	var y struct {
		Name       string            `yaml:"name"`
		Org        string            `yaml:"org"`
		Roles      []string          `yaml:"roles"`
		Country    string            `yaml:"country"`
		Region     string            `yaml:"region"`
		Clearance  string            `yaml:"clearance"`
		Attributes map[string]string `yaml:"attributes"`
	}
	if err := n.Decode(&y); err != nil {
		return Principal{}, "", fmt.Errorf("%s: principal: %w", where, err)
	}
	if y.Name == "" {
		return Principal{}, "", fmt.Errorf("%s: principal has no name", where)
	}
	return Principal{Name: y.Name, Org: y.Org, Roles: y.Roles, Country: y.Country, Region: y.Region, Clearance: y.Clearance, Attributes: y.Attributes}, "", nil
}

// parseResource reads a dataset name (resolved with lookup; problem says if
// it does not resolve) or a mapping; a mapping naming a known dataset takes
// the fields it leaves out from it.
func parseResource(where, file string, n *yaml.Node, lookup func(string) (Resource, bool)) (r Resource, problem string, err error) {
	switch n.Kind {
	case 0:
		return Resource{}, "", fmt.Errorf("%s: no resource", where)
	case yaml.ScalarNode:
		if lookup != nil {
			if r, ok := lookup(n.Value); ok {
				return r, "", nil
			}
		}
		return Resource{Name: n.Value}, fmt.Sprintf("unknown dataset %q", n.Value), nil
	}
	if err := checkKeys(file, n, "resource", resourceKeys); err != nil {
		return Resource{}, "", err
	}
	if err := n.Decode(&struct {
		Name   *string `yaml:"name"`
		Owner  *string `yaml:"owner"`
		Tier   *string `yaml:"tier"`
		Region *string `yaml:"region"`
	}{&r.Name, &r.Owner, &r.Tier, &r.Region}); err != nil {
		return Resource{}, "", fmt.Errorf("%s: resource: %w", where, err)
	}
	if r.Name == "" {
		return Resource{}, "", fmt.Errorf("%s: resource has no name", where)
	}
	if lookup != nil {
		if known, ok := lookup(r.Name); ok {
			r.Owner = cmp.Or(r.Owner, known.Owner)
			r.Tier = cmp.Or(r.Tier, known.Tier)
			r.Region = cmp.Or(r.Region, known.Region)
		}
	}
	return r, "", nil
}

// RunTests runs the cases of one policy test file against e. file names the
// file in errors and results; principal and resource resolve names to the
// workspace's declarations (see ParseTests). A malformed file is an error;
// otherwise every case yields a TestResult, Passed or not (a case naming an
// unknown principal or dataset fails). A case without
// context.now is decided at the current time.
func RunTests(e *Engine, file string, doc []byte, principal func(string) (Principal, bool), resource func(string) (Resource, bool)) ([]TestResult, error) {
	cases, err := ParseTests(file, doc, principal, resource)
	if err != nil {
		return nil, err
	}
	out := make([]TestResult, 0, len(cases))
	for _, c := range cases {
		res := TestResult{File: file, Name: c.Name, Line: c.Line}
		if c.Problem != "" {
			res.Detail = c.Problem
			out = append(out, res)
			continue
		}
		res.Got = e.Decide(Request{Principal: c.Principal, Action: c.Action, Resource: c.Resource, Context: c.Context})
		res.Passed = res.Got.Allowed == (c.Expect == "allow")
		if !res.Passed {
			res.Detail = fmt.Sprintf("got %s, want %s", describe(res.Got), c.Expect)
		}
		out = append(out, res)
	}
	return out, nil
}

func describe(d Decision) string {
	s := "deny"
	if d.Allowed {
		s = "allow"
	}
	if len(d.Reasons) > 0 {
		s += " (decided by " + strings.Join(d.Reasons, ", ") + ")"
	} else if !d.Allowed {
		s += " (no policy permits it)"
	}
	if len(d.Errors) > 0 {
		s += " with errors: " + strings.Join(d.Errors, "; ")
	}
	return s
}
