package fedjob

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/secagg"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Service runs federated jobs on one node: the coordinator's rounds
// (when this node coordinates a job) and this node's side of a round of a
// job one of its owners approved.
type Service struct {
	Route  func(*workspace.Manifest) (engine.Engine, string)
	Key    *federation.NodeKey
	Client *federation.Client
	Kernel *govern.Kernel
	Noise  *dp.Sampler
	// SessionTimeout ends a participant's round not finished in time;
	// PhaseTimeout bounds the coordinator's wait for each phase.
	SessionTimeout, PhaseTimeout time.Duration
	// OnPhase, if set, runs on the coordinator after each phase of a
	// round (tests stop a participant there).
	OnPhase func(job string, round int, phase string)

	mu       sync.Mutex
	sessions map[[16]byte]*session
}

// MaxWeight bounds the global model's weights a participant trains from.
const MaxWeight = 1e4

// Paths of the peer endpoints.
const (
	PathOpen = "/peer/v1/secagg/open"
	PathStep = "/peer/v1/secagg/step"
)

// The phases after open, in order.
var phases = []string{"share", "input", "consent", "unmask"}

type openRequest struct {
	Job     []byte    `json:"job"`
	Round   int       `json:"round"`
	RoundID []byte    `json:"round_id"`
	Global  []float64 `json:"global,omitempty"`
}

type openResponse struct {
	Keys       []byte  `json:"keys"`
	Rho        float64 `json:"rho"`
	AuditIndex uint64  `json:"audit_index"`
}

type stepResponse struct {
	Message []byte `json:"message"`
}

type session struct {
	mu      sync.Mutex
	peer    string
	job     *Job
	params  secagg.Params
	client  *secagg.Client
	input   []uint32
	next    string
	expires time.Time
}

// PeerRoutes are the signed peer endpoints of a participant.
func (s *Service) PeerRoutes() map[string]federation.Route {
	return map[string]federation.Route{
		PathOpen: {Kind: share.OpSecaggContribute, Serve: s.open},
		PathStep: {Kind: share.OpSecaggStep, Serve: s.step},
	}
}

func protocolRefusal(format string, args ...any) *refusal.Error {
	return refusal.New(refusal.BadSQL, "secagg.protocol_message", format, args...)
}

// params are a round's secure-aggregation parameters, the same on every
// node from the job file and what the coordinator sent for the round: the
// session id, the round number and the global model are hashed into the
// id every secagg stream and signature is bound to. A member sent another
// round number or another model than the others (to isolate its
// contribution in the difference of two sums) runs another round id: the
// other members refuse its keys, and no sum comes out.
func (j *Job) params(session [16]byte, round int, global []float64) secagg.Params {
	h := sha256.New()
	h.Write([]byte("airlock federated round\n"))
	h.Write(session[:])
	h.Write([]byte(j.Hash()))
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(round)))
	for _, w := range global {
		h.Write(binary.BigEndian.AppendUint64(nil, math.Float64bits(w)))
	}
	p := secagg.Params{Round: [16]byte(h.Sum(nil)), N: len(j.Members), T: j.MinParticipants}
	if j.Sum != nil {
		p.Length = j.Sum.Length()
	} else {
		p.Length = j.Plan().Length()
	}
	return p
}

func (s *Service) open(ctx context.Context, pr *federation.PeerRequest) (any, error) {
	var or openRequest
	if pr.Envelope.Op != "secagg.open" || json.Unmarshal(pr.Envelope.Payload, &or) != nil || len(or.RoundID) != 16 {
		return nil, pr.Refuse(protocolRefusal("the open request is malformed"))
	}
	op := &contributeOp{s: s, pr: pr, or: or}
	res, err := s.Kernel.Do(ctx, govern.Request{Caller: pr.Caller, Purpose: pr.Envelope.Purpose, Op: op})
	if err != nil {
		s.mu.Lock()
		if st := s.sessions[[16]byte(or.RoundID)]; st != nil && st == op.st {
			delete(s.sessions, [16]byte(or.RoundID))
		}
		s.mu.Unlock()
		return nil, err
	}
	out := res.Value.(*openResponse)
	out.AuditIndex = res.AuditIndex
	return out, nil
}

// contributeOp is this node's side of one round: checked, charged to
// this member's ledger, its rows read once, its input computed and kept
// for the session; the answer is its signed keys.
type contributeOp struct {
	s  *Service
	pr *federation.PeerRequest
	or openRequest

	job    *Job
	id     int
	member *Member
	appr   *Approval
	st     *session
}

func (o *contributeOp) Kind() share.OpKind { return share.OpSecaggContribute }

