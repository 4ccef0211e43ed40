// Package sqlop is the SQL operation of the governance kernel: a SELECT
// from any channel (HTTP, the Postgres wire endpoint, the CLI), planned
// under the agreement in force and released under its rule. Its stages
// plug into govern.Kernel:
//
//	Prepare  parse → resolve the agreement → parse again against the
//	         grant's view → plan (rules, masks, filters, thresholds, DP
//	         bounding) for the datasets' engine
//	Checks   one Cedar question per dataset
//	Preview  a dry run's or a Describe's shape and cost
//	Run      execute on the engine; output controls (thresholds,
//	         LIMIT/OFFSET after suppression, the row limit)
//	Cost     DP: ε/δ before the run; list rules: released rows after it
//	Release  DP noise, partition selection and quantiles; the row quota
//
// DP answers are Cacheable, so the kernel answers repeats from the store
// and identical concurrent queries once. The kernel audits every outcome.
// The package also serves the catalog view (which datasets and columns a
// principal may see).
package sqlop

import (
	"context"
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/airlock-dev/airlock/internal/differencing"
	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Service holds what SQL operations need beyond the kernel's snapshot.
type Service struct {
	// Route says which engine holds a dataset and its relation name there:
	// the embedded DuckDB, or the owner's PostgreSQL for datasets governed
	// in place.
	Route func(m *workspace.Manifest) (engine.Engine, string)
	// Store is read for revocations and budget states (the kernel charges).
	Store store.Store
	// MaskSecret derives the per-agreement keys of hmac masks.
	MaskSecret []byte
	// History is the differencing check of aggregation answers.
	History *differencing.History
	// Federation plans queries over federated datasets; nil when the
	// node has no peers.
	Federation Federator
	sampler    *dp.Sampler
}

// New returns the SQL operations over one engine (Route may be replaced
// to place datasets in other engines).
func New(eng engine.Engine, st store.Store, maskSecret []byte) *Service {
	s := &Service{Store: st, MaskSecret: maskSecret, sampler: dp.NewSampler(nil), History: differencing.NewHistory(st, nil)}
	s.Route = func(m *workspace.Manifest) (engine.Engine, string) { return eng, query.QuoteIdent(m.Name) }
	return s
}

// Query is the operation for one SELECT with its bound parameters. In
// Describe mode params may be nil (each $n is then NULL).
func (s *Service) Query(sql string, params []any) govern.Op {
	return &queryOp{svc: s, sql: sql, params: params, statement: sql}
}

// Statement is Query for a SELECT inside another statement (COPY (...) TO
// STDOUT, DECLARE ... CURSOR FOR ...): the audit entry records statement,
// what the client sent, and the SELECT is what is planned.
func (s *Service) Statement(sql string, params []any, statement string) govern.Op {
	return &queryOp{svc: s, sql: sql, params: params, statement: statement}
}

// Response is a governed answer.
type Response struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	// RowsSuppressed is how many groups the output controls withheld. It
	// is a count of hidden data, so it goes to the audit log (read only by
	// stewards and auditors) and never to the client.
	RowsSuppressed int64  `json:"-"`
	Access         string `json:"access"`
	Agreement      string `json:"agreement,omitempty"`
	PolicyVersion  string `json:"policy_version"`
	// WorkspaceVersion is the digest of everything that decided: policies,
	// agreements, principals, manifests, configuration.
	WorkspaceVersion string    `json:"workspace_version"`
	AuditIndex       uint64    `json:"audit_index"`
	RequestID        string    `json:"request_id,omitempty"`
	Notes            []string  `json:"notes,omitempty"`
	Plan             *PlanInfo `json:"plan,omitempty"`
	DP               *DPReport `json:"dp,omitempty"`
	Quota            *RowQuota `json:"row_quota,omitempty"`
	// Federation says how a federated answer was combined.
	Federation *FederationReport `json:"federation,omitempty"`
}

