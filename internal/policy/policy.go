// Package policy evaluates Cedar policies (cedar-go) for Airlock: deny by
// default, forbid overrides permit, an evaluation error never allows. The
// policy version is a hash over the policy files, recorded in every decision.
//
// # Entity model
//
//	principal  User::"<name>"     org, region, country, clearance (String), roles (Set<String>), attrs
//	resource   Dataset::"<name>"  owner, tier, region (String)
//	action     Action::"query" | "plan" | "audit_read" | "admin"
//	context    purpose, agreement, client_region, query_kind (String), now, hour_utc (Long),
//	           columns, classes (Set<String>)
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go"
	"gopkg.in/yaml.v3"
)

// Engine is an immutable compiled policy set, safe for concurrent use.
type Engine struct {
	set     *cedar.PolicySet
	version string
}

// Load compiles the policy files (name -> Cedar text).
func Load(files map[string][]byte) (*Engine, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	set := cedar.NewPolicySet()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
		list, err := cedar.NewPolicyListFromBytes(n, files[n])
		if err != nil {
			return nil, fmt.Errorf("policies/%s: %w", n, err)
		}
		for i, p := range list {
			id := fmt.Sprintf("%s#%d", n, i)
			if a, ok := p.Annotations()["id"]; ok {
				id = n + ":" + string(a)
			}
			if !set.Add(cedar.PolicyID(id), p) {
				return nil, fmt.Errorf("policies/%s: duplicate policy id %q", n, id)
			}
		}
	}
	return &Engine{set: set, version: "sha256:" + hex.EncodeToString(h.Sum(nil))}, nil
}

// Version identifies the policy set: a hash over file names and contents.
func (e *Engine) Version() string { return e.version }

// Principal is the principal part of a request.
type Principal struct {
	Name, Org, Region, Country, Clearance string
	Roles                                 []string
	Attributes                            map[string]string
}

// Resource is the dataset part of a request.
type Resource struct {
	Name, Owner, Tier, Region string
}

// Context is the request context.
type Context struct {
	Purpose, Agreement, ClientRegion, QueryKind string
	Now                                         time.Time
	Columns, Classes                            []string
}

// Request is one authorization question.
type Request struct {
	Principal Principal
	Action    string
	Resource  Resource
	Context   Context
}

// Decision is the answer, with the policies that determined it.
type Decision struct {
	Allowed       bool
	Reasons       []string
	Errors        []string
	PolicyVersion string
}

func strSet(xs []string) cedar.Set {
	vs := make([]cedar.Value, len(xs))
	for i, x := range xs {
		vs[i] = cedar.String(x)
	}
	return cedar.NewSet(vs...)
}

// Decide evaluates a request.
func (e *Engine) Decide(r Request) Decision {
	pUID := cedar.NewEntityUID("User", cedar.String(r.Principal.Name))
	rUID := cedar.NewEntityUID("Dataset", cedar.String(r.Resource.Name))
	attrs := cedar.RecordMap{
		"org": cedar.String(r.Principal.Org), "region": cedar.String(r.Principal.Region),
		"country": cedar.String(r.Principal.Country), "clearance": cedar.String(r.Principal.Clearance),
		"roles": strSet(r.Principal.Roles),
	}
	for k, v := range r.Principal.Attributes {
		if _, taken := attrs[cedar.String(k)]; !taken {
			attrs[cedar.String(k)] = cedar.String(v)
		}
	}
	entities := cedar.EntityMap{
		pUID: {UID: pUID, Attributes: cedar.NewRecord(attrs)},
		rUID: {UID: rUID, Attributes: cedar.NewRecord(cedar.RecordMap{
			"owner": cedar.String(r.Resource.Owner), "tier": cedar.String(r.Resource.Tier), "region": cedar.String(r.Resource.Region),
		})},
	}
	now := r.Context.Now.UTC()
	ctx := cedar.NewRecord(cedar.RecordMap{
		"purpose": cedar.String(r.Context.Purpose), "agreement": cedar.String(r.Context.Agreement),
		"client_region": cedar.String(r.Context.ClientRegion), "query_kind": cedar.String(r.Context.QueryKind),
		"now": cedar.Long(now.Unix()), "hour_utc": cedar.Long(now.Hour()),
		"columns": strSet(r.Context.Columns), "classes": strSet(r.Context.Classes),
	})
	dec, diag := e.set.IsAuthorized(entities, cedar.Request{
		Principal: pUID, Action: cedar.NewEntityUID("Action", cedar.String(r.Action)), Resource: rUID, Context: ctx,
	})
	out := Decision{Allowed: dec == cedar.Allow, PolicyVersion: e.version}
	for _, rs := range diag.Reasons {
		out.Reasons = append(out.Reasons, string(rs.PolicyID))
	}
	for _, er := range diag.Errors {
		out.Errors = append(out.Errors, string(er.PolicyID)+": "+er.Message)
	}
	sort.Strings(out.Reasons)
	return out
}

