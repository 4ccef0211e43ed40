// Package policy evaluates an Airlock workspace's Cedar policies
// (policies/*.cedar) with cedar-go.
//
// Decisions are deny by default: a request is allowed only if some permit
// policy matches and no forbid policy does. On top of Cedar's semantics an
// evaluation error never allows: Cedar skips a policy whose condition errors
// (a missing attribute, a type error), which for a forbid would let a request
// through, so here a forbid that errors denies the request. A permit that
// errors simply does not permit (as in Cedar). Guard optional attributes with
// "has" (principal has hospital_region && ...).
//
// # Entity model
//
//	principal  User::"<name>"     org, country, region, clearance: String
//	                              roles: Set<String>
//	                              each Attributes entry: String (never shadowing the above)
//	resource   Dataset::"<name>"  owner, tier, region: String
//	action     Action::"query" | Action::"plan" | Action::"audit_read" | Action::"admin" | Action::"export"
//	context    purpose, agreement, client_region, query_kind: String
//	           now (unix seconds), hour_utc (0-23): Long
//	           columns, classes: Set<String>
//
// # Policy ids and version
//
// A policy's id is its @id annotation when it has one (unique across all
// files), otherwise "<file>:<line>". A Decision's Reasons are the ids of the
// policies that determined it. The policy version, "sha256:<hex>", is a hash
// over the sorted (file name, content) pairs and is recorded in every
// decision.
//
// An Engine is immutable once loaded and safe for concurrent use; hot reload
// swaps whole engines.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go"

	"github.com/airlock-dev/airlock/internal/share"
)

// The actions policies are asked about.
const (
	ActionQuery     = "query"
	ActionPlan      = "plan"
	ActionAuditRead = "audit_read"
	ActionAdmin     = "admin"
	ActionExport    = "export"
)

// Actions lists every action Airlock asks policies about.
var Actions = []string{ActionQuery, ActionPlan, ActionAuditRead, ActionAdmin, ActionExport}

// Engine is a compiled, immutable policy set, safe for concurrent use.
type Engine struct {
	set     *cedar.PolicySet
	version string
	forbid  map[cedar.PolicyID]bool // policies whose effect is forbid
	ids     []string                // in file order
}

// Load compiles the policy files (file name, e.g. "base.cedar", to Cedar
// text). A parse error names the file, line and column
// ("policies/base.cedar:3:14: parse error: ..."); so does a duplicate or
// empty @id.
func Load(files map[string][]byte) (*Engine, error) {
	e := &Engine{set: cedar.NewPolicySet(), version: Version(files), forbid: map[cedar.PolicyID]bool{}}
	where := map[cedar.PolicyID]string{} // id -> position that declared it
	for _, n := range sortedNames(files) {
		list, err := cedar.NewPolicyListFromBytes(n, files[n])
		if err != nil {
			return nil, parseError(n, err)
		}
		for _, p := range list {
			pos := p.Position()
			at := fmt.Sprintf("policies/%s:%d:%d", n, pos.Line, pos.Column)
			id := cedar.PolicyID(fmt.Sprintf("%s:%d", n, pos.Line))
			if a, ok := p.Annotations()["id"]; ok {
				if strings.TrimSpace(string(a)) == "" {
					return nil, fmt.Errorf("%s: empty @id", at)
				}
				id = cedar.PolicyID(a)
			}
			if prev, dup := where[id]; dup {
				return nil, fmt.Errorf("%s: policy id %q is already used at %s", at, id, prev)
			}
			where[id] = at
			e.set.Add(id, p)
			e.ids = append(e.ids, string(id))
			if p.Effect() == cedar.Forbid {
				e.forbid[id] = true
			}
		}
	}
	return e, nil
}

func sortedNames(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// parseError rewrites cedar-go's "parser error: parse error at <input>:L:C
// ..." (cedar-go does not put the file name in parse errors) into
// "policies/<file>:L:C: parse error: ...".
func parseError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "parser error: ")
	if rest, ok := strings.CutPrefix(msg, "parse error at <input>:"); ok {
		if pos, detail, ok := strings.Cut(rest, " "); ok {
			return fmt.Errorf("policies/%s:%s: parse error: %s", file, pos, detail)
		}
	}
	return fmt.Errorf("policies/%s: %s", file, strings.ReplaceAll(msg, "<input>", file))
}

