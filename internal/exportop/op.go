package exportop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/anon"
	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/risk"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/synth"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Request is one export request as a channel decodes it.
type Request struct {
	Dataset        string  `json:"dataset"`
	Destination    Dest    `json:"destination"`
	Method         string  `json:"method"` // kanonymity or synthetic
	K              int     `json:"k,omitempty"`
	L              int     `json:"l,omitempty"`
	MaxSuppression float64 `json:"max_suppression,omitempty"`
	Epsilon        float64 `json:"epsilon,omitempty"`
	Delta          float64 `json:"delta,omitempty"`
	Licence        Licence `json:"licence"`
}

// Body is the body of POST /v1/exports: a request with the purpose and
// agreement it is made under.
type Body struct {
	Request
	Purpose   string `json:"purpose"`
	Agreement string `json:"agreement,omitempty"`
}

// Licence is what the recipient may do with a release.
type Licence struct {
	// Expires ends the licence; required.
	Expires time.Time `json:"expires"`
	// OnwardTransfer lets the recipient pass the data on.
	OnwardTransfer bool   `json:"onward_transfer,omitempty"`
	Attribution    string `json:"attribution,omitempty"`
	// DUO are GA4GH Data Use Ontology codes (e.g. DUO:0000042 for general
	// research use, DUO:0000046 non-commercial).
	DUO []string `json:"duo,omitempty"`
}

// Released is the answer: the file and its signed record.
type Released struct {
	ID     string `json:"id"`
	CSV    string `json:"csv"`
	Record Signed `json:"record"`
}

// Service holds what the operation needs from the node.
type Service struct {
	Route    func(m *workspace.Manifest) (engine.Engine, string)
	Key      *federation.NodeKey
	Registry Releases
	// Noise draws the synthetic releases' measurements (crypto/rand).
	Noise *dp.Sampler
	// WorkspaceDir resolves hierarchy files named in exports.yaml.
	WorkspaceDir string
}

// Export is the operation for one request.
func (s *Service) Export(r Request) govern.Op { return &op{s: s, r: r} }

type op struct {
	s *Service
	r Request
}

func (o *op) Kind() share.OpKind { return share.OpExport }

func refuse(rule, format string, args ...any) error {
	return refusal.New(refusal.Forbidden, rule, format, args...)
}