// TestCase is one policy test: a request and the expected decision.
type TestCase struct {
	Name      string `yaml:"name"`
	Principal string `yaml:"principal"`
	Action    string `yaml:"action"`
	Resource  string `yaml:"resource"`
	Context   struct {
		Purpose      string   `yaml:"purpose"`
		Agreement    string   `yaml:"agreement"`
		ClientRegion string   `yaml:"client_region"`
		Now          string   `yaml:"now"`
		Columns      []string `yaml:"columns"`
		Classes      []string `yaml:"classes"`
		QueryKind    string   `yaml:"query_kind"`
	} `yaml:"context"`
	Expect string `yaml:"expect"` // allow | deny
}

// TestResult is the outcome of one case.
type TestResult struct {
	File, Name string
	Passed     bool
	Got        Decision
	Detail     string
}

// RunTests runs the cases in a YAML file (a list, or {cases: [...]}).
// principal and resource resolve names to the workspace's declarations.
func RunTests(e *Engine, file string, doc []byte, principal func(string) (Principal, bool), resource func(string) (Resource, bool)) ([]TestResult, error) {
	var cases []TestCase
	if err := yaml.Unmarshal(doc, &cases); err != nil {
		var wrapped struct {
			Cases []TestCase `yaml:"cases"`
		}
		if err2 := yaml.Unmarshal(doc, &wrapped); err2 != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		cases = wrapped.Cases
	}
	var out []TestResult
	for _, c := range cases {
		res := TestResult{File: file, Name: c.Name}
		p, ok := principal(c.Principal)
		if !ok {
			res.Detail = fmt.Sprintf("unknown principal %q", c.Principal)
			out = append(out, res)
			continue
		}
		r, ok := resource(c.Resource)
		if !ok {
			res.Detail = fmt.Sprintf("unknown dataset %q", c.Resource)
			out = append(out, res)
			continue
		}
		now := time.Now()
		if c.Context.Now != "" {
			t, err := time.Parse(time.RFC3339, c.Context.Now)
			if err != nil {
				res.Detail = "context.now must be RFC 3339"
				out = append(out, res)
				continue
			}
			now = t
		}
		action := c.Action
		if action == "" {
			action = "query"
		}
		res.Got = e.Decide(Request{Principal: p, Action: action, Resource: r, Context: Context{
			Purpose: c.Context.Purpose, Agreement: c.Context.Agreement, ClientRegion: c.Context.ClientRegion,
			QueryKind: c.Context.QueryKind, Now: now, Columns: c.Context.Columns, Classes: c.Context.Classes,
		}})
		want := strings.ToLower(c.Expect) == "allow"
		res.Passed = res.Got.Allowed == want
		if !res.Passed {
			res.Detail = fmt.Sprintf("got %s (reasons %v, errors %v), want %s", decisionWord(res.Got.Allowed), res.Got.Reasons, res.Got.Errors, c.Expect)
		}
		out = append(out, res)
	}
	return out, nil
}

func decisionWord(b bool) string {
	if b {
		return "allow"
	}
	return "deny"
}
