// Package gateway is Airlock's one request pipeline. Every channel (HTTP,
// Postgres wire, CLI) hands it an authenticated Request and gets back a
// governed Response or a refusal:
//
//	parse → resolve agreement → authorize (Cedar) → plan (rules, masks,
//	filters, thresholds) → execute → output controls → audit → respond
//
// Every decision, allowed or refused, is appended to the audit log before
// the response leaves; if the audit append fails, nothing is released.
package gateway

import (
	"context"
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"
	"golang.org/x/sync/singleflight"

	"github.com/airlock-dev/airlock/internal/admission"
	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/identity"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Snapshot is the declarative state a request is decided under: the
// workspace files and the compiled policies. It is swapped atomically on
// reload, so one request sees one version throughout.
type Snapshot struct {
	WS     *workspace.Workspace
	Policy *policy.Engine
}

// Auditor appends a decision to the audit log durably.
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (uint64, error)
}

// Gateway runs the pipeline.
type Gateway struct {
	snap atomic.Pointer[Snapshot]
	// Route says which engine holds a dataset and its relation name there:
	// the embedded DuckDB, or the owner's PostgreSQL for datasets governed
	// in place.
	Route func(m *workspace.Manifest) (engine.Engine, string)
	Store store.Store
	Audit Auditor
	Now   func() time.Time
	// MaskSecret derives the per-agreement keys of hmac masks.
	MaskSecret []byte
	sampler    *dp.Sampler
	// flight answers identical concurrent DP queries once.
	flight singleflight.Group
	// Admission bounds the queries running at once and each principal's
	// rate; nil admits everything.
	Admission *admission.Controller
	// Metrics, if set, counts every audited decision.
	Metrics interface {
		Decision(channel, decision, rule string, took time.Duration)
	}
}

// New returns a gateway over one engine.
func New(snap *Snapshot, eng engine.Engine, st store.Store, au Auditor, maskSecret []byte) *Gateway {
	g := &Gateway{Store: st, Audit: au, Now: time.Now, MaskSecret: maskSecret}
	g.sampler = dp.NewSampler(nil)
	g.Route = func(m *workspace.Manifest) (engine.Engine, string) { return eng, query.QuoteIdent(m.Name) }
	g.snap.Store(snap)
	return g
}

// Swap installs a new snapshot for the requests that start after it.
func (g *Gateway) Swap(s *Snapshot) { g.snap.Store(s) }

// Snapshot returns the snapshot in force.
func (g *Gateway) Snapshot() *Snapshot { return g.snap.Load() }

// Request is one governed question.
type Request struct {
	Channel    string // http, pgwire, cli
	ClientAddr string
	Identity   identity.Identity
	SQL        string
	Params     []any
	Purpose    string
	Agreement  string // optional: which agreement to act under
	DryRun     bool   // plan only: cost and shape, nothing executed or spent
	// Describe is a wire protocol's Parse/Describe step: the query is
	// checked and planned to learn its columns, nothing runs and nothing is
	// audited (the Execute that follows is).
	Describe bool
}

// Response is a governed answer.
type Response struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	// RowsSuppressed is how many groups the output controls withheld. It
	// is a count of hidden data, so it goes to the audit log (read only by
	// stewards and auditors) and never to the client.
	RowsSuppressed int64     `json:"-"`
	Access         string    `json:"access"`
	Agreement      string    `json:"agreement,omitempty"`
	PolicyVersion  string    `json:"policy_version"`
	AuditIndex     uint64    `json:"audit_index"`
	Notes          []string  `json:"notes,omitempty"`
	Plan           *PlanInfo `json:"plan,omitempty"`
	DP             *DPReport `json:"dp,omitempty"`
	Quota          *RowQuota `json:"row_quota,omitempty"`
}