func (o *op) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	ws, r := c.Snap.WS, o.r
	c.Entry.Datasets = []string{r.Dataset}
	c.Entry.QueryKind = "export"
	c.Entry.Extra = map[string]string{"export_method": r.Method, "destination_org": r.Destination.Org, "destination_region": r.Destination.Region}
	m := ws.Datasets[r.Dataset]
	if m == nil {
		return nil, refusal.New(refusal.NotFound, "dataset", "no dataset %s", r.Dataset)
	}
	if ws.Exports == nil || ws.Exports.Datasets[r.Dataset] == nil {
		return nil, refuse("export.controls", "dataset %s has no export controls in exports.yaml", r.Dataset)
	}
	ex := ws.Exports.Datasets[r.Dataset]
	id := c.Caller.Identity
	steward := id.Org == m.Owner && id.HasRole("steward")
	var ag *workspace.Agreement
	if !steward {
		ag = ws.Agreements[c.Agreement]
		switch {
		case c.Agreement == "":
			return nil, refuse("export.authority", "only the owner's stewards, or a recipient under an agreement with the export action, may request an export")
		case ag == nil || ag.OwnerOrg != m.Owner || ag.RecipientOrg != id.Org || !slices.Contains(ag.Datasets, m.Name):
			return nil, refuse("export.authority", "agreement %s does not cover dataset %s for org %s", c.Agreement, m.Name, id.Org)
		case !slices.Contains(ag.Actions, "export"):
			return nil, refuse("export.authority", "agreement %s does not include the export action", c.Agreement)
		case c.Now.Before(ag.ValidFrom) || !c.Now.Before(ag.ValidUntil):
			return nil, refuse("agreement.validity", "agreement %s is not in force", c.Agreement)
		case len(ag.Regions) > 0 && !slices.Contains(ag.Regions, id.Region):
			return nil, refuse("agreement.region", "agreement %s does not permit access from region %q", ag.ID, id.Region)
		case r.Destination.Org != id.Org:
			return nil, refuse("export.destination", "under an agreement, a release goes to the recipient org %s only", id.Org)
		case r.Destination.Region != id.Region:
			// The file goes to the principal: its jurisdiction is theirs,
			// not one the request declares.
			return nil, refuse("export.destination", "under an agreement, a release goes to the recipient's own region %q", id.Region)
		case len(ag.Purposes) > 0 && !slices.Contains(ag.Purposes, c.Purpose):
			return nil, refuse("agreement.purpose", "agreement %s does not allow purpose %q", c.Agreement, c.Purpose)
		}
		c.Entry.Agreement = ag.ID
	}
	if !validName(r.Destination.Org) || !validName(r.Destination.Region) {
		// One spelling per organisation: the registry and the linkage check
		// key on it, so "EU-Institute" must not be a second recipient.
		return nil, refusal.New(refusal.BadSQL, "export.request", "a destination needs an org and a region (jurisdiction), each lower-case letters, digits, '.', '_' or '-'")
	}
	if err := checkLicence(r.Licence, c.Now, ag); err != nil {
		return nil, err
	}
	method, err := allowedMethod(ws.Exports.Tiers[m.Tier], m.Tier, r)
	if err != nil {
		return nil, err
	}
	if r.Method == "kanonymity" && method.MinL > 0 && r.L < method.MinL {
		return nil, refuse("export.parameters", "tier %s to %s needs l ≥ %d", m.Tier, r.Destination.Region, method.MinL)
	}
	check := policy.Request{
		Principal: policy.PrincipalOf(id), Action: policy.ActionExport,
		Resource: policy.Resource{Name: m.Name, Owner: m.Owner, Tier: m.Tier, Region: m.Region},
		Context: policy.Context{Purpose: c.Purpose, Agreement: c.Agreement, ClientRegion: id.Region, QueryKind: "export",
			Channel: c.Caller.Channel, DestinationRegion: r.Destination.Region, Now: c.Now,
			Export: policy.ExportContext{Method: r.Method, DestinationOrg: r.Destination.Org, K: int64(r.K), L: int64(r.L), EpsilonMilli: int64(math.Ceil(r.Epsilon * 1000))}},
	}
	p := &prepared{op: o, m: m, ex: ex, check: check, ag: ag}
	if r.Method == "synthetic" {
		if ex.Budget == nil {
			return nil, refuse("export.budget", "dataset %s has no export budget for synthetic releases", m.Name)
		}
		limit, deltaLimit := dp.BudgetLimits(ex.Budget.Epsilon, ex.Budget.Delta)
		if r.Delta == 0 {
			p.r.Delta = min(1e-9, deltaLimit)
		}
		// δ is the chance the guarantee fails: no more than the dataset's
		// whole budget allows, or a tiny ε would buy a release that is
		// private only in name.
		if !(p.r.Delta > 0 && p.r.Delta <= deltaLimit) {
			return nil, refuse("export.parameters", "δ must lie in (0, %g], the export budget of dataset %s", deltaLimit, m.Name)
		}
		p.rho = dp.RhoForEpsDelta(r.Epsilon, p.r.Delta)
		key := store.BudgetKey{Agreement: "export:" + m.Name}
		if ex.Budget.Period > 0 {
			key.PeriodStart = dp.PeriodStart(c.Now, ex.Budget.Period)
		}
		p.charge = store.Charge{ID: c.Caller.RequestID, Key: key, Rho: p.rho, Epsilon: r.Epsilon, Delta: p.r.Delta, LimitRho: limit, LimitDelta: deltaLimit}
	}
	return p, nil
}

// validName reports whether s is a canonical organisation or region
// name: lower-case ASCII letters and digits, with '.', '_' and '-' inside.
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case (r == '.' || r == '_' || r == '-') && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

func checkLicence(l Licence, now time.Time, ag *workspace.Agreement) error {
	switch {
	case l.Expires.IsZero():
		return refuse("export.licence", "a release needs a licence expiry")
	case !l.Expires.After(now):
		return refuse("export.licence", "the licence expiry is in the past")
	case ag != nil && l.Expires.After(ag.ValidUntil):
		return refuse("export.licence", "the licence cannot outlast agreement %s (ends %s)", ag.ID, ag.ValidUntil.Format(time.RFC3339))
	case ag != nil && l.OnwardTransfer:
		return refuse("export.licence", "onward transfer is not granted under an agreement")
	}
	return nil
}

