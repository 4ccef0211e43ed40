package fedjob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/fl"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/secagg"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// RoundResult is what one round releases to the job's receivers.
type RoundResult struct {
	Job   string `json:"job"`
	Hash  string `json:"job_hash"`
	Round int    `json:"round"`
	// Evaluation marks the round after the last training round: the
	// final model's score, no update.
	Evaluation bool     `json:"evaluation,omitempty"`
	Survivors  []string `json:"survivors"`
	// Charged are the members that opened the round: each paid Rho,
	// whether or not it survived to the sum.
	Charged []string `json:"charged"`
	// Dropped are the members that took no part, each with why.
	Dropped map[string]string `json:"dropped,omitempty"`
	// Rho is what the round cost each survivor's ledger (zCDP).
	Rho float64 `json:"rho"`
	// Table is a sum job's answer; Score a training round's measure of
	// the incoming model (accuracy, or mean squared error) over the
	// survivors' rows, absent if not measured.
	Table *Table   `json:"table,omitempty"`
	Score *float64 `json:"score,omitempty"`
	Rows  int64    `json:"rows,omitempty"`

	next fl.Weights
}

// Round is the coordinator's operation: round r of the job, from the
// global weights (training).
func (s *Service) Round(j *Job, r int, global fl.Weights) govern.Op {
	return &roundOp{s: s, job: j, round: r, global: global}
}

type roundOp struct {
	s      *Service
	job    *Job
	round  int
	global fl.Weights
	peers  []*workspace.Peer
}

func (o *roundOp) Kind() share.OpKind { return share.OpSecaggRound }

func (o *roundOp) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	ws, j := c.Snap.WS, o.job
	c.Entry.QueryKind = "secagg"
	c.Entry.Extra = map[string]string{"job": j.ID, "job_hash": j.Hash(), "job_kind": j.Kind, "round": fmt.Sprint(o.round), "receivers": strings.Join(j.ResultsTo, ",")}
	switch {
	case j.Coordinator != ws.Config.Node.Name:
		return nil, refusal.New(refusal.Forbidden, "job.coordinator", "job %s is coordinated by node %s, not this one", j.ID, j.Coordinator)
	case !slices.Contains(j.ResultsTo, c.Caller.Identity.Org):
		return nil, refusal.New(refusal.Forbidden, "job.receiver", "org %s does not receive job %s's results", c.Caller.Identity.Org, j.ID)
	case c.Purpose != j.Purpose:
		return nil, refusal.New(refusal.Forbidden, "job.purpose", "job %s is for purpose %s", j.ID, j.Purpose)
	}
	for _, m := range j.Members {
		p := ws.Peers[m.Node]
		if p == nil || !federation.SameKey(p.Key, m.Key) {
			return nil, refusal.New(refusal.Forbidden, "job.peer", "member %s's node %s is not a peer of this node with the key the job names", m.Org, m.Node)
		}
		o.peers = append(o.peers, p)
	}
	return o, nil
}

func (o *roundOp) Checks() []policy.Request { return nil }

func (o *roundOp) Preview(context.Context, *govern.Call) (any, error) { return nil, nil }

// exchange is one participant's answer in one phase.
type exchange struct {
	id  int
	msg []byte
	err error
}