// PlanInfo describes a dry run.
type PlanInfo struct {
	Access   string   `json:"access"`
	Datasets []string `json:"datasets"`
	Columns  []string `json:"columns"`
	MinUnits []int    `json:"min_units,omitempty"`
	MaxRows  int      `json:"max_rows,omitempty"`
	// Types are the columns' types (text, integer, double, date, timestamp, boolean).
	Types []string `json:"types,omitempty"`
	// SQL is the generated engine SQL; kept server-side (it may hold mask
	// keys) and never serialized to clients.
	SQL string `json:"-"`
}

// Query runs one request through the pipeline. The error, if any, is a
// *refusal.Error safe to show to the client.
func (g *Gateway) Query(ctx context.Context, req Request) (*Response, error) {
	start := time.Now()
	resp, err := g.query(ctx, req)
	if g.Metrics != nil && !req.Describe {
		decision, rule := "allow", ""
		if err != nil {
			decision, rule = "deny", refusal.As(err).Rule
		}
		g.Metrics.Decision(req.Channel, decision, rule, time.Since(start))
	}
	return resp, err
}

func (g *Gateway) query(ctx context.Context, req Request) (*Response, error) {
	snap := g.snap.Load()
	now := g.Now().UTC()
	ent := entryFor(snap, req, now)
	if req.Describe {
		req.DryRun = false
		return g.run(ctx, snap, req, now, &ent)
	}
	if g.Admission != nil {
		release, v := g.Admission.Admit(ctx, req.Identity.Principal)
		if v != admission.Admitted {
			return nil, g.deny(ctx, ent, admissionRefusal(v))
		}
		defer release()
	}
	resp, err := g.run(ctx, snap, req, now, &ent)
	if err != nil {
		return nil, g.deny(ctx, ent, refusal.As(err))
	}
	ent.Decision = "allow"
	ent.RowsReturned = int64(len(resp.Rows))
	ent.RowsSuppressed = resp.RowsSuppressed
	idx, aerr := g.Audit.Append(context.WithoutCancel(ctx), ent)
	if aerr != nil {
		return nil, refusal.AuditUnavailable()
	}
	resp.AuditIndex = idx
	resp.PolicyVersion = ent.PolicyVersion
	return resp, nil
}

// Refuse audits a refusal decided at a channel's edge, before the request
// reached the pipeline (a parameter that does not decode, a Bind that does
// not match its statement, a recovered panic), and returns it.
func (g *Gateway) Refuse(ctx context.Context, req Request, r *refusal.Error) error {
	if g.Metrics != nil {
		g.Metrics.Decision(req.Channel, "deny", r.Rule, 0)
	}
	snap := g.snap.Load()
	return g.deny(ctx, entryFor(snap, req, g.Now().UTC()), r)
}

// reserve appends the entry that announces a charge before it is made, so
// that every charge in the ledger is explained by the log even if the
// process dies before the request is decided; it returns the charge id,
// which the deciding entry (ent) carries too.
func (g *Gateway) reserve(ctx context.Context, ent *audit.Entry, set func(*audit.Entry)) (string, error) {
	var b [12]byte
	crand.Read(b[:])
	id := hex.EncodeToString(b[:])
	r := *ent
	r.Decision, r.ChargeID = audit.DecisionReserve, id
	set(&r)
	if _, err := g.Audit.Append(context.WithoutCancel(ctx), r); err != nil {
		return "", refusal.AuditUnavailable()
	}
	ent.ChargeID = id
	return id, nil
}

// entryFor is the audit entry of a request before it is decided.
func entryFor(snap *Snapshot, req Request, now time.Time) audit.Entry {
	ent := audit.Entry{
		Time:          now,
		Principal:     req.Identity.Principal,
		Org:           req.Identity.Org,
		Agreement:     req.Agreement,
		Purpose:       req.Purpose,
		Channel:       req.Channel,
		ClientAddr:    req.ClientAddr,
		SQL:           req.SQL,
		PolicyVersion: snap.Policy.Version(),
		QueryKind:     "query",
	}
	if req.DryRun {
		ent.QueryKind = "plan"
	}
	if fp, err := pg.Fingerprint(req.SQL); err == nil {
		ent.Fingerprint = fp
	}
	return ent
}