func (o *contributeOp) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	ws := c.Snap.WS
	j, err := Parse(o.or.Job)
	if err != nil {
		return nil, protocolRefusal("the job file does not parse")
	}
	o.job = j
	c.Entry.QueryKind = "secagg"
	c.Entry.Extra = map[string]string{"job": j.ID, "job_hash": j.Hash(), "job_kind": j.Kind, "round": fmt.Sprint(o.or.Round),
		"round_id": hex.EncodeToString(o.or.RoundID), "coordinator": o.pr.Peer.Name, "receivers": strings.Join(j.ResultsTo, ",")}
	self := ws.Config.Node.Name
	if o.id, o.member = j.Member(self); o.member == nil {
		return nil, refusal.New(refusal.Forbidden, "job.not_member", "this node serves no member of job %s", j.ID)
	}
	switch {
	case j.Coordinator != o.pr.Peer.Name:
		return nil, refusal.New(refusal.Forbidden, "job.coordinator", "node %s is not job %s's coordinator", o.pr.Peer.Name, j.ID)
	case !slices.Contains(j.ResultsTo, c.Caller.Identity.Org):
		return nil, refusal.New(refusal.Forbidden, "job.receiver", "org %s does not receive job %s's results", c.Caller.Identity.Org, j.ID)
	case c.Purpose != j.Purpose:
		return nil, refusal.New(refusal.Forbidden, "job.purpose", "job %s is for purpose %s", j.ID, j.Purpose)
	case o.or.Round < 1 || o.or.Round > j.Rounds():
		return nil, protocolRefusal("round %d of a job of %d rounds", o.or.Round, j.Rounds())
	case !federation.SameKey(o.member.Key, o.s.Key.Verifier):
		return nil, refusal.New(refusal.Forbidden, "job.key", "job %s names another key for this node", j.ID)
	}
	a, err := ReadApproval(ws.Dir, j.ID, self)
	switch {
	case err != nil:
		return nil, refusal.New(refusal.Forbidden, "job.unapproved", "member %s has not approved job %s", o.member.Org, j.ID)
	case a.Withdrawn:
		return nil, refusal.New(refusal.Forbidden, "job.withdrawn", "member %s withdrew from job %s", o.member.Org, j.ID)
	case a.Hash != j.Hash() || !a.Verify(o.member.Key):
		return nil, refusal.New(refusal.Forbidden, "job.unapproved", "member %s approved another version of job %s (hash %.12s…, asked %.12s…)", o.member.Org, j.ID, a.Hash, j.Hash())
	}
	o.appr = a
	m := ws.Datasets[o.member.Dataset]
	if m == nil || m.Owner != o.member.Org {
		return nil, refusal.New(refusal.Forbidden, "job.dataset", "member %s holds no dataset %s on this node", o.member.Org, o.member.Dataset)
	}
	c.Entry.Datasets = []string{m.Name}
	if err := j.checkColumns(m); err != nil {
		return nil, err
	}
	if err := checkFilter(a.RowFilter, m); err != nil {
		return nil, err
	}
	if j.Train != nil {
		if size := j.Plan().Model.Size(); len(o.or.Global) != size {
			return nil, protocolRefusal("the global model has %d weights, the job's model %d", len(o.or.Global), size)
		}
		for _, w := range o.or.Global {
			// Beyond this, logits overflow to infinities whose difference
			// is NaN for some rows and not others.
			if !(math.Abs(w) <= MaxWeight) {
				return nil, protocolRefusal("the global model has a weight that is not finite or beyond ±%g", MaxWeight)
			}
		}
	}
	if a.RowFilter != "" {
		c.Entry.Extra["row_filter"] = a.RowFilter
	}
	return o, nil
}

func (o *contributeOp) Checks() []policy.Request { return nil }

func (o *contributeOp) Preview(context.Context, *govern.Call) (any, error) { return nil, nil }

// rho is what round r costs this member.
func (j *Job) rho(r int) float64 {
	if j.Sum != nil {
		return dp.RhoOfPureEps(j.Sum.Epsilon)
	}
	if j.Evaluation(r) {
		return j.Plan().RhoOfEvaluation()
	}
	return j.Plan().RhoPerRound()
}

func (o *contributeOp) Cost(c *govern.Call) []govern.Charge {
	rho := o.job.rho(o.or.Round)
	if rho == 0 {
		c.Entry.Extra["privacy"] = "none"
		return nil
	}
	b := o.member.Budget
	limit, deltaLimit := dp.BudgetLimits(b.Epsilon, b.Delta)
	key := store.BudgetKey{Agreement: "job:" + o.job.ID}
	if b.Period > 0 {
		key.PeriodStart = dp.PeriodStart(c.Now, b.Period)
	}
	return []govern.Charge{{
		Charge:   store.Charge{ID: c.Caller.RequestID, Key: key, Rho: rho, LimitRho: limit, LimitDelta: deltaLimit},
		Announce: func(e *audit.Entry) { e.Rho = rho },
		Exhausted: func(store.BudgetState) *refusal.Error {
			return refusal.New(refusal.BudgetExhausted, "job.budget", "member %s's budget for job %s cannot pay another round (ρ = %.4g)", o.member.Org, o.job.ID, rho)
		},
	}}
}

