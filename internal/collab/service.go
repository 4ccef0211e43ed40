package collab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/psi"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Service runs the clean rooms on one node: the querier's side of a
// query (this node's member is the matcher) and the helper's side for a
// peer member's query.
type Service struct {
	Route  func(*workspace.Manifest) (engine.Engine, string)
	Key    *federation.NodeKey
	Client *federation.Client
	Kernel *govern.Kernel
	Noise  *dp.Sampler
	// SessionTimeout ends a helper session not finished in time.
	SessionTimeout time.Duration

	mu       sync.Mutex
	sessions map[[16]byte]*session
}

// MaxItems bounds the points of one protocol message.
const MaxItems = 1 << 22

// Paths of the peer endpoints.
const (
	PathStatement = "/peer/v1/collab/statement"
	PathOpen      = "/peer/v1/collab/open"
	PathStep      = "/peer/v1/collab/step"
)

// QueryRequest is a member's query: ad-hoc SQL or a template by name.
type QueryRequest struct {
	Collaboration string `json:"-"`
	SQL           string `json:"sql,omitempty"`
	Template      string `json:"template,omitempty"`
	Params        []any  `json:"params,omitempty"`
	Purpose       string `json:"purpose"`
}

// Answer is a released clean-room result.
type Answer struct {
	Collaboration string   `json:"collaboration"`
	Hash          string   `json:"collaboration_hash"`
	Template      string   `json:"template,omitempty"`
	TemplateHash  string   `json:"template_hash,omitempty"`
	Columns       []string `json:"columns"`
	Rows          [][]any  `json:"rows"`
	Receivers     []string `json:"receivers"`
	// Threshold is the noisy count a group needed to be released.
	Threshold int      `json:"threshold"`
	Notes     []string `json:"notes"`
}

// resolved is what both sides establish before any data is touched.
type resolved struct {
	c          *Collaboration
	self       *Member
	querier    *Member
	principal  string
	plan       *Plan
	template   *Template
	ownSide    int
	statements map[string]*Statement
}

func forbid(err error) error {
	var r *Refusal
	if errors.As(err, &r) {
		code := refusal.Forbidden
		switch {
		case r.Shape:
			code = refusal.AnalysisRule
		case r.Rule == "collab.member_unreachable":
			code = refusal.Unavailable
		case r.Rule == "collab.unknown":
			code = refusal.NotFound
		}
		return refusal.New(code, r.Rule, "%s", r.Message)
	}
	return err
}