// Answer is a kernel result as the SQL response, with its receipt.
func Answer(r *govern.Result) *Response {
	resp := r.Value.(*Response)
	resp.AuditIndex, resp.PolicyVersion, resp.RequestID, resp.WorkspaceVersion = r.AuditIndex, r.PolicyVersion, r.RequestID, r.WorkspaceVersion
	return resp
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
	// ParamTypes are the types of $1..$n where the statement implies one
	// ("" where it does not), judged against the caller's view; for wire
	// clients' Describe.
	ParamTypes []string `json:"-"`
	// SQL is the generated engine SQL; kept server-side (it may hold mask
	// keys) and never serialized to clients.
	SQL string `json:"-"`
}

type queryOp struct {
	svc       *Service
	sql       string
	params    []any
	statement string // audited text
}

func (o *queryOp) Kind() share.OpKind { return share.OpQuery }

// prepared is a planned query: everything the later stages need.
type prepared struct {
	svc       *Service
	c         *govern.Call
	ag        *workspace.Agreement
	plan      *query.Plan
	eng       engine.Engine
	datasets  []string
	view      query.Catalog
	sql       string
	nparams   int
	limits    workspace.LimitsConfig
	canonical *query.Plan // DP: the plan with a fixed seed, the answer cache's key
	quotaLeft int64       // a list rule's quota left when the query was planned
}

func (o *queryOp) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	ws := c.Snap.WS
	c.Entry.SQL = o.statement
	if fp, err := pg.Fingerprint(o.statement); err == nil {
		c.Entry.Fingerprint = fp
	}
	c.Entry.Params = CanonicalParams(o.params)
	if len(o.sql) > ws.Config.Limits.MaxSQLBytes {
		return nil, refusal.New(refusal.TooLarge, "limit.sql_size", "query text exceeds %d bytes", ws.Config.Limits.MaxSQLBytes)
	}
	// The parser stops at a NUL while the audit log and fingerprint keep
	// the whole text: what is audited must be what runs.
	if strings.ContainsRune(o.sql, 0) {
		return nil, refusal.New(refusal.BadSQL, "sql.nul", "the query text contains a NUL byte")
	}
	for _, p := range o.params {
		s, ok := p.(string)
		if b, isBytes := p.([]byte); isBytes {
			s, ok = string(b), true
		}
		if ok && strings.ContainsRune(s, 0) {
			return nil, refusal.New(refusal.BadSQL, "sql.nul", "a parameter contains a NUL byte")
		}
	}
	params := o.params
	nparams := len(params)
	if c.Mode == share.Describe && params == nil {
		nparams = query.ParamCount(o.sql)
		if nparams > query.MaxParams {
			return nil, refusal.New(refusal.BadSQL, "sql.parameter", "a statement takes at most %d parameters", query.MaxParams)
		}
		params = make([]any, nparams)
	}
	full := func(name string) *workspace.Manifest { return ws.Datasets[name] }
	q, err := query.Parse(o.sql, full, params)
	if err != nil {
		return nil, err
	}
	datasets := datasetsOf(q)
	c.Entry.Datasets = datasets
	if fed, err := federatedOf(ws, datasets); err != nil {
		return nil, err
	} else if fed {
		if o.svc.Federation == nil {
			return nil, refusal.New(refusal.Internal, "federation.off", "this node has no peer client")
		}
		return o.svc.Federation.Prepare(ctx, c, q, o.sql, params)
	}

	ag, grants, err := o.svc.resolve(ctx, c, datasets)
	if err != nil {
		return nil, err
	}
	if ag != nil {
		c.Entry.Agreement = ag.ID
	}
	// Parse again against each grant's view of its dataset, so columns an
	// agreement does not expose do not exist for this request (SELECT *
	// included).
	view := query.Catalog(full)
	if needsView(grants) {
		view = func(name string) *workspace.Manifest {
			m := ws.Datasets[name]
			if m == nil {
				return nil
			}
			return viewOf(m, grants[name])
		}
		if q, err = query.Parse(o.sql, view, params); err != nil {
			return nil, err
		}
	}
	eng, err := o.svc.engineFor(ws, datasets)
	if err != nil {
		return nil, err
	}
	planner := query.Planner{Dialect: query.Dialect(eng.Dialect()), Seed: randomSeed}
	plan, err := planner.Plan(q, grants)
	if err != nil {
		return nil, err
	}
	c.Entry.Columns = plan.Touched
	var quotaLeft int64
	if plan.MaxRows > 0 && ag != nil && c.Mode == share.Run {
		// A spent quota refuses every list query, before it runs: were
		// empty answers still free, "is there a matching row?" could be
		// asked without end once the quota is gone.
		q, err := o.svc.quotaState(ctx, ag, plan.MaxRows, c.Now)
		if err != nil {
			return nil, err
		}
		if q.Left <= 0 {
			return nil, quotaSpent(ag, plan.MaxRows, q.Refresh)
		}
		quotaLeft = q.Left
	}
	p := &prepared{svc: o.svc, c: c, ag: ag, plan: plan, eng: eng, datasets: datasets, view: view, sql: o.sql, nparams: nparams, limits: ws.Config.Limits, quotaLeft: quotaLeft}
	if plan.Kind != query.AccessDP {
		return p, nil
	}
	if c.Mode == share.Run {
		// The same plan with a fixed seed: the bound query, for the answer cache.
		fixed := query.Planner{Dialect: planner.Dialect, Seed: func() uint64 { return 0 }}
		if p.canonical, err = fixed.Plan(q, grants); err != nil {
			return nil, err
		}
	}
	return o.svc.prepareDP(ctx, p)
}