func (o *contributeOp) Run(ctx context.Context, c *govern.Call) (govern.Unreleased, error) {
	s, j, ws := o.s, o.job, c.Snap.WS
	rid := [16]byte(o.or.RoundID)
	p := j.params(rid, o.or.Round, o.or.Global)
	timeout := s.SessionTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	// Reserve the round id at once: two opens of one round cannot both run.
	o.st = &session{peer: o.pr.Peer.Name, job: j, params: p, expires: c.Now.Add(timeout)}
	s.mu.Lock()
	if s.sessions == nil {
		s.sessions = map[[16]byte]*session{}
	}
	s.sweep(c.Now)
	_, dup := s.sessions[rid]
	if !dup {
		s.sessions[rid] = o.st
	}
	s.mu.Unlock()
	if dup {
		return nil, refusal.New(refusal.Forbidden, "secagg.session", "round %x is already open", rid[:4])
	}
	m := ws.Datasets[o.member.Dataset]
	eng, rel := s.Route(m)
	rows, err := j.read(ctx, eng, rel, o.appr.RowFilter)
	if err != nil {
		return nil, err
	}
	var input []uint32
	if j.Sum != nil {
		input = j.Sum.vector(rows, p.N, j.honest(), s.Noise)
	} else {
		plan := j.Plan()
		// No rows is not refused (that would say the filter admits
		// nothing): the update is zero, with its noise.
		contribute := plan.Contribute
		if j.Evaluation(o.or.Round) {
			contribute = plan.Evaluate
			c.Entry.Extra["evaluation"] = "true"
		}
		if input, err = contribute(o.or.Global, j.Train.trainData(rows), s.Noise); err != nil {
			return nil, refusal.New(refusal.Internal, "job.train", "local training failed")
		}
	}
	client, err := secagg.NewClient(p, o.id, s.Key, federation.Verify, j.peerKeys())
	if err != nil {
		return nil, err
	}
	o.st.mu.Lock()
	o.st.client, o.st.input, o.st.next = client, input, phases[0]
	o.st.mu.Unlock()
	c.Entry.RowsReturned = 0
	return released{&openResponse{Keys: secagg.MarshalKeys(p, client.Advertise()), Rho: j.rho(o.or.Round)}}, nil
}

// peerKeys are every member's verifying key by participant id.
func (j *Job) peerKeys() map[int]ed25519.PublicKey {
	out := map[int]ed25519.PublicKey{}
	for i, m := range j.Members {
		_, pub, _ := federation.ParseVerifier(m.Key)
		out[i+1] = pub
	}
	return out
}

type released struct{ v any }

func (r released) Release(context.Context, *govern.Call) (any, error) { return r.v, nil }

func (s *Service) sweep(now time.Time) {
	for k, v := range s.sessions {
		if now.After(v.expires) {
			delete(s.sessions, k)
		}
	}
}

func (s *Service) drop(rid [16]byte) {
	s.mu.Lock()
	delete(s.sessions, rid)
	s.mu.Unlock()
}