// resolve checks, in order: the collaboration exists here, this node and
// the querier are members, the querier may query and receive, the
// purpose is the collaboration's, every member's live statement puts this
// hash in force, the query plans, a template is approved by the owners of
// what it reads (and a custom-rule table is read only by one), and this
// node's member owns one side. peer is the node asking ("" locally).
func (s *Service) resolve(ctx context.Context, ws *workspace.Workspace, r QueryRequest, org, principal, purpose, peer string) (*resolved, error) {
	c, err := Load(ws.Dir, r.Collaboration)
	if err != nil {
		return nil, refuse("collab.unknown", "no collaboration %s on this node", r.Collaboration)
	}
	res := &resolved{c: c, principal: principal}
	if res.self = c.MemberOfNode(ws.Config.Node.Name); res.self == nil {
		return nil, refuse("collab.not_member", "this node serves no member of collaboration %s", c.ID)
	}
	q := c.Member(org)
	switch {
	case q == nil:
		return nil, refuse("collab.not_member", "org %s is not a member of collaboration %s", org, c.ID)
	case peer != "" && q.Node != peer:
		return nil, refuse("collab.not_member", "node %s does not serve member %s", peer, org)
	case peer == "" && q != res.self:
		return nil, refuse("collab.not_member", "principals of %s query from their member's node %s", org, q.Node)
	case !q.Has(CanQuery):
		return nil, refuse("collab.cannot_query", "member %s may not query collaboration %s (no can_query)", org, c.ID)
	case !slices.Contains(q.Queriers, principal):
		return nil, refuse("collab.querier", "%s is not a querier of member %s in collaboration %s", principal, org, c.ID)
	case !q.Has(CanReceiveResults):
		return nil, refuse("collab.cannot_receive", "member %s may not receive results of collaboration %s (no can_receive_results)", org, c.ID)
	case purpose != c.Purpose:
		return nil, refuse("collab.purpose", "collaboration %s serves purpose %s", c.ID, c.Purpose)
	}
	res.querier = q
	if res.statements, err = s.statements(ctx, ws, c); err != nil {
		return nil, err
	}
	if err := c.InForce(res.statements); err != nil {
		return nil, err
	}
	sql := r.SQL
	if r.Template != "" {
		if r.SQL != "" {
			return nil, bad("collab.sql", "send sql or a template, not both")
		}
		if res.template = c.Template(r.Template); res.template == nil {
			return nil, refuse("collab.template", "collaboration %s has no template %s", c.ID, r.Template)
		}
		sql = res.template.SQL
	}
	if res.plan, err = c.PlanQuery(sql, r.Params); err != nil {
		return nil, err
	}
	owners := []string{res.plan.Sides[0].Member, res.plan.Sides[1].Member}
	for _, side := range res.plan.Sides {
		if side.Table.Rule == RuleCustom && res.template == nil {
			return nil, refuse("collab.template_required", "%s is under a custom rule: only approved templates read it", side.Name)
		}
	}
	if res.template != nil {
		if err := c.Approved(res.template, owners, res.statements); err != nil {
			return nil, err
		}
	}
	res.ownSide = -1
	for i, side := range res.plan.Sides {
		if side.Member == res.self.Org {
			res.ownSide = i
		}
	}
	if res.ownSide < 0 {
		return nil, refuse("collab.join_parties", "a query joins the querier's own table with one partner's; %s contributes neither side", res.self.Org)
	}
	if res.plan.Sides[1-res.ownSide].Member != q.Org && res.self != q {
		return nil, refuse("collab.join_parties", "this node joins only with the querier's member")
	}
	own := res.plan.Sides[res.ownSide]
	m := ws.Datasets[own.Table.Dataset]
	if m == nil || m.Owner != res.self.Org {
		return nil, refuse("collab.dataset", "table %s names dataset %s, which %s does not own on this node", own.Name, own.Table.Dataset, res.self.Org)
	}
	types := map[string]string{}
	for _, c := range m.Columns {
		types[c.Name] = c.Type
	}
	if err := res.plan.CheckTypes(res.ownSide, types); err != nil {
		return nil, err
	}
	return res, nil
}