// deny appends a refusal to the audit log before it is returned; if the
// log cannot take it, the client learns only that.
func (g *Gateway) deny(ctx context.Context, ent audit.Entry, r *refusal.Error) error {
	ent.Decision, ent.Code, ent.Rule, ent.Message = "deny", string(r.Code), r.Rule, r.Message
	if _, aerr := g.Audit.Append(context.WithoutCancel(ctx), ent); aerr != nil {
		return refusal.AuditUnavailable()
	}
	return r
}

func (g *Gateway) run(ctx context.Context, snap *Snapshot, req Request, now time.Time, ent *audit.Entry) (*Response, error) {
	ws := snap.WS
	if len(req.SQL) > ws.Config.Limits.MaxSQLBytes {
		return nil, refusal.New(refusal.TooLarge, "limit.sql_size", "query text exceeds %d bytes", ws.Config.Limits.MaxSQLBytes)
	}
	// The parser stops at a NUL while the audit log and fingerprint keep
	// the whole text: what is audited must be what runs.
	if strings.ContainsRune(req.SQL, 0) {
		return nil, refusal.New(refusal.BadSQL, "sql.nul", "the query text contains a NUL byte")
	}
	for _, p := range req.Params {
		if s, ok := p.(string); ok && strings.ContainsRune(s, 0) {
			return nil, refusal.New(refusal.BadSQL, "sql.nul", "a parameter contains a NUL byte")
		}
	}
	full := func(name string) *workspace.Manifest { return ws.Datasets[name] }
	q, err := query.Parse(req.SQL, full, req.Params)
	if err != nil {
		return nil, err
	}
	datasets := datasetsOf(q)
	ent.Datasets = datasets

	ag, grants, err := g.resolve(ctx, snap, req, now, datasets)
	if err != nil {
		return nil, err
	}
	if ag != nil {
		ent.Agreement = ag.ID
	}
	// Parse again against each grant's view of its dataset, so columns an
	// agreement does not expose do not exist for this request (SELECT *
	// included).
	if needsView(grants) {
		view := func(name string) *workspace.Manifest {
			m := ws.Datasets[name]
			if m == nil {
				return nil
			}
			return viewOf(m, grants[name])
		}
		if q, err = query.Parse(req.SQL, view, req.Params); err != nil {
			return nil, err
		}
	}
	eng, err := g.engineFor(ws, datasets)
	if err != nil {
		return nil, err
	}
	planner := query.Planner{Dialect: query.Dialect(eng.Dialect()), Seed: randomSeed}
	plan, err := planner.Plan(q, grants)
	if err != nil {
		return nil, err
	}
	var canonical *query.Plan
	if plan.Kind == query.AccessDP && !req.DryRun && !req.Describe {
		// The same plan with a fixed seed: the bound query, for the answer cache.
		fixed := query.Planner{Dialect: planner.Dialect, Seed: func() uint64 { return 0 }}
		if canonical, err = fixed.Plan(q, grants); err != nil {
			return nil, err
		}
	}
	ent.Columns = plan.Touched
	kind := map[query.Access]string{query.AccessOwner: "rows", query.AccessList: "rows", query.AccessAggregation: "aggregate", query.AccessDP: "dp"}[plan.Kind]
	action := "query"
	if req.DryRun {
		action = "plan"
	}
	for _, name := range datasets {
		m := ws.Datasets[name]
		d := snap.Policy.Decide(policyRequest(req, action, m, ag, now, plan, kind))
		if !d.Allowed {
			return nil, refusal.New(refusal.Forbidden, "policy", "%s on dataset %s is not permitted by policy%s", action, name, reasonSuffix(d.Reasons))
		}
	}
	if plan.Kind == query.AccessDP {
		resp, rep, err := g.runDP(ctx, snap, req, ag, plan, canonical, now, ws.Config.Limits, eng, ent)
		if err != nil {
			return nil, err
		}
		resp.Access, resp.Agreement, resp.DP = string(plan.Kind), agID(ag), rep
		if req.DryRun || req.Describe {
			resp.Plan = &PlanInfo{Access: string(plan.Kind), Datasets: plan.Datasets, Columns: plan.Touched, SQL: plan.SQL, Types: plan.Types}
		} else if !rep.Cached {
			ent.Epsilon, ent.Delta, ent.Rho = rep.Epsilon, rep.Delta, rep.Rho
		}
		return resp, nil
	}
	if req.DryRun || req.Describe {
		out := &Response{
			Access: string(plan.Kind), Agreement: agID(ag), Columns: plan.Columns, Rows: [][]any{},
			Plan: &PlanInfo{Access: string(plan.Kind), Datasets: plan.Datasets, Columns: plan.Touched, MinUnits: plan.MinUnits, MaxRows: plan.MaxRows, SQL: plan.SQL, Types: plan.Types},
		}
		if plan.MaxRows > 0 && ag != nil && req.DryRun {
			if out.Quota, err = g.quotaState(ctx, ag, plan.MaxRows, now); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	qctx, cancel := context.WithTimeout(ctx, ws.Config.Limits.QueryTimeout)
	defer cancel()
	res, err := eng.Query(qctx, plan.SQL, plan.Args...)
	if err != nil {
		return nil, engineRefusal(err)
	}
	out := &Response{Access: string(plan.Kind), Agreement: agID(ag), Columns: plan.Columns}
	if err := applyOutputControls(plan, res, out, ws.Config.Limits.MaxResultRows); err != nil {
		return nil, err
	}
	if plan.MaxRows > 0 && ag != nil {
		// Charged before release, like a DP budget.
		if out.Quota, err = g.chargeRows(ctx, ag, plan.MaxRows, len(out.Rows), now, ent); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func agID(a *workspace.Agreement) string {
	if a == nil {
		return ""
	}
	return a.ID
}

func reasonSuffix(r []string) string {
	if len(r) == 0 {
		return " (no policy permits it)"
	}
	return " (decided by " + strings.Join(r, ", ") + ")"
}

// engineRefusal turns an engine failure into a refusal. A binder or syntax
// error is raised before any row is read, so it depends on the query text
// only and is the client's to fix. Any other failure could depend on data;
// generated SQL is total (query/total.go), so one should not happen, and if
// it does the refusal is the same whatever the kind.
func engineRefusal(err error) error {
	switch {
	case errors.Is(err, engine.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return refusal.New(refusal.Limit, "limit.time", "the query exceeded its time limit")
	case errors.Is(err, engine.ErrMemory):
		return refusal.New(refusal.Limit, "limit.memory", "the query exceeded its memory limit")
	}
	var se *engine.SanitizedError
	if errors.As(err, &se) && (se.Kind == "binder" || se.Kind == "syntax") {
		return refusal.New(refusal.BadSQL, "sql.invalid", "the engine rejected the query before reading any data (%s error: check column types and grouping)", se.Kind)
	}
	return refusal.New(refusal.Engine, "engine", "the engine could not run the query")
}

// admissionRefusal says why a request was not admitted, with when to retry.
func admissionRefusal(v admission.Verdict) *refusal.Error {
	var e *refusal.Error
	switch v {
	case admission.NodeBusy:
		e = refusal.New(refusal.Unavailable, "admission.node", "the node is at its limit of queries running at once; retry in a second")
	case admission.PrincipalBusy:
		e = refusal.New(refusal.Limit, "admission.concurrency", "too many of this principal's queries are running at once; retry in a second")
	default:
		e = refusal.New(refusal.Limit, "admission.rate", "this principal is over its rate of queries per second; retry in a second")
	}
	e.Details = map[string]any{"retry_after": 1}
	return e
}

// checkRowLimit is the one row-count rule for every answer: a result with
// more released rows than the limit is refused, never silently cut.
func checkRowLimit(rows, limit int) error {
	if rows > limit {
		return refusal.New(refusal.Limit, "limit.rows", "the result exceeds %d rows; narrow the query or add LIMIT", limit)
	}
	return nil
}

// applyOutputControls suppresses rows below the unit threshold, applies
// LIMIT/OFFSET after suppression and enforces row caps.
func applyOutputControls(plan *query.Plan, res *engine.Result, out *Response, maxResult int) error {
	visible := len(plan.Columns)
	rows := res.Rows
	if len(plan.UnitColumns) > 0 {
		kept := rows[:0:0]
		for _, r := range rows {
			ok := true
			for i, c := range plan.UnitColumns {
				if toInt(r[c]) < int64(plan.MinUnits[i]) {
					ok = false
					break
				}
			}
			if ok {
				kept = append(kept, r[:visible])
			} else {
				out.RowsSuppressed++
			}
		}
		rows = kept
		if plan.Offset != nil {
			if int(*plan.Offset) >= len(rows) {
				rows = nil
			} else {
				rows = rows[*plan.Offset:]
			}
		}
		if plan.Limit != nil && int(*plan.Limit) < len(rows) {
			rows = rows[:*plan.Limit]
		}
		// Said of every such answer: whether a group was withheld, and how
		// many, are functions of the hidden data.
		out.Notes = append(out.Notes, fmt.Sprintf("groups covering fewer than %d distinct privacy units are never shown", slices.Min(plan.MinUnits)))
	}
	if err := checkRowLimit(len(rows), maxResult); err != nil {
		return err
	}
	if rows == nil {
		rows = [][]any{}
	}
	out.Rows = rows
	return nil
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint64:
		return int64(x)
	case float64:
		return int64(x)
	}
	return 0
}

func datasetsOf(q *query.Select) []string {
	seen := map[string]bool{}
	var visit func(q *query.Select)
	visit = func(q *query.Select) {
		for _, c := range q.With {
			visit(c.Query)
		}
		for _, s := range q.From {
			if s.Dataset != nil {
				seen[s.Dataset.Name] = true
			} else {
				visit(s.Sub)
			}
		}
		var exprs []query.Expr
		exprs = append(exprs, q.Where, q.Having)
		for _, it := range q.Items {
			exprs = append(exprs, it.Expr)
		}
		for _, e := range exprs {
			query.Walk(e, func(x query.Expr) bool {
				if in, ok := x.(*query.InSub); ok {
					visit(in.Sub)
				}
				return true
			})
		}
	}
	visit(q)
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func needsView(grants map[string]*query.Grant) bool {
	for _, g := range grants {
		if g.Access == query.AccessList && len(g.Rule.Columns) > 0 {
			return true
		}
	}
	return false
}

// viewOf is the manifest as a grant lets its holder see it.
func viewOf(m *workspace.Manifest, g *query.Grant) *workspace.Manifest {
	if g == nil || g.Access != query.AccessList || len(g.Rule.Columns) == 0 {
		return m
	}
	v := *m
	v.Columns = nil
	for _, c := range m.Columns {
		for _, name := range g.Rule.Columns {
			if c.Name == name {
				v.Columns = append(v.Columns, c)
			}
		}
	}
	return &v
}

func randomSeed() uint64 {
	var b [8]byte
	crand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// engineFor returns the one engine that holds all the datasets of a query.
func (g *Gateway) engineFor(ws *workspace.Workspace, datasets []string) (engine.Engine, error) {
	var eng engine.Engine
	for _, d := range datasets {
		e, _ := g.Route(ws.Datasets[d])
		if eng != nil && e != eng {
			return nil, refusal.New(refusal.AnalysisRule, "engine.mixed", "datasets %s live in different databases and cannot be combined in one query", strings.Join(datasets, ", "))
		}
		eng = e
	}
	return eng, nil
}

// maskKey derives an agreement's hmac-mask key from the node secret.
func (g *Gateway) maskKey(agreement string) []byte {
	m := hmac.New(sha256.New, g.MaskSecret)
	m.Write([]byte("mask-key\x00" + agreement))
	return m.Sum(nil)
}