// allowedMethod finds the control that lets this tier go to the
// destination by the method, and checks the parameters against it.
func allowedMethod(controls []workspace.ExportControl, tier string, r Request) (workspace.ExportMethod, error) {
	var methods []workspace.ExportMethod
	for _, ctl := range controls {
		if slices.Contains(ctl.To, r.Destination.Region) && (len(ctl.Orgs) == 0 || slices.Contains(ctl.Orgs, r.Destination.Org)) {
			methods = append(methods, ctl.Methods...)
		}
	}
	if len(methods) == 0 {
		return workspace.ExportMethod{}, refuse("export.destination", "tier %s may not be exported to %s (%s)", tier, r.Destination.Org, r.Destination.Region)
	}
	var last error
	for _, m := range methods {
		if m.Method != r.Method {
			continue
		}
		switch r.Method {
		case "kanonymity":
			switch {
			case !(r.MaxSuppression >= 0 && r.MaxSuppression <= 1):
				last = refuse("export.parameters", "max_suppression must lie in [0, 1]")
			case r.K < max(m.MinK, 2):
				last = refuse("export.parameters", "tier %s to %s needs k ≥ %d", tier, r.Destination.Region, max(m.MinK, 2))
			case m.MaxSuppression > 0 && r.MaxSuppression > m.MaxSuppression:
				last = refuse("export.parameters", "tier %s to %s allows at most %.3g suppressed", tier, r.Destination.Region, m.MaxSuppression)
			default:
				return m, nil
			}
		case "synthetic":
			if !(r.Epsilon >= synth.MinEpsilon) || (m.MaxEpsilon > 0 && r.Epsilon > m.MaxEpsilon) {
				last = refuse("export.parameters", "tier %s to %s allows synthetic releases with %g ≤ ε ≤ %g", tier, r.Destination.Region, synth.MinEpsilon, m.MaxEpsilon)
				continue
			}
			return m, nil
		}
	}
	if last != nil {
		return workspace.ExportMethod{}, last
	}
	return workspace.ExportMethod{}, refuse("export.method", "tier %s may go to %s only by %s", tier, r.Destination.Region, methodNames(methods))
}

func methodNames(ms []workspace.ExportMethod) string {
	var out []string
	for _, m := range ms {
		if !slices.Contains(out, m.Method) {
			out = append(out, m.Method)
		}
	}
	return strings.Join(out, " or ")
}

type prepared struct {
	*op
	m      *workspace.Manifest
	ex     *workspace.ExportDataset
	check  policy.Request
	ag     *workspace.Agreement
	rho    float64
	charge store.Charge
}

func (p *prepared) Checks() []policy.Request { return []policy.Request{p.check} }

func (p *prepared) Preview(context.Context, *govern.Call) (any, error) {
	return map[string]any{"dataset": p.m.Name, "method": p.r.Method}, nil
}

// Cost charges a synthetic release's ρ to the dataset's export budget.
func (p *prepared) Cost(c *govern.Call) []govern.Charge {
	if p.r.Method != "synthetic" {
		return nil
	}
	return []govern.Charge{{
		Charge: p.charge,
		Announce: func(e *audit.Entry) {
			e.Epsilon, e.Delta, e.Rho = p.r.Epsilon, p.r.Delta, p.rho
		},
		Exhausted: func(st store.BudgetState) *refusal.Error {
			return refusal.New(refusal.BudgetExhausted, "export.budget", "the export budget of dataset %s cannot pay ε = %g", p.m.Name, p.r.Epsilon)
		},
	}}
}