func (o *roundOp) Run(ctx context.Context, c *govern.Call) (govern.Unreleased, error) {
	s, j := o.s, o.job
	var rid [16]byte
	rand.Read(rid[:])
	c.Entry.Extra["round_id"] = hex.EncodeToString(rid[:])
	p := j.params(rid, o.round, o.global)
	srv, err := secagg.NewServer(p, federation.Verify, j.peerKeys())
	if err != nil {
		return nil, err
	}
	dropped := map[int]string{}
	env := func(op string) federation.Envelope {
		return federation.Envelope{Principal: federation.PrincipalOf(c.Caller.Identity), Purpose: c.Purpose, Op: op, RequestID: c.Caller.RequestID}
	}
	// phase sends each of ids its message in parallel and returns the
	// answers that came; the others are dropped with why.
	phase := func(name string, ids []int, payload func(id int) []byte) []exchange {
		timeout := s.PhaseTimeout
		if timeout == 0 {
			timeout = time.Minute
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		out := make([]exchange, len(ids))
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() {
				peer := o.peers[id-1]
				out[i].id = id
				if name == "open" {
					e := env("secagg.open")
					e.Payload, _ = json.Marshal(openRequest{Job: j.Bytes(), Round: o.round, RoundID: rid[:], Global: o.global})
					var or openResponse
					_, _, out[i].err = s.Client.Post(pctx, peer, PathOpen, e, &or)
					out[i].msg = or.Keys
					return
				}
				e := env("secagg.step")
				e.Params, e.Payload = []any{hex.EncodeToString(rid[:]), name}, payload(id)
				var sr stepResponse
				_, _, out[i].err = s.Client.Post(pctx, peer, PathStep, e, &sr)
				out[i].msg = sr.Message
			})
		}
		wg.Wait()
		var ok []exchange
		for _, x := range out {
			if x.err != nil {
				dropped[x.id] = why(name, x.err)
				continue
			}
			ok = append(ok, x)
		}
		if s.OnPhase != nil {
			s.OnPhase(j.ID, o.round, name)
		}
		return ok
	}
	var charged []string // the members that answered the open
	tooFew := func(stage string, got int) error {
		var reasons []string
		for _, id := range slices.Sorted(maps.Keys(dropped)) {
			reasons = append(reasons, fmt.Sprintf("%s: %s", j.Members[id-1].Org, dropped[id]))
		}
		c.Entry.Extra["dropped"] = strings.Join(reasons, "; ")
		return refusal.New(refusal.Unavailable, "job.too_few_participants", "round %d of job %s: %d members %s, fewer than min_participants %d; no sum was revealed (%s); charged for the round: %s",
			o.round, j.ID, got, stage, j.MinParticipants, strings.Join(reasons, "; "), strings.Join(charged, ", "))
	}
	bad := func(id int, err error) { dropped[id] = "sent a message that breaks the protocol: " + err.Error() }

	all := make([]int, len(j.Members))
	for i := range all {
		all[i] = i + 1
	}
	// Every member that answered the open was charged, whether or not its
	// keys are usable (a member whose answer timed out may have been too:
	// its own ledger and log say).
	for _, x := range phase("open", all, nil) {
		charged = append(charged, j.Members[x.id-1].Org)
		k, err := secagg.UnmarshalKeys(p, x.msg)
		if err == nil && k.ID != x.id {
			err = errors.New("keys for another participant")
		}
		if err == nil {
			err = srv.AddKeys(k)
		}
		if err != nil {
			bad(x.id, err)
		}
	}
	advertised := idsOf(srv.Keys())
	c.Entry.Extra["charged"] = strings.Join(charged, ",")
	if len(advertised) < p.T {
		return nil, tooFew("opened the round", len(advertised))
	}
	list := secagg.MarshalKeyList(p, srv.Keys())
	var shared []int
	for _, x := range phase("share", advertised, func(int) []byte { return list }) {
		sh, err := secagg.UnmarshalShares(p, x.msg)
		if err == nil {
			err = srv.AddShares(x.id, sh)
		}
		if err != nil {
			bad(x.id, err)
			continue
		}
		shared = append(shared, x.id)
	}
	if len(shared) < p.T {
		return nil, tooFew("shared keys", len(shared))
	}
	sent := 0
	for _, x := range phase("input", shared, func(id int) []byte { return secagg.MarshalShares(p, srv.SharesFor(id)) }) {
		sent++
		m, err := secagg.UnmarshalMasked(p, x.msg)
		if err == nil && m.ID != x.id {
			err = errors.New("an input for another participant")
		}
		if err == nil {
			err = srv.AddInput(m)
		}
		if err != nil {
			bad(x.id, err)
			sent--
		}
	}
	u3, err := srv.Survivors()
	if err != nil {
		return nil, tooFew("sent their inputs", sent)
	}
	survivors := secagg.MarshalSurvivors(p, u3)
	var consents []secagg.Consent
	for _, x := range phase("consent", u3, func(int) []byte { return survivors }) {
		cs, err := secagg.UnmarshalConsents(p, x.msg)
		if err != nil || len(cs) != 1 || cs[0].ID != x.id {
			bad(x.id, errors.New("a malformed consent"))
			continue
		}
		consents = append(consents, cs[0])
	}
	if len(consents) < p.T {
		return nil, tooFew("consented to the survivors", len(consents))
	}
	both := join(survivors, secagg.MarshalConsents(p, consents))
	var unmaskings []*secagg.Unmasking
	for _, x := range phase("unmask", u3, func(int) []byte { return both }) {
		u, err := secagg.UnmarshalUnmasking(p, x.msg)
		if err != nil || u.ID != x.id {
			bad(x.id, errors.New("a malformed unmasking"))
			continue
		}
		unmaskings = append(unmaskings, u)
	}
	sum, err := srv.Sum(unmaskings)
	if err != nil {
		return nil, tooFew("unmasked", len(unmaskings))
	}
	res := &RoundResult{Job: j.ID, Hash: j.Hash(), Round: o.round, Evaluation: j.Evaluation(o.round), Charged: charged, Dropped: map[string]string{}, Rho: j.rho(o.round)}
	for _, id := range u3 {
		res.Survivors = append(res.Survivors, j.Members[id-1].Org)
	}
	for id, w := range dropped {
		res.Dropped[j.Members[id-1].Org] = w
	}
	c.Entry.Extra["survivors"] = strings.Join(res.Survivors, ",")
	if j.Sum != nil {
		res.Table = j.Sum.table(sum, len(u3), j.honest())
		c.Entry.RowsReturned = int64(len(res.Table.Rows))
		return released{res}, nil
	}
	next, pr, err := j.Plan().Apply(o.global, sum, len(u3))
	if err != nil {
		return nil, refusal.New(refusal.Unavailable, "job.sum_out_of_range", "round %d's sum is not one the survivors' clipped inputs can make (a participant sent an input outside the quantisation range); the model is not updated", o.round)
	}
	if res.Evaluation {
		next = o.global // the update part is zero; the model is final
	}
	res.next, res.Rows = next, pr.Rows
	if pr.Rows > 0 {
		res.Score = &pr.Score
	}
	return released{res}, nil
}