// Checks asks policy about each dataset, with what the plan knows.
func (p *prepared) Checks() []policy.Request {
	kind := map[query.Access]string{query.AccessOwner: "rows", query.AccessList: "rows", query.AccessAggregation: "aggregate", query.AccessDP: "dp"}[p.plan.Kind]
	action := policy.ActionQuery
	if p.c.Mode == share.Plan {
		action = policy.ActionPlan
	}
	var out []policy.Request
	for _, name := range p.datasets {
		out = append(out, policyRequest(p.c, action, p.c.Snap.WS.Datasets[name], p.ag, p.plan, kind))
	}
	return out
}

func (p *prepared) planInfo() *PlanInfo {
	plan := p.plan
	info := &PlanInfo{Access: string(plan.Kind), Datasets: plan.Datasets, Columns: plan.Touched, MinUnits: plan.MinUnits, MaxRows: plan.MaxRows, SQL: plan.SQL, Types: plan.Types}
	if p.c.Mode == share.Describe {
		types := query.ParamTypes(p.sql, p.view, p.datasets)
		info.ParamTypes = make([]string, p.nparams)
		for i := range info.ParamTypes {
			info.ParamTypes[i] = types[i+1]
		}
	}
	return info
}

func (p *prepared) Preview(ctx context.Context, c *govern.Call) (any, error) {
	out := &Response{Access: string(p.plan.Kind), Agreement: agID(p.ag), Columns: p.plan.Columns, Rows: [][]any{}, Plan: p.planInfo()}
	if p.plan.MaxRows > 0 && p.ag != nil && c.Mode == share.Plan {
		var err error
		if out.Quota, err = p.svc.quotaState(ctx, p.ag, p.plan.MaxRows, c.Now); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// listResult is an answer after its output controls, before its row
// quota is charged. refused is the refusal an over-large answer gets once
// the quota has paid for it.
type listResult struct {
	p       *prepared
	out     *Response
	rows    int
	refused error
	// released are the released rows whole (hidden columns included), met
	// every row that met the threshold, and sketches the differencing
	// sketches by group key, one map per plan.Sketches entry
	// (aggregation).
	released [][]any
	met      [][]any
	sketches []map[string]*groupSketch
}

func (p *prepared) quota() bool { return p.plan.MaxRows > 0 && p.ag != nil }

func (p *prepared) Run(ctx context.Context, c *govern.Call) (govern.Unreleased, error) {
	qctx, cancel := context.WithTimeout(ctx, p.limits.QueryTimeout)
	defer cancel()
	res, err := p.eng.Query(qctx, p.plan.SQL, p.plan.Args...)
	if err != nil {
		return nil, engineRefusal(err)
	}
	out := &Response{Access: string(p.plan.Kind), Agreement: agID(p.ag), Columns: p.plan.Columns}
	released, met, err := applyOutputControls(p.plan, res, out, p.limits.MaxResultRows)
	if err != nil {
		if p.quota() && refusal.As(err).Rule == "limit.rows" {
			// Too many rows says "this many match": it is paid for below.
			return &listResult{p: p, out: out, rows: math.MaxInt, refused: err}, nil
		}
		return nil, err
	}
	r := &listResult{p: p, out: out, rows: len(out.Rows), released: released, met: met}
	if len(p.plan.Sketches) > 0 && len(met) > 0 {
		if r.sketches, err = p.runSketches(qctx); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Cost charges a list rule's released rows, before they are released. An
// answer larger than what is left (or than the row limit) is refused and
// counts as one row: refused for free, "nothing, or more than is left"
// would answer a yes/no question about the rows without end, where a
// LIMIT 1 query pays a row for each "yes".
func (r *listResult) Cost(c *govern.Call) []govern.Charge {
	if !r.p.quota() || r.rows == 0 {
		return nil
	}
	n := int64(r.rows)
	if n > r.p.quotaLeft || r.refused != nil {
		n = 1
		if r.refused == nil {
			r.refused = quotaTooSmall(r.p.ag, r.p.plan.MaxRows, r.p.quotaLeft, rowQuotaKey(r.p.ag, c.Now).PeriodStart.Add(quotaPeriod(r.p.ag)))
		}
	}
	return []govern.Charge{r.p.svc.rowCharge(r.p.ag, r.p.plan.MaxRows, int(n), c.Now)}
}

func (r *listResult) Release(ctx context.Context, c *govern.Call) (any, error) {
	if r.refused != nil {
		return nil, r.refused
	}
	if err := r.checkDifferencing(ctx, c); err != nil {
		return nil, err
	}
	out := r.out
	if r.p.plan.MaxRows > 0 && r.p.ag != nil {
		if len(c.Charged) > 0 {
			out.Quota = quotaOf(r.p.ag, r.p.plan.MaxRows, c.Charged[0], c.Now)
		} else {
			var err error
			if out.Quota, err = r.p.svc.quotaState(ctx, r.p.ag, r.p.plan.MaxRows, c.Now); err != nil {
				return nil, err
			}
		}
	}
	c.Entry.RowsReturned, c.Entry.RowsSuppressed = int64(len(out.Rows)), out.RowsSuppressed
	return out, nil
}

// CanonicalParams is how bound parameters are audited: each value's type
// and exact text, so two different bindings never read alike.
func CanonicalParams(ps []any) []string {
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		switch x := p.(type) {
		case nil:
			out[i] = "null"
		case string:
			out[i] = strconv.Quote(x)
		case int64:
			out[i] = strconv.FormatInt(x, 10)
		case float64:
			out[i] = strconv.FormatFloat(x, 'g', -1, 64)
		case bool:
			out[i] = strconv.FormatBool(x)
		default:
			out[i] = fmt.Sprintf("%T:%v", x, x)
		}
	}
	return out
}

func agID(a *workspace.Agreement) string {
	if a == nil {
		return ""
	}
	return a.ID
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
		return refusal.New(refusal.BadSQL, "sql.invalid", "the engine rejected the query before reading any data (%s error: check column types and grouping)", se.Kind).WithCause(err)
	}
	return refusal.New(refusal.Engine, "engine", "the engine could not run the query").WithCause(err)
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
//
// It returns the released rows whole, hidden columns included, and every
// row that met the threshold (the cells the differencing check compares:
// released or left out by the analyst's HAVING, LIMIT or OFFSET).
func applyOutputControls(plan *query.Plan, res *engine.Result, out *Response, maxResult int) (released, met [][]any, err error) {
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
			if !ok {
				out.RowsSuppressed++
				continue
			}
			met = append(met, r)
			if h := plan.HavingColumn; h < 0 || r[h] == true {
				kept = append(kept, r)
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
		return nil, nil, err
	}
	out.Rows = make([][]any, len(rows))
	for i, r := range rows {
		out.Rows[i] = r[:visible:visible]
	}
	return rows, met, nil
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
func (g *Service) engineFor(ws *workspace.Workspace, datasets []string) (engine.Engine, error) {
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
func (g *Service) maskKey(agreement string) []byte {
	m := hmac.New(sha256.New, g.MaskSecret)
	m.Write([]byte("mask-key\x00" + agreement))
	return m.Sum(nil)
}