// Version returns the version of a set of policy files: "sha256:" and the hex
// SHA-256 over the (name, content) pairs sorted by name, each content
// length-prefixed. It does not depend on map order and changes whenever any
// byte of any file, or any file name, changes.
func Version(files map[string][]byte) string {
	h := sha256.New()
	for _, n := range sortedNames(files) {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Version identifies the loaded policy set (see the package function Version).
func (e *Engine) Version() string { return e.version }

// IDs lists the ids of the loaded policies, in file order.
func (e *Engine) IDs() []string { return slices.Clone(e.ids) }

// Principal is the principal of a request: an authenticated identity's name
// and attributes.
type Principal struct {
	Name, Org, Region, Country, Clearance string
	Roles                                 []string
	Attributes                            map[string]string
}

// Resource is the dataset a request is about.
// PrincipalOf is an authenticated identity as policies see it.
func PrincipalOf(id share.Identity) Principal {
	return Principal{Name: id.Principal, Org: id.Org, Region: id.Region, Country: id.Country, Clearance: id.Clearance, Roles: id.Roles, Attributes: id.Attributes}
}

type Resource struct {
	Name, Owner, Tier, Region string
}

// Context is the request context.
type Context struct {
	Purpose, Agreement, ClientRegion, QueryKind string
	// Channel is how the request came (http, pgwire, cli, peer); Peer the
	// peer node that sent it, if any.
	Channel, Peer string
	// DestinationRegion is where the answer goes: the principal's region
	// (for a peer's request, as the peer vouches). PeerRegion is the
	// region of the peer node that carries it there (from the peers
	// file; "" for local requests). With resource.region they are what
	// residency policies compare.
	DestinationRegion, PeerRegion string
	// Egress is what the agreement lets leave the data's region.
	Egress []Egress
	// Export describes a requested release (action export): method,
	// destination organisation and parameters.
	Export ExportContext
	// Now is the decision time; zero means time.Now().
	Now              time.Time
	Columns, Classes []string
}

// ExportContext is context.export: {method, destination_org, k, l,
// epsilon_milli} (ε in thousandths, as Cedar compares integers); the
// destination's jurisdiction is context.destination_region.
type ExportContext struct {
	Method, DestinationOrg string
	K, L, EpsilonMilli     int64
}

// Egress is one (destination region, output kind) an agreement lets
// leave; policies test context.egress.contains({region: ..., output: ...}).
type Egress struct{ Region, Output string }

// Request is one authorization question.
type Request struct {
	Principal Principal
	Action    string // one of Actions
	Resource  Resource
	Context   Context
}

// Decision is the answer to a Request.
type Decision struct {
	Allowed bool
	// Reasons are the ids of the policies that determined the decision: the
	// matching forbids; else, when a permit matched but a forbid failed to
	// evaluate, the erroring forbids; else the matching permits. Empty when
	// nothing permits.
	Reasons []string
	// Errors are the evaluation errors, "<policy id>: <message>".
	Errors []string
	// PolicyVersion is the version of the engine that decided.
	PolicyVersion string
}

func strSet(xs []string) cedar.Set {
	vs := make([]cedar.Value, len(xs))
	for i, x := range xs {
		vs[i] = cedar.String(x)
	}
	return cedar.NewSet(vs...)
}

func egressSet(es []Egress) cedar.Set {
	vs := make([]cedar.Value, len(es))
	for i, e := range es {
		vs[i] = cedar.NewRecord(cedar.RecordMap{"region": cedar.String(e.Region), "output": cedar.String(e.Output)})
	}
	return cedar.NewSet(vs...)
}

// Decide evaluates a request. It denies when no permit matches, when a
// forbid matches, and when a forbid fails to evaluate. A nil Engine denies.
func (e *Engine) Decide(r Request) Decision {
	if e == nil || e.set == nil {
		return Decision{Errors: []string{"no policies loaded"}}
	}
	pUID := cedar.NewEntityUID("User", cedar.String(r.Principal.Name))
	rUID := cedar.NewEntityUID("Dataset", cedar.String(r.Resource.Name))
	attrs := cedar.RecordMap{
		"org": cedar.String(r.Principal.Org), "region": cedar.String(r.Principal.Region),
		"country": cedar.String(r.Principal.Country), "clearance": cedar.String(r.Principal.Clearance),
		"roles": strSet(r.Principal.Roles),
	}
	for k, v := range r.Principal.Attributes {
		if _, builtin := attrs[cedar.String(k)]; !builtin {
			attrs[cedar.String(k)] = cedar.String(v)
		}
	}
	entities := cedar.EntityMap{
		pUID: {UID: pUID, Attributes: cedar.NewRecord(attrs)},
		rUID: {UID: rUID, Attributes: cedar.NewRecord(cedar.RecordMap{
			"owner": cedar.String(r.Resource.Owner), "tier": cedar.String(r.Resource.Tier), "region": cedar.String(r.Resource.Region),
		})},
	}
	now := r.Context.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	ctx := cedar.NewRecord(cedar.RecordMap{
		"purpose": cedar.String(r.Context.Purpose), "agreement": cedar.String(r.Context.Agreement),
		"client_region": cedar.String(r.Context.ClientRegion), "query_kind": cedar.String(r.Context.QueryKind),
		"now": cedar.Long(now.Unix()), "hour_utc": cedar.Long(now.Hour()),
		"columns": strSet(r.Context.Columns), "classes": strSet(r.Context.Classes),
		"channel": cedar.String(r.Context.Channel), "peer": cedar.String(r.Context.Peer),
		"destination_region": cedar.String(r.Context.DestinationRegion), "peer_region": cedar.String(r.Context.PeerRegion), "egress": egressSet(r.Context.Egress),
		"export": cedar.NewRecord(cedar.RecordMap{
			"method": cedar.String(r.Context.Export.Method), "destination_org": cedar.String(r.Context.Export.DestinationOrg),
			"k": cedar.Long(r.Context.Export.K), "l": cedar.Long(r.Context.Export.L), "epsilon_milli": cedar.Long(r.Context.Export.EpsilonMilli),
		}),
	})
	dec, diag := e.set.IsAuthorized(entities, cedar.Request{
		Principal: pUID, Action: cedar.NewEntityUID("Action", cedar.String(r.Action)), Resource: rUID, Context: ctx,
	})
	out := Decision{Allowed: dec == cedar.Allow, PolicyVersion: e.version}
	for _, rs := range diag.Reasons {
		out.Reasons = append(out.Reasons, string(rs.PolicyID))
	}
	var erringForbids []string
	for _, er := range diag.Errors {
		out.Errors = append(out.Errors, string(er.PolicyID)+": "+er.Message)
		if e.forbid[er.PolicyID] {
			erringForbids = append(erringForbids, string(er.PolicyID))
		}
	}
	// Cedar skipped the erroring forbids; an error must never allow.
	if out.Allowed && len(erringForbids) > 0 {
		out.Allowed = false
		out.Reasons = erringForbids
	}
	sort.Strings(out.Reasons)
	sort.Strings(out.Errors)
	return out
}

// The attributes Airlock sends, by the variable that holds them (see
// Decide). A policy reading any other attribute would always fail to
// evaluate, which denies (a permit) or errs closed (a forbid): a typo that
// looks like a rule.
var (
	PrincipalAttributes = []string{"org", "region", "country", "clearance", "roles"}
	ResourceAttributes  = []string{"owner", "tier", "region"}
	ContextAttributes   = []string{"purpose", "agreement", "client_region", "query_kind", "now", "hour_utc", "columns", "classes",
		"channel", "peer", "destination_region", "peer_region", "egress", "export"}
)

var (
	lineComment = regexp.MustCompile(`//[^\n]*`)
	stringLit   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	attrRef     = regexp.MustCompile(`\b(principal|resource|context)\s*(?:\.\s*([A-Za-z_]\w*)|\s+has\s+([A-Za-z_]\w*))`)
)

// UnknownAttribute is a policy's reference to an attribute Airlock never
// sends: where it is, and what the variable does have.
type UnknownAttribute struct {
	File      string // policy file name (e.g. base.cedar)
	Line, Col int
	Var, Attr string   // principal.clearence: "principal", "clearence"
	Known     []string // the attributes Var has
}

// CheckAttributes finds attribute references in the policy files that
// name no attribute Airlock sends; extraPrincipal are the principal
// attributes a workspace declares (principals' attributes).
func CheckAttributes(files map[string][]byte, extraPrincipal []string) []UnknownAttribute {
	known := map[string][]string{
		"principal": append(append([]string{}, PrincipalAttributes...), extraPrincipal...),
		"resource":  ResourceAttributes,
		"context":   ContextAttributes,
	}
	var out []UnknownAttribute
	for _, n := range sortedNames(files) {
		// Blank comments and strings, keeping every offset.
		text := string(files[n])
		blank := func(s string) string { return strings.Repeat(" ", len(s)) }
		text = lineComment.ReplaceAllStringFunc(text, blank)
		text = stringLit.ReplaceAllStringFunc(text, blank)
		for _, m := range attrRef.FindAllStringSubmatchIndex(text, -1) {
			v := text[m[2]:m[3]]
			attr := ""
			if m[4] >= 0 {
				attr = text[m[4]:m[5]]
			} else {
				attr = text[m[6]:m[7]]
			}
			if slices.Contains(known[v], attr) {
				continue
			}
			out = append(out, UnknownAttribute{File: n, Line: strings.Count(text[:m[0]], "\n") + 1,
				Col: m[0] - strings.LastIndex(text[:m[0]], "\n"), Var: v, Attr: attr, Known: known[v]})
		}
	}
	return out
}