func (p *prepared) Run(ctx context.Context, c *govern.Call) (govern.Unreleased, error) {
	_, earlier, err := registered(ctx, p.s.Registry, p.m.Name, p.r.Destination.Org)
	if err != nil {
		return nil, refusal.StoreUnavailable(err)
	}
	// Earlier releases' quasi-identifiers are read for the linkage check
	// even if they are dropped now; dropped columns are never written.
	var need []string
	for _, e := range earlier {
		need = append(need, e.QuasiIdentifiers...)
	}
	t, err := p.load(ctx, need)
	if err != nil {
		return nil, err
	}
	rec := Record{V: 1, ID: "rel-" + c.Caller.RequestID, RequestID: c.Caller.RequestID, Issued: c.Now.UTC(), Node: p.s.Key.Name,
		Dataset: p.m.Name, Owner: p.m.Owner, Tier: p.m.Tier, Workspace: c.Snap.Version(), Requester: c.Caller.Identity.Principal,
		Agreement: c.Entry.Agreement, Purpose: c.Purpose, Destination: p.r.Destination, Method: p.r.Method,
		Params: Params{K: p.r.K, L: p.r.L, MaxSuppression: p.r.MaxSuppression, Epsilon: p.r.Epsilon, Delta: p.r.Delta}}
	var out bytes.Buffer
	switch p.r.Method {
	case "kanonymity":
		if err := p.anonymise(t, earlier, &rec, &out); err != nil {
			return nil, err
		}
	default:
		// One row per privacy unit (chosen at random): a unit then changes
		// at most one row, which is what the mechanism's sensitivity assumes.
		var keep []int
		rows := p.s.Noise.Perm(t.Rows())
		if u := t.Column(p.m.PrivacyUnit); u >= 0 {
			rows = t.OnePerUnit(u, rows)
		}
		for c, name := range t.Columns {
			if name != p.m.PrivacyUnit && !slices.Contains(p.ex.Drop, name) {
				keep = append(keep, c)
			}
		}
		res, err := synth.Synthesize(t.Subset(rows, keep), synth.Config{Epsilon: p.r.Epsilon, Delta: p.r.Delta}, p.s.Noise)
		if err != nil {
			return nil, refusal.New(refusal.BadSQL, "export.parameters", "%v", err)
		}
		if err := anon.WriteTable(&out, res.Table); err != nil {
			return nil, err
		}
		rec.Columns, rec.Rows = res.Table.Columns, res.Table.Rows()
	}
	sum := sha256.Sum256(out.Bytes())
	rec.SHA256 = hex.EncodeToString(sum[:])
	rec.Licence = odrl(rec, p.r.Licence)
	rec.Lineage = openLineage(rec)
	signed, err := Sign(p.s.Key, rec)
	if err != nil {
		return nil, err
	}
	return &unreleased{rec: rec, signed: signed, file: out.Bytes(), reg: p.s.Registry, after: len(earlier)}, nil
}

// load reads the dataset's rows through the engine, as strings, without
// the columns the controls drop, except the privacy unit (which k and the
// synthetic path's contribution bound need) and the columns in need.
func (p *prepared) load(ctx context.Context, need []string) (*anon.Table, error) {
	eng, rel := p.s.Route(p.m)
	var cols []string
	for _, col := range p.m.Columns {
		if !slices.Contains(p.ex.Drop, col.Name) || col.Name == p.m.PrivacyUnit || slices.Contains(need, col.Name) {
			cols = append(cols, col.Name)
		}
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = `"` + strings.ReplaceAll(c, `"`, `""`) + `"`
	}
	res, err := eng.Query(ctx, "SELECT "+strings.Join(quoted, ", ")+" FROM "+rel)
	if err != nil {
		return nil, refusal.New(refusal.Engine, "engine", "the engine could not read dataset %s", p.m.Name).WithCause(err)
	}
	var b bytes.Buffer
	b.WriteString(strings.Join(cols, ",") + "\n")
	w := csv.NewWriter(&b)
	rec := make([]string, len(cols))
	for _, row := range res.Rows {
		for i, v := range row {
			rec[i] = text(v)
		}
		w.Write(rec)
	}
	w.Flush()
	return anon.ReadTable(&b)
}

func (p *prepared) anonymise(t *anon.Table, earlier []Record, rec *Record, out *bytes.Buffer) error {
	hs, digests, err := hierarchies(p.s, p.ex, t, p.ex.QuasiIdentifiers)
	if err != nil {
		return err
	}
	// k counts patients (privacy units), not rows.
	models := anon.Models{K: p.r.K, Unit: p.m.PrivacyUnit}
	if p.r.L > 0 {
		if p.ex.Sensitive == "" {
			return refusal.New(refusal.BadSQL, "export.parameters", "l-diversity needs a sensitive column in the export controls")
		}
		models.Sensitive, models.L, models.LKind = p.ex.Sensitive, p.r.L, anon.LDistinct
	}
	prob, err := anon.NewProblem(t, anon.Config{QI: p.ex.QuasiIdentifiers, Hierarchies: hs, Models: models, MaxSuppression: p.r.MaxSuppression})
	if err != nil {
		return refusal.New(refusal.BadSQL, "export.controls", "%v", err)
	}
	res, err := prob.Search()
	if err != nil {
		return refuse("export.parameters", "no generalisation of %s reaches k = %d (l = %d) within %.3g suppression", p.m.Name, p.r.K, p.r.L, p.r.MaxSuppression)
	}
	levels := res.Optimum.Levels
	applied, err := prob.Apply(levels)
	if err != nil {
		return err
	}
	joined, lowest, err := p.joinedK(t, earlier, applied)
	if err != nil {
		return err
	}
	if lowest != "" && joined < p.r.K {
		return refuse("export.linkage", "joined with earlier release %s to %s, this release would leave records among %d < k = %d", lowest, p.r.Destination.Org, joined, p.r.K)
	}
	var drop []string
	for _, c := range t.Columns {
		if slices.Contains(p.ex.Drop, c) {
			drop = append(drop, c)
		}
	}
	rows, suppressed, err := applied.Write(out, drop, p.s.Noise.Perm(t.Rows()))
	if err != nil {
		return err
	}
	h := risk.HistogramOf(applied.Sizes)
	s := risk.SampleRisk(h, 0.2)
	pop := risk.PopulationRisk(h, 0.01)
	rec.QuasiIdentifiers, rec.Levels, rec.Hierarchies = p.ex.QuasiIdentifiers, levels, digests
	rec.Columns = slices.DeleteFunc(slices.Clone(t.Columns), func(c string) bool { return slices.Contains(drop, c) })
	rec.Rows, rec.Suppressed = rows, suppressed
	rec.Risk = &RiskReport{Highest: s.Highest, Average: s.Average, AtRisk: s.AtRisk, SampleUniques: s.Uniques,
		PopulationModel: string(pop.Model), PopulationUnique: pop.Uniques, JoinedK: joined}
	return nil
}