// statements gathers every member's live statement: this node's from its
// workspace, the others' from their nodes, each over the pinned channel
// and only from the node whose key the collaboration names.
func (s *Service) statements(ctx context.Context, ws *workspace.Workspace, c *Collaboration) (map[string]*Statement, error) {
	out := map[string]*Statement{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var first error
	for _, m := range c.Members {
		if m.Node == ws.Config.Node.Name {
			st, err := ReadStatement(ws.Dir, c.ID, m.Node)
			if err != nil {
				return nil, err
			}
			out[m.Node] = st
			continue
		}
		p := ws.Peers[m.Node]
		if p == nil || p.Key != m.Key {
			return nil, refuse("collab.member_key", "member %s's node %s is not a peer of this node with the key the collaboration names", m.Org, m.Node)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st Statement
			err := s.Client.Get(ctx, p, PathStatement+"?id="+c.ID, &st)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = refuse("collab.member_unreachable", "member %s's node could not confirm its signature: %v", m.Org, err)
				}
				return
			}
			if st.Collaboration == c.ID && st.Node == m.Node {
				out[m.Node] = &st
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return out, nil
}

// record writes what every entry of a clean-room operation names.
func (res *resolved) record(e *audit.Entry, side *Side, session [16]byte) {
	e.QueryKind = "collab"
	e.Datasets = []string{side.Table.Dataset}
	e.Extra = map[string]string{
		"collaboration": res.c.ID, "collaboration_hash": res.c.Hash(),
		"querier": res.principal, "querier_org": res.querier.Org, "receivers": res.querier.Org,
		"table": side.Name, "session": hex.EncodeToString(session[:]),
	}
	if res.template != nil {
		e.Extra["template"], e.Extra["template_hash"] = res.template.Name, res.template.Hash()
	}
}

// charge spends one query of this member's budget.
func (res *resolved) charge(c *govern.Call) []govern.Charge {
	t := res.plan.Sides[res.ownSide].Table
	b := res.self.Budget
	limit, deltaLimit := dp.BudgetLimits(b.Epsilon, b.Delta)
	key := store.BudgetKey{Agreement: "collab:" + res.c.ID}
	if b.Period > 0 {
		key.PeriodStart = dp.PeriodStart(c.Now, b.Period)
	}
	rho := dp.RhoOfPureEps(t.Epsilon)
	return []govern.Charge{{
		Charge:   store.Charge{ID: c.Caller.RequestID, Key: key, Rho: rho, Epsilon: t.Epsilon, LimitRho: limit, LimitDelta: deltaLimit},
		Announce: func(e *audit.Entry) { e.Epsilon, e.Rho = t.Epsilon, rho },
		Exhausted: func(store.BudgetState) *refusal.Error {
			return refusal.New(refusal.BudgetExhausted, "collab.budget", "member %s's budget in collaboration %s cannot pay ε = %g", res.self.Org, res.c.ID, t.Epsilon)
		},
	}}
}

// noise is a side's noise calibration.
func (res *resolved) noise(side int) Noise {
	return res.plan.NoiseFor(dp.RhoOfPureEps(res.plan.Sides[side].Table.Epsilon))
}

// items reads this node's side through its engine.
func (s *Service) items(ctx context.Context, ws *workspace.Workspace, res *resolved) ([]psi.Item, error) {
	side := res.plan.Sides[res.ownSide]
	eng, rel := s.Route(ws.Datasets[side.Table.Dataset]) // resolve checked it is ours
	sql, args := res.plan.SideQuery(res.ownSide, rel)
	out, err := eng.Query(ctx, sql, args...)
	if err != nil {
		return nil, refusal.New(refusal.Engine, "engine", "the engine could not read %s", side.Name).WithCause(err)
	}
	return res.plan.Items(res.ownSide, out.Rows)
}

// pad is how many random points a side adds: a noisy number of
// identifiers, each as many points as the side sends per identifier.
func (s *Service) pad(res *resolved) int {
	n := psi.NoisyCount(s.Noise, res.noise(res.ownSide).Size)
	if res.ownSide == res.plan.PayloadSide {
		n *= res.plan.Expansion()
	}
	return n
}

func (s *Service) width(res *resolved, side int) int {
	if side == res.plan.PayloadSide {
		return res.plan.Width()
	}
	return 0
}

// ---- the querier's side: the matcher ----

// Query is the querier's operation.
func (s *Service) Query(r QueryRequest) govern.Op { return &queryOp{s: s, r: r} }

type queryOp struct {
	s *Service
	r QueryRequest
}

func (o *queryOp) Kind() share.OpKind { return share.OpCollabQuery }

type queryPrepared struct {
	*queryOp
	res     *resolved
	session [16]byte
}

func (o *queryOp) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	id := c.Caller.Identity
	res, err := o.s.resolve(ctx, c.Snap.WS, o.r, id.Org, id.Principal, c.Purpose, "")
	if err != nil {
		return nil, forbid(err)
	}
	p := &queryPrepared{queryOp: o, res: res}
	rand.Read(p.session[:])
	res.record(c.Entry, res.plan.Sides[res.ownSide], p.session)
	return p, nil
}

func (p *queryPrepared) Checks() []policy.Request { return nil }

func (p *queryPrepared) Preview(context.Context, *govern.Call) (any, error) {
	return map[string]any{"collaboration": p.res.c.ID, "cells": p.res.plan.Width()}, nil
}

func (p *queryPrepared) Cost(c *govern.Call) []govern.Charge { return p.res.charge(c) }

// wire is the JSON of the open step.
type openRequest struct {
	Collaboration string `json:"collaboration"`
	Hash          string `json:"hash"`
	SQL           string `json:"sql,omitempty"`
	Template      string `json:"template,omitempty"`
	Params        []any  `json:"params,omitempty"`
	Session       []byte `json:"session"`
	Public        []byte `json:"public"`
}

type openResponse struct {
	Public     []byte `json:"public"`
	Items      []byte `json:"items"`
	AuditIndex uint64 `json:"audit_index"`
}

type stepResponse struct {
	Message  []byte `json:"message"`
	Partials []byte `json:"partials,omitempty"`
}

func (p *queryPrepared) Run(ctx context.Context, c *govern.Call) (govern.Unreleased, error) {
	res, ws := p.res, c.Snap.WS
	partner := res.plan.Sides[1-res.ownSide].Member
	pm := res.c.Member(partner)
	peer := ws.Peers[pm.Node]
	party, err := psi.NewParty(p.session, res.plan.Width(), MaxItems)
	if err != nil {
		return nil, err
	}
	mine, err := p.s.items(ctx, ws, res)
	if err != nil {
		return nil, forbid(err)
	}
	pub := party.Public()
	open, _ := json.Marshal(openRequest{Collaboration: res.c.ID, Hash: res.c.Hash(), SQL: p.r.SQL, Template: p.r.Template, Params: p.r.Params,
		Session: p.session[:], Public: pub[:]})
	env := federation.Envelope{Principal: federation.PrincipalOf(c.Caller.Identity), Purpose: c.Purpose, Op: "collab.open", Payload: open, RequestID: c.Caller.RequestID}
	var or openResponse
	if _, _, err := p.s.Client.Post(ctx, peer, PathOpen, env, &or); err != nil {
		return nil, partnerFailed(partner, err)
	}
	if len(or.Public) != psi.ShareSize {
		return nil, refusal.New(refusal.Unavailable, "collab.protocol_message", "member %s answered a malformed key share", partner)
	}
	if err := party.Join([psi.ShareSize]byte(or.Public)); err != nil {
		return nil, refusal.New(refusal.Unavailable, "collab.protocol_message", "member %s answered a malformed key share", partner)
	}
	theirs, err := psi.Decode(or.Items, psi.KindItems, p.session, MaxItems)
	if err != nil {
		return nil, refusal.New(refusal.Unavailable, "collab.protocol_message", "member %s's items: %v", partner, err)
	}
	// The whole dummy pool, so the partner's noisy share of it blurs the
	// number of matches this node sees.
	pool := psi.PoolSize(res.noise(1 - res.ownSide).Size)
	mine = append(mine, psi.Pool(p.session, pool, p.s.width(res, res.ownSide))...)
	msg, err := party.Items(mine, p.s.pad(res))
	if err != nil {
		return nil, err
	}
	var re stepResponse
	if err := p.step(ctx, c, peer, "reblind", msg, &re); err != nil {
		return nil, partnerFailed(partner, err)
	}
	reblinded, err := psi.Decode(re.Message, psi.KindReblinded, p.session, MaxItems)
	if err != nil {
		return nil, refusal.New(refusal.Unavailable, "collab.protocol_message", "member %s's reblinded items: %v", partner, err)
	}
	cells, _, err := party.Match(reblinded, theirs)
	if err != nil {
		return nil, refusal.New(refusal.Unavailable, "collab.protocol_message", "member %s's items: %v", partner, err)
	}
	if cells, err = party.Noise(cells, res.plan.Draw(res.noise(res.ownSide), p.s.Noise)); err != nil {
		return nil, err
	}
	var fin stepResponse
	if err := p.step(ctx, c, peer, "finish", party.CellsMessage(cells), &fin); err != nil {
		return nil, partnerFailed(partner, err)
	}
	final, err1 := psi.Decode(fin.Message, psi.KindCells, p.session, 0)
	parts, err2 := psi.Decode(fin.Partials, psi.KindPartials, p.session, psi.MaxWidth)
	if err1 != nil || err2 != nil || final.Width != res.plan.Width() || parts.Width != final.Width {
		return nil, refusal.New(refusal.Unavailable, "collab.protocol_message", "member %s's final cells are malformed", partner)
	}
	values, err := party.Decrypt(final.Cipher, parts.Points)
	if err != nil {
		return nil, refusal.New(refusal.Unavailable, "collab.protocol_message", "the cells do not decrypt: %v", err)
	}
	return &queryResult{p: p, values: values}, nil
}

func (p *queryPrepared) step(ctx context.Context, c *govern.Call, peer *workspace.Peer, name string, m *psi.Message, out *stepResponse) error {
	b, _ := m.MarshalBinary()
	env := federation.Envelope{Principal: federation.PrincipalOf(c.Caller.Identity), Purpose: c.Purpose, Op: "collab.step",
		Params: []any{hex.EncodeToString(p.session[:]), name}, Payload: b, RequestID: c.Caller.RequestID}
	_, _, err := p.s.Client.Post(ctx, peer, PathStep, env, out)
	return err
}

// partnerFailed names the partner's refusal, or that it went away; no
// partial result exists to release.
func partnerFailed(partner string, err error) error {
	var pe *federation.PeerError
	if errors.As(err, &pe) {
		if pe.Refused != nil {
			return refusal.New(refusal.Forbidden, pe.Rule, "member %s refused: %s", partner, pe.Refused.Message)
		}
		return refusal.New(refusal.Unavailable, "collab.member_unreachable", "member %s %s; nothing was released", partner, pe.Message)
	}
	return refusal.New(refusal.Unavailable, "collab.member_unreachable", "member %s failed mid-protocol; nothing was released", partner)
}

type queryResult struct {
	p      *queryPrepared
	values []int64
}

func (r *queryResult) Release(ctx context.Context, c *govern.Call) (any, error) {
	res := r.p.res
	threshold := max(res.plan.Sides[0].Table.MinMatched, res.plan.Sides[1].Table.MinMatched)
	cols, rows := res.plan.Rows(r.values, threshold)
	a := &Answer{Collaboration: res.c.ID, Hash: res.c.Hash(), Columns: cols, Rows: make([][]any, len(rows)), Receivers: []string{res.querier.Org}, Threshold: threshold}
	for i, row := range rows {
		a.Rows[i] = row
	}
	if res.template != nil {
		a.Template, a.TemplateHash = res.template.Name, res.template.Hash()
	}
	a.Notes = append(a.Notes, fmt.Sprintf("counts are matched identifiers; each member added discrete Gaussian noise for its own ε (%s: %g, %s: %g); groups with a noisy count below %d are not shown",
		res.plan.Sides[0].Member, res.plan.Sides[0].Table.Epsilon, res.plan.Sides[1].Member, res.plan.Sides[1].Table.Epsilon, threshold))
	c.Entry.RowsReturned = int64(len(rows))
	c.Entry.Extra["groups_released"] = fmt.Sprint(len(rows))
	return a, nil
}

// ---- the partner's side: the helper ----

type session struct {
	mu      sync.Mutex
	peer    string
	res     *resolved
	party   *psi.Party
	next    string // the step expected next: "reblind", "finish", "" when done
	expires time.Time
}

// PeerRoutes are the signed peer endpoints of the clean rooms.
func (s *Service) PeerRoutes() map[string]federation.Route {
	return map[string]federation.Route{
		PathOpen: {Kind: share.OpCollabJoin, Serve: s.open},
		PathStep: {Kind: share.OpCollabStep, Serve: s.step},
	}
}

// PublicRoutes serve this node's statements to the members' nodes.
func (s *Service) PublicRoutes() map[string]federation.PublicRoute {
	return map[string]federation.PublicRoute{PathStatement: func(ctx context.Context, r *http.Request, p *workspace.Peer) (any, error) {
		ws := s.Kernel.Snapshot().WS
		c, err := Load(ws.Dir, r.URL.Query().Get("id"))
		if err != nil || c.MemberOfNode(p.Name) == nil {
			return nil, refusal.New(refusal.NotFound, "collab.unknown", "no collaboration of yours by that id on this node")
		}
		return ReadStatement(ws.Dir, c.ID, ws.Config.Node.Name)
	}}
}

func (s *Service) open(ctx context.Context, pr *federation.PeerRequest) (any, error) {
	var or openRequest
	if pr.Envelope.Op != "collab.open" || json.Unmarshal(pr.Envelope.Payload, &or) != nil || len(or.Session) != 16 || len(or.Public) != psi.ShareSize {
		return nil, pr.Refuse(refusal.New(refusal.BadSQL, "collab.protocol_message", "the open request is malformed"))
	}
	e := pr.Envelope
	op := &contributeOp{s: s, pr: pr, or: or}
	res, err := s.Kernel.Do(ctx, govern.Request{Caller: pr.Caller, Purpose: e.Purpose, Op: op})
	if err != nil {
		// Whatever stage refused (the audit append included), no session
		// of this request stays open.
		s.mu.Lock()
		if st := s.sessions[[16]byte(or.Session)]; st != nil && st.peer == pr.Peer.Name && st.res == op.res {
			delete(s.sessions, [16]byte(or.Session))
		}
		s.mu.Unlock()
		return nil, err
	}
	out := res.Value.(*openResponse)
	out.AuditIndex = res.AuditIndex
	return out, nil
}

type contributeOp struct {
	s   *Service
	pr  *federation.PeerRequest
	or  openRequest
	res *resolved // once prepared
}

func (o *contributeOp) Kind() share.OpKind { return share.OpCollabJoin }

type contributePrepared struct {
	*contributeOp
	res *resolved
}

func (o *contributeOp) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	id := c.Caller.Identity
	r := QueryRequest{Collaboration: o.or.Collaboration, SQL: o.or.SQL, Template: o.or.Template, Params: o.or.Params}
	res, err := o.s.resolve(ctx, c.Snap.WS, r, id.Org, id.Principal, c.Purpose, o.pr.Peer.Name)
	if err != nil {
		return nil, forbid(err)
	}
	if res.c.Hash() != o.or.Hash {
		return nil, refusal.New(refusal.Forbidden, "collab.stale", "the querier runs another version of collaboration %s (hash %.12s…, this node has %.12s…)", res.c.ID, o.or.Hash, res.c.Hash())
	}
	res.record(c.Entry, res.plan.Sides[res.ownSide], [16]byte(o.or.Session))
	o.res = res
	return &contributePrepared{contributeOp: o, res: res}, nil
}