func idsOf(keys []secagg.Keys) []int {
	var out []int
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}

// why is a dropped participant's reason: its refusal's rule, or that it
// did not answer.
func why(phase string, err error) string {
	var pe *federation.PeerError
	if errors.As(err, &pe) && pe.Refused != nil {
		return fmt.Sprintf("refused at %s (%s): %s", phase, pe.Rule, pe.Refused.Message)
	}
	return fmt.Sprintf("did not answer at %s", phase)
}

// Spent is one member's privacy spent by a job run.
type Spent struct {
	Org     string  `json:"org"`
	Node    string  `json:"node"`
	Rounds  int     `json:"rounds"`
	Rho     float64 `json:"rho"`
	Epsilon float64 `json:"epsilon"` // at the member's budget δ
	Delta   float64 `json:"delta"`
}

// Model is a trained model as released: the job it came from, its shape
// and feature encoding, and the weights.
type Model struct {
	Job     string     `json:"job"`
	Hash    string     `json:"job_hash"`
	Kind    string     `json:"model"`
	Hidden  int        `json:"hidden,omitempty"`
	Schema  fl.Schema  `json:"schema"`
	Weights fl.Weights `json:"weights"`
}

// Event is one line of a job run's progress.
type Event struct {
	Round *RoundResult `json:"round,omitempty"`
	Done  bool         `json:"done,omitempty"`
	// Score is the final model's, from the evaluation round (absent under
	// member-level privacy).
	Score   *float64 `json:"score,omitempty"`
	Model   *Model   `json:"model,omitempty"`
	Privacy []Spent  `json:"privacy,omitempty"`
}

// RunJob runs every round of the job as one kernel operation each,
// calling emit after each; it stops at the first refused round.
func (s *Service) RunJob(ctx context.Context, caller share.Caller, purpose string, j *Job, emit func(Event) error) error {
	var global fl.Weights
	if j.Train != nil {
		global = j.Plan().Model.Init(j.Train.Seed)
	}
	var final *float64
	spent := map[string]*Spent{}
	for _, m := range j.Members {
		spent[m.Org] = &Spent{Org: m.Org, Node: m.Node, Delta: m.Budget.Delta}
	}
	for r := 1; r <= j.Rounds(); r++ {
		res, err := s.Kernel.Do(ctx, govern.Request{Caller: caller, Purpose: purpose, Op: s.Round(j, r, global)})
		if err != nil {
			return err
		}
		rr := res.Value.(*RoundResult)
		for _, org := range rr.Charged {
			spent[org].Rounds++
			spent[org].Rho += rr.Rho
		}
		global = rr.next
		if err := emit(Event{Round: rr}); err != nil {
			return err
		}
		if rr.Evaluation {
			final = rr.Score
		}
	}
	done := Event{Done: true, Score: final}
	for _, m := range j.Members {
		sp := spent[m.Org]
		if sp.Rho > 0 {
			sp.Epsilon = dp.Spent(sp.Rho, m.Budget.Delta)
		}
		done.Privacy = append(done.Privacy, *sp)
	}
	if j.Train != nil {
		done.Model = &Model{Job: j.ID, Hash: j.Hash(), Kind: j.Train.Model, Hidden: j.Train.Hidden, Schema: j.Train.Schema(), Weights: global}
	}
	return emit(done)
}