// step answers the coordinator's phases, in order, once each, for the
// node that opened the round; a withdrawn approval stops it at once.
func (s *Service) step(ctx context.Context, pr *federation.PeerRequest) (any, error) {
	e := pr.Envelope
	if e.Op != "secagg.step" || len(e.Params) != 2 {
		return nil, pr.Refuse(protocolRefusal("a step names its round and phase"))
	}
	sid, _ := e.Params[0].(string)
	phase, _ := e.Params[1].(string)
	raw, err := hex.DecodeString(sid)
	if err != nil || len(raw) != 16 {
		return nil, pr.Refuse(protocolRefusal("the round id is malformed"))
	}
	rid := [16]byte(raw)
	s.mu.Lock()
	s.sweep(s.Kernel.Now())
	st := s.sessions[rid]
	s.mu.Unlock()
	if st == nil || st.peer != pr.Peer.Name {
		return nil, pr.Refuse(refusal.New(refusal.Forbidden, "secagg.session", "no open round by that id for node %s (finished, expired or never opened)", pr.Peer.Name))
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	s.mu.Lock()
	current := s.sessions[rid] == st
	s.mu.Unlock()
	if !current {
		return nil, pr.Refuse(refusal.New(refusal.Forbidden, "secagg.session", "the round ended while this step waited"))
	}
	if phase != st.next || phase == "" {
		return nil, pr.Refuse(refusal.New(refusal.Forbidden, "secagg.phase", "phase %q is out of order (a replay?); the round expects %q", phase, st.next))
	}
	ws := s.Kernel.Snapshot().WS
	if a, err := ReadApproval(ws.Dir, st.job.ID, ws.Config.Node.Name); err != nil || a.Withdrawn || a.Hash != st.job.Hash() {
		st.next = ""
		s.drop(rid)
		return nil, pr.Refuse(refusal.New(refusal.Forbidden, "job.withdrawn", "this node's owner no longer approves job %s; its data is not used", st.job.ID))
	}
	fail := func(err error) error {
		st.next = ""
		s.drop(rid)
		return pr.Refuse(protocolRefusal("%v", err))
	}
	p := st.params
	var out []byte
	switch phase {
	case "share":
		keys, err := secagg.UnmarshalKeyList(p, e.Payload)
		if err != nil {
			return nil, fail(err)
		}
		shares, err := st.client.ShareKeys(keys)
		if err != nil {
			return nil, fail(err)
		}
		out = secagg.MarshalShares(p, shares)
	case "input":
		shares, err := secagg.UnmarshalShares(p, e.Payload)
		if err != nil {
			return nil, fail(err)
		}
		m, err := st.client.MaskedInput(shares, st.input)
		if err != nil {
			return nil, fail(err)
		}
		st.input = nil
		out = secagg.MarshalMasked(p, m)
	case "consent":
		u3, err := secagg.UnmarshalSurvivors(p, e.Payload)
		if err != nil {
			return nil, fail(err)
		}
		c, err := st.client.Consent(u3)
		if err != nil {
			return nil, fail(err)
		}
		out = secagg.MarshalConsents(p, []secagg.Consent{*c})
	default: // "unmask", the last phase: audited, allowed or refused
		st.next = ""
		s.drop(rid)
		res, err := s.Kernel.Do(ctx, govern.Request{Caller: pr.Caller, Purpose: e.Purpose, Op: &unmaskOp{st: st, payload: e.Payload, rid: rid}})
		if err != nil {
			return nil, err
		}
		return res.Value, nil
	}
	st.next = phases[slices.Index(phases, phase)+1]
	return &stepResponse{Message: out}, nil
}

// unmaskOp is this node's last word in a round: its shares of the
// survivors' self masks and the dropped members' mask keys, given the
// survivors' signed consent. Its audit entry names the survivors: the
// node's log shows which rounds revealed a sum its data is in.
type unmaskOp struct {
	st      *session
	payload []byte
	rid     [16]byte
	u3      []int
	cs      []secagg.Consent
}

func (o *unmaskOp) Kind() share.OpKind { return share.OpSecaggStep }

func (o *unmaskOp) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	j, p := o.st.job, o.st.params
	c.Entry.QueryKind = "secagg"
	c.Entry.Extra = map[string]string{"job": j.ID, "job_hash": j.Hash(), "phase": "unmask", "round_id": hex.EncodeToString(o.rid[:]), "coordinator": o.st.peer}
	u3b, csb, err := split(o.payload)
	if err == nil {
		o.u3, err = secagg.UnmarshalSurvivors(p, u3b)
	}
	if err == nil {
		o.cs, err = secagg.UnmarshalConsents(p, csb)
	}
	if err != nil {
		return nil, protocolRefusal("%v", err)
	}
	var orgs []string
	for _, id := range o.u3 {
		orgs = append(orgs, j.Members[id-1].Org)
	}
	c.Entry.Extra["survivors"] = strings.Join(orgs, ",")
	return o, nil
}

func (o *unmaskOp) Checks() []policy.Request { return nil }

func (o *unmaskOp) Preview(context.Context, *govern.Call) (any, error) { return nil, nil }

func (o *unmaskOp) Run(ctx context.Context, c *govern.Call) (govern.Unreleased, error) {
	u, err := o.st.client.Unmask(o.u3, o.cs)
	if err != nil {
		return nil, protocolRefusal("%v", err)
	}
	return released{&stepResponse{Message: secagg.MarshalUnmasking(o.st.params, u)}}, nil
}

// join and split carry two messages in one payload, the first's length
// first.
func join(a, b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(a))), append(a, b...)...)
}

func split(b []byte) ([]byte, []byte, error) {
	if len(b) < 4 || int(binary.BigEndian.Uint32(b)) > len(b)-4 {
		return nil, nil, errors.New("a malformed pair of messages")
	}
	n := int(binary.BigEndian.Uint32(b))
	return b[4 : 4+n], b[4+n:], nil
}