func (p *contributePrepared) Checks() []policy.Request { return nil }

func (p *contributePrepared) Preview(context.Context, *govern.Call) (any, error) { return nil, nil }

func (p *contributePrepared) Cost(c *govern.Call) []govern.Charge { return p.res.charge(c) }

func (p *contributePrepared) Run(ctx context.Context, c *govern.Call) (govern.Unreleased, error) {
	res, sess := p.res, [16]byte(p.or.Session)
	timeout := p.s.SessionTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	// Reserve the session id at once: two opens of one id cannot both run.
	st := &session{peer: p.pr.Peer.Name, res: res, expires: c.Now.Add(timeout)}
	p.s.mu.Lock()
	if p.s.sessions == nil {
		p.s.sessions = map[[16]byte]*session{}
	}
	p.s.sweep(c.Now)
	_, dup := p.s.sessions[sess]
	if !dup {
		p.s.sessions[sess] = st
	}
	p.s.mu.Unlock()
	if dup {
		return nil, refusal.New(refusal.Forbidden, "collab.session", "the session is already open")
	}
	ok := false
	defer func() {
		if !ok {
			p.s.drop(sess)
		}
	}()
	party, err := psi.NewParty(sess, res.plan.Width(), MaxItems)
	if err != nil {
		return nil, err
	}
	if err := party.Join([psi.ShareSize]byte(p.or.Public)); err != nil {
		return nil, refusal.New(refusal.BadSQL, "collab.protocol_message", "the querier's key share is malformed")
	}
	mine, err := p.s.items(ctx, c.Snap.WS, res)
	if err != nil {
		return nil, forbid(err)
	}
	// A noisy subset of the dummy pool: the querier cannot tell dummy
	// matches from real ones.
	sigma2 := res.noise(res.ownSide).Size
	mine = append(mine, psi.Pool(sess, psi.PoolSize(sigma2), p.s.width(res, res.ownSide))[:psi.NoisyCount(p.s.Noise, sigma2)]...)
	msg, err := party.Items(mine, p.s.pad(res))
	if err != nil {
		return nil, err
	}
	b, _ := msg.MarshalBinary()
	st.mu.Lock()
	st.party, st.next = party, "reblind"
	st.mu.Unlock()
	ok = true
	pub := party.Public()
	return released{&openResponse{Public: pub[:], Items: b}}, nil
}