// joinedK is the least number of records a record of this release shares
// both its classes with, over each earlier k-anonymous release of the
// dataset to the same org (rows suppressed in either do not count: they
// carry no quasi-identifiers), and the release that brings it lowest.
func (p *prepared) joinedK(t *anon.Table, earlier []Record, now *anon.Applied) (int, string, error) {
	least, which := math.MaxInt, ""
	for _, e := range earlier {
		if e.Method != "kanonymity" {
			continue
		}
		// Rebuild the earlier release's generalisation; if its hierarchies
		// changed since, the join cannot be judged, so nothing is released.
		hs, digests, err := hierarchies(p.s, p.ex, t, e.QuasiIdentifiers)
		changed := err != nil
		for q, d := range e.Hierarchies {
			changed = changed || digests[q] != d
		}
		if changed {
			return 0, "", refuse("export.linkage", "earlier release %s to %s was generalised by hierarchies that have changed since, so its linkage with this release cannot be judged", e.ID, p.r.Destination.Org)
		}
		models := anon.Models{K: e.Params.K, Unit: p.m.PrivacyUnit}
		if e.Params.L > 0 && p.ex.Sensitive != "" {
			models.Sensitive, models.L, models.LKind = p.ex.Sensitive, e.Params.L, anon.LDistinct
		}
		old, err := anon.NewProblem(t, anon.Config{QI: e.QuasiIdentifiers, Hierarchies: hs, Models: models, MaxSuppression: 1})
		if err != nil {
			return 0, "", refuse("export.linkage", "earlier release %s used quasi-identifiers this dataset no longer has", e.ID)
		}
		// The earlier release as it went out: its violating classes suppressed.
		then, err := old.Apply(e.Levels)
		if err != nil {
			return 0, "", refuse("export.linkage", "earlier release %s used levels the hierarchies no longer have", e.ID)
		}
		// Joint classes, counted in privacy units as k is.
		unit := t.Column(p.m.PrivacyUnit)
		joint := map[[2]uint64]map[int32]bool{}
		for r := range now.Keys {
			if now.Suppressed[r] || then.Suppressed[r] {
				continue
			}
			k := [2]uint64{now.Keys[r], then.Keys[r]}
			if joint[k] == nil {
				joint[k] = map[int32]bool{}
			}
			u := int32(r)
			if unit >= 0 {
				u = t.Codes[unit][r]
			}
			joint[k][u] = true
		}
		for _, units := range joint {
			if len(units) < least {
				least, which = len(units), e.ID
			}
		}
	}
	if which == "" {
		return 0, "", nil
	}
	return least, which, nil
}