type released struct{ v any }

func (r released) Release(context.Context, *govern.Call) (any, error) { return r.v, nil }

// sweep forgets expired sessions (s.mu held).
func (s *Service) sweep(now time.Time) {
	for k, v := range s.sessions {
		if now.After(v.expires) {
			delete(s.sessions, k)
		}
	}
}

// step answers the querier's reblind and finish messages, in order, once
// each, for the peer that opened the session; a leave stops it at once.
func (s *Service) step(ctx context.Context, pr *federation.PeerRequest) (any, error) {
	e := pr.Envelope
	if e.Op != "collab.step" || len(e.Params) != 2 {
		return nil, pr.Refuse(refusal.New(refusal.BadSQL, "collab.protocol_message", "a step names its session and step"))
	}
	sid, _ := e.Params[0].(string)
	name, _ := e.Params[1].(string)
	raw, err := hex.DecodeString(sid)
	if err != nil || len(raw) != 16 {
		return nil, pr.Refuse(refusal.New(refusal.BadSQL, "collab.protocol_message", "the session id is malformed"))
	}
	sess := [16]byte(raw)
	now := s.Kernel.Now()
	s.mu.Lock()
	s.sweep(now)
	st := s.sessions[sess]
	s.mu.Unlock()
	if st == nil || st.peer != pr.Peer.Name {
		return nil, pr.Refuse(refusal.New(refusal.Forbidden, "collab.session", "no open clean-room session by that id for node %s (finished, expired or never opened)", pr.Peer.Name))
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	// A step that waited for another one on st.mu must find the session
	// still open: a second finish would be a second decryption.
	s.mu.Lock()
	current := s.sessions[sess] == st
	s.mu.Unlock()
	if !current {
		return nil, pr.Refuse(refusal.New(refusal.Forbidden, "collab.session", "the session ended while this step waited"))
	}
	if name != st.next || name == "" {
		return nil, pr.Refuse(refusal.New(refusal.Forbidden, "collab.protocol_step", "step %q is out of order (a replay?); the session expects %q", name, st.next))
	}
	ws := s.Kernel.Snapshot().WS
	if own, err := ReadStatement(ws.Dir, st.res.c.ID, ws.Config.Node.Name); err != nil || own.Left != nil || own.Hash != st.res.c.Hash() {
		st.next = ""
		s.drop(sess)
		return nil, pr.Refuse(refusal.New(refusal.Forbidden, "collab.member_left", "this node's member no longer signs collaboration %s; its data is not used", st.res.c.ID))
	}
	switch name {
	case "reblind":
		m, err := psi.Decode(e.Payload, psi.KindItems, sess, MaxItems)
		if err != nil {
			st.next = ""
			s.drop(sess)
			return nil, pr.Refuse(refusal.New(refusal.BadSQL, "collab.protocol_message", "%v", err))
		}
		out, err := st.party.Reblind(m)
		if err != nil {
			st.next = ""
			s.drop(sess)
			return nil, pr.Refuse(refusal.New(refusal.BadSQL, "collab.protocol_message", "%v", err))
		}
		st.next = "finish"
		b, _ := out.MarshalBinary()
		return &stepResponse{Message: b}, nil
	default: // "finish", the only other step
		st.next = ""
		s.drop(sess)
		m, err := psi.Decode(e.Payload, psi.KindCells, sess, 0)
		if err != nil || m.Width != st.res.plan.Width() {
			return nil, pr.Refuse(refusal.New(refusal.BadSQL, "collab.protocol_message", "the cells are malformed"))
		}
		cells, err := st.party.Noise(m.Cipher, st.res.plan.Draw(st.res.noise(st.res.ownSide), s.Noise))
		if err != nil {
			return nil, pr.Refuse(refusal.New(refusal.BadSQL, "collab.protocol_message", "%v", err))
		}
		cm, _ := st.party.CellsMessage(cells).MarshalBinary()
		parts, _ := st.party.PartialsMessage(st.party.Partials(cells)).MarshalBinary()
		return &stepResponse{Message: cm, Partials: parts}, nil
	}
}

func (s *Service) drop(sess [16]byte) {
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
}