// hierarchies builds the hierarchies of some columns by the controls'
// generalise rules, with the SHA-256 of each.
func hierarchies(s *Service, ex *workspace.ExportDataset, t *anon.Table, columns []string) (map[string]*anon.Hierarchy, map[string]string, error) {
	hs, digests := map[string]*anon.Hierarchy{}, map[string]string{}
	for _, q := range columns {
		c := t.Column(q)
		rule := ex.Generalise[q]
		if c < 0 || rule == "" {
			return nil, nil, refuse("export.controls", "quasi-identifier %s needs a column and a generalise rule in exports.yaml", q)
		}
		var h *anon.Hierarchy
		var err error
		switch rule {
		case "prefix", "date", "suppress":
			h, err = anon.BuildHierarchy(rule, q, t.Dict[c])
		default:
			var f *os.File
			f, err = os.Open(filepath.Join(s.WorkspaceDir, rule))
			if err == nil {
				h, err = anon.ReadHierarchy(q, f)
				f.Close()
			}
		}
		if err != nil {
			return nil, nil, refusal.New(refusal.BadSQL, "export.controls", "the hierarchy of %s: %v", q, err)
		}
		b, _ := json.Marshal(h.Rows)
		sum := sha256.Sum256(b)
		hs[q], digests[q] = h, hex.EncodeToString(sum[:])
	}
	return hs, digests, nil
}

type unreleased struct {
	rec    Record
	signed Signed
	file   []byte
	reg    Releases
	// after is how many releases of the dataset to the org were judged.
	after int
}

func (u *unreleased) Release(ctx context.Context, c *govern.Call) (any, error) {
	b, err := json.Marshal(u.signed)
	if err != nil {
		return nil, err
	}
	ok, err := u.reg.PutExportRelease(ctx, store.ExportRelease{Dataset: u.rec.Dataset, Org: u.rec.Destination.Org, ID: u.rec.ID, Record: b}, u.after)
	if err != nil {
		return nil, refusal.StoreUnavailable(err)
	}
	if !ok {
		// Another release to the same org was registered meanwhile; this
		// one was not judged against it, so it does not leave.
		return nil, refusal.New(refusal.Unavailable, "export.concurrent", "another release of %s to %s was registered at the same time; retry", u.rec.Dataset, u.rec.Destination.Org)
	}
	c.Entry.RowsReturned = int64(u.rec.Rows - u.rec.Suppressed)
	c.Entry.RowsSuppressed = int64(u.rec.Suppressed)
	c.Entry.Extra["release"] = u.rec.ID
	c.Entry.Extra["release_sha256"] = u.rec.SHA256
	return Released{ID: u.rec.ID, CSV: string(u.file), Record: u.signed}, nil
}

func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case time.Time:
		if x.Hour() == 0 && x.Minute() == 0 && x.Second() == 0 && x.Nanosecond() == 0 {
			return x.Format("2006-01-02")
		}
		return x.UTC().Format(time.RFC3339)
	default:
		return fmt.Sprint(x)
	}
}

// List is the operation behind GET /v1/exports: the registered releases
// of a dataset the caller may see: all of them for the owner's stewards
// (Cedar action admin on the dataset), a recipient's own otherwise.
func (s *Service) List(dataset string) govern.Op { return &listOp{s: s, dataset: dataset} }

type listOp struct {
	s       *Service
	dataset string
}

func (o *listOp) Kind() share.OpKind { return share.OpExportList }
func (o *listOp) Light()             {}

func (o *listOp) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	m := c.Snap.WS.Datasets[o.dataset]
	c.Entry.Datasets = []string{o.dataset}
	if m == nil {
		return nil, refusal.New(refusal.NotFound, "dataset", "no dataset %s", o.dataset)
	}
	id := c.Caller.Identity
	org := id.Org
	var checks []policy.Request
	if id.Org == m.Owner && id.HasRole("steward") {
		org = ""
		checks = []policy.Request{{Principal: policy.PrincipalOf(id), Action: policy.ActionAdmin,
			Resource: policy.Resource{Name: m.Name, Owner: m.Owner, Tier: m.Tier, Region: m.Region},
			Context:  policy.Context{ClientRegion: id.Region, Channel: c.Caller.Channel, Now: c.Now}}}
	}
	out, _, err := registered(ctx, o.s.Registry, m.Name, org)
	if err != nil {
		return nil, refusal.StoreUnavailable(err)
	}
	c.Entry.RowsReturned = int64(len(out))
	return listed{checks: checks, v: out}, nil
}

type listed struct {
	checks []policy.Request
	v      []Signed
}

func (l listed) Checks() []policy.Request                                     { return l.checks }
func (l listed) Preview(context.Context, *govern.Call) (any, error)           { return l.v, nil }
func (l listed) Run(context.Context, *govern.Call) (govern.Unreleased, error) { return l, nil }
func (l listed) Release(context.Context, *govern.Call) (any, error)           { return l.v, nil }
