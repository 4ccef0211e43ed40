// Package govern is Airlock's governance kernel: every operation of every
// channel (a SQL query over HTTP or the wire, a catalog listing, an audit
// read, a revocation, and later federated sub-queries, training rounds,
// jobs and exports) goes through Kernel.Do, so the invariants are written
// once:
//
//	admit → prepare (parse, resolve agreements, plan) → authorize (Cedar,
//	every check) → [plan/describe: preview, stop] → answer cache → reserve
//	and charge the cost (all budgets or none) → run → charge what the run
//	counted → release (output controls, noise) → audit → respond
//
// A refusal at any stage ends in an audit entry before anything is
// returned, and an answer leaves only once its entry is durable. The
// stages an operation supplies are the Op, Prepared and Unreleased
// interfaces; the kernel never knows what an operation computes.
package govern

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/airlock-dev/airlock/internal/admission"
	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
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

// Version names everything that decides under this snapshot (policies,
// agreements, principals, manifests, configuration): the digest of the
// workspace's files. Every audit entry records it.
func (s *Snapshot) Version() string {
	if s.WS == nil || s.WS.Digest == "" {
		return ""
	}
	return "sha256:" + s.WS.Digest
}

// Auditor appends an entry to the audit log durably.
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (uint64, error)
}

// Ledger is the state the kernel charges and caches answers in.
type Ledger interface {
	// ChargeBudgets debits every charge or none (store.Store).
	ChargeBudgets(ctx context.Context, cs []store.Charge) ([]store.BudgetState, error)
	CachedResult(ctx context.Context, agreement, fingerprint string, periodStart time.Time) (store.CachedResult, error)
	PutCachedResult(ctx context.Context, r store.CachedResult) (store.CachedResult, error)
}

// Metrics records what the kernel decides (internal/metrics implements it).
type Metrics interface {
	// Decision counts one audited decision with its total latency.
	Decision(op, channel, decision, rule string, took time.Duration)
	// Stage times one stage of one operation kind.
	Stage(op, stage string, took time.Duration)
	// Charged adds a charge to a ledger key's spent budget.
	Charged(ledgerKey string, amount float64)
}

// Request is one governed operation.
type Request struct {
	Caller    share.Caller
	Purpose   string
	Agreement string // optional: the agreement to act under
	Mode      share.Mode
	Op        Op
	// Quiet is set by a channel that audits an operation in summary (a
	// repeat of a catalog read already audited in the session, counted by
	// Summarize): an allowed outcome is not appended; a refusal still is.
	Quiet bool
}

// Result is what a channel encodes: the operation's released value and
// the receipt that ties it to its audit entry.
type Result struct {
	Value            any
	RequestID        string
	AuditIndex       uint64
	PolicyVersion    string
	WorkspaceVersion string
}

// Op is one kind of governed operation.
type Op interface {
	Kind() share.OpKind
	// Prepare parses, resolves the agreements and plans, under c.Snap;
	// it records what it learns (datasets, agreement, columns, the
	// statement and its parameters) in c.Entry. Nothing runs yet.
	Prepare(ctx context.Context, c *Call) (Prepared, error)
}

// Prepared is a planned operation, not yet authorized.
type Prepared interface {
	// Checks are the policy questions; every one must be allowed.
	Checks() []policy.Request
	// Preview answers Plan and Describe: shape and cost, nothing run.
	Preview(ctx context.Context, c *Call) (any, error)
	// Run executes the operation. The charges of Costed are made first.
	Run(ctx context.Context, c *Call) (Unreleased, error)
}

// Unreleased is a result that has not left yet. If it is Costed too, its
// charges (a list rule's released rows) are made before Release.
type Unreleased interface {
	// Release applies the output controls and returns the value to send;
	// it records rows returned and withheld in c.Entry.
	Release(ctx context.Context, c *Call) (any, error)
}

// Costed is a Prepared or an Unreleased that spends a budget.
type Costed interface {
	Cost(c *Call) []Charge
}

// Cacheable is a Prepared whose released answer is a function of its key
// alone (a DP answer: the same statistics under the same agreement and
// budget holder). Identical requests get the stored answer at no new
// cost, and identical requests in flight at once are answered and charged
// once (across replicas, the first stored answer wins).
type Cacheable interface {
	CacheKey() CacheKey
	Encode(v any) []byte
	Decode(b []byte) (any, bool)
	// Reused marks a value answered from the cache (concurrent: from an
	// identical request in flight) and records it in c.Entry.
	Reused(c *Call, v any, concurrent bool) any
}

// CacheKey identifies a cacheable answer.
type CacheKey struct {
	Agreement, Fingerprint string
	Period                 time.Time
}

// Mutating is a Prepared that changes governance state when it runs (a
// revocation): the kernel announces it in a durable "intent" entry before
// Run, as it announces charges.
type Mutating interface {
	Mutates()
}

// Light is an Op that reads only a little workspace or store state, never
// an engine: admission control does not count it. Every other operation,
// in every mode (a wire Describe plans a query too), is admitted.
type Light interface{ Light() }

// Charge is one debit and how the kernel reports it.
type Charge struct {
	store.Charge
	// Announce records the charge's size in its "reserve" audit entry and
	// in the deciding entry.
	Announce func(e *audit.Entry)
	// Exhausted is the refusal when the charge does not fit, given the
	// ledger's state for its key.
	Exhausted func(st store.BudgetState) *refusal.Error
}

// Call is one request in flight, handed to each stage of its operation.
type Call struct {
	Request
	Snap  *Snapshot
	Now   time.Time
	Entry *audit.Entry
	Log   *slog.Logger
	// Charged are the ledger states after the kernel's last charge, in the
	// order of the charges.
	Charged []store.BudgetState
	// sealed run once the deciding entry of an allowed operation is
	// durable, with its audit index (see OnSealed).
	sealed []func(ctx context.Context, index uint64)
}

// OnSealed asks for f to run with the audit index of the entry that
// releases this operation's answer, once that entry is durable: for
// state recorded before release that should name its entry (a release
// history). It does not run if the operation is refused.
func (c *Call) OnSealed(f func(ctx context.Context, index uint64)) {
	c.sealed = append(c.sealed, f)
}

// Config wires a kernel.
type Config struct {
	Audit     Auditor
	Ledger    Ledger
	Admission *admission.Controller // nil admits everything
	Metrics   Metrics               // nil records nothing
	Log       *slog.Logger
	Now       func() time.Time
	NewID     func() string // request and charge ids
}

// Kernel runs operations.
type Kernel struct {
	cfg    Config
	snap   atomic.Pointer[Snapshot]
	flight singleflight.Group
}

// New returns a kernel deciding under snap.
func New(snap *Snapshot, cfg Config) (*Kernel, error) {
	if cfg.Audit == nil || cfg.Ledger == nil {
		return nil, errors.New("govern: an auditor and a ledger are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = randomID
	}
	k := &Kernel{cfg: cfg}
	k.snap.Store(snap)
	return k, nil
}

// Swap installs a new snapshot for the requests that start after it.
func (k *Kernel) Swap(s *Snapshot) { k.snap.Store(s) }

// Snapshot returns the snapshot in force.
func (k *Kernel) Snapshot() *Snapshot { return k.snap.Load() }

// Now is the kernel's clock.
func (k *Kernel) Now() time.Time { return k.cfg.Now() }

// Admission is the kernel's admission controller (nil if none).
func (k *Kernel) Admission() *admission.Controller { return k.cfg.Admission }

// Do runs one operation through every stage. The error, if any, is a
// *refusal.Error carrying the request id, safe to show to the client.
func (k *Kernel) Do(ctx context.Context, r Request) (*Result, error) {
	start := time.Now()
	c := k.newCall(r)
	v, err := k.run(ctx, c)
	return k.seal(ctx, c, v, err, start)
}

// Refuse audits a refusal decided at a channel's edge, before an operation
// could be prepared (a credential that does not verify, a body or a
// parameter that does not decode), and returns it with its request id.
func (k *Kernel) Refuse(ctx context.Context, r Request, why *refusal.Error) error {
	c := k.newCall(r)
	_, err := k.seal(ctx, c, nil, why, time.Now())
	return err
}

// Summarize appends an allowed entry that sums up quiet operations (see
// Request.Quiet): r names the kind and the caller, message what was done.
func (k *Kernel) Summarize(ctx context.Context, r Request, sql, message string) error {
	c := k.newCall(r)
	c.Entry.SQL, c.Entry.Message = sql, message
	_, err := k.seal(ctx, c, nil, nil, time.Now())
	return err
}

// Edge is the operation of a refusal decided at a channel's edge, before
// the operation itself could be built: it names the kind only.
func Edge(kind share.OpKind) Op { return edgeOp(kind) }

type edgeOp share.OpKind

func (o edgeOp) Kind() share.OpKind { return share.OpKind(o) }
func (o edgeOp) Prepare(context.Context, *Call) (Prepared, error) {
	return nil, refusal.New(refusal.Internal, "internal", "internal error; see the server log")
}

// NewRequestID returns a fresh request id, for channels that log before
// they call the kernel.
func (k *Kernel) NewRequestID() string { return k.cfg.NewID() }

func (k *Kernel) newCall(r Request) *Call {
	if r.Caller.RequestID == "" {
		r.Caller.RequestID = k.cfg.NewID()
	}
	snap := k.snap.Load()
	now := k.cfg.Now().UTC()
	kind := share.OpKind("")
	if r.Op != nil {
		kind = r.Op.Kind()
	}
	e := &audit.Entry{
		Time: now, Principal: r.Caller.Principal, Org: r.Caller.Org, Agreement: r.Agreement, Purpose: r.Purpose,
		Channel: r.Caller.Channel, ClientAddr: r.Caller.ClientAddr, PolicyVersion: snap.Policy.Version(), WorkspaceVersion: snap.Version(),
		QueryKind: queryKind(kind, r.Mode), RequestID: r.Caller.RequestID, Credential: r.Caller.TokenID,
	}
	if r.Caller.Peer != "" {
		e.Extra = map[string]string{"peer": r.Caller.Peer, "peer_request": r.Caller.PeerRequest}
	}
	return &Call{Request: r, Snap: snap, Now: now, Entry: e,
		Log: k.cfg.Log.With("request_id", r.Caller.RequestID, "op", string(kind), "channel", r.Caller.Channel)}
}

// queryKind is the entry's query_kind: the operation kind, with "query"
// and "plan" kept for SQL (what audit filters and reports already use).
func queryKind(kind share.OpKind, m share.Mode) string {
	if kind == share.OpQuery {
		if m == share.Plan {
			return "plan"
		}
		return "query"
	}
	return string(kind)
}

func (k *Kernel) run(ctx context.Context, c *Call) (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.Log.Error("panic in an operation", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			v, err = nil, refusal.Panic()
		}
	}()
	op := c.Op
	if k.cfg.Admission != nil {
		if _, light := op.(Light); !light {
			release, verdict := k.cfg.Admission.Admit(ctx, c.Caller.Principal)
			if verdict != admission.Admitted {
				return nil, admissionRefusal(verdict)
			}
			defer release()
		}
	}
	kind := string(op.Kind())
	t := time.Now()
	p, err := op.Prepare(ctx, c)
	k.stage(kind, "prepare", t)
	if err != nil {
		return nil, err
	}
	t = time.Now()
	err = k.authorize(c, p.Checks())
	k.stage(kind, "authorize", t)
	if err != nil {
		return nil, err
	}
	if c.Mode != share.Run {
		return p.Preview(ctx, c)
	}
	if cp, ok := p.(Cacheable); ok {
		return k.cached(ctx, c, cp, p)
	}
	return k.execute(ctx, c, p)
}

// authorize asks every check of policy; the first refusal names the
// action, the dataset and the policies that decided.
func (k *Kernel) authorize(c *Call, checks []policy.Request) error {
	for _, q := range checks {
		d := c.Snap.Policy.Decide(q)
		if !d.Allowed {
			return refusal.New(refusal.Forbidden, "policy", "%s on dataset %s is not permitted by policy%s", q.Action, q.Resource.Name, reasonSuffix(d.Reasons))
		}
	}
	return nil
}

func reasonSuffix(r []string) string {
	if len(r) == 0 {
		return " (no policy permits it)"
	}
	return " (decided by " + strings.Join(r, ", ") + ")"
}

// execute charges, runs, charges what the run counted, and releases.
func (k *Kernel) execute(ctx context.Context, c *Call, p Prepared) (any, error) {
	kind := string(c.Op.Kind())
	if cp, ok := p.(Costed); ok {
		if err := k.charge(ctx, c, cp.Cost(c)); err != nil {
			return nil, err
		}
	}
	if _, ok := p.(Mutating); ok {
		r := *c.Entry
		r.Decision, r.Event = audit.DecisionIntent, share.EventCode(share.OpIntent, share.Run, true)
		if _, err := k.cfg.Audit.Append(context.WithoutCancel(ctx), r); err != nil {
			return nil, refusal.AuditUnavailable().WithCause(err)
		}
	}
	t := time.Now()
	u, err := p.Run(ctx, c)
	k.stage(kind, "run", t)
	if err != nil {
		return nil, err
	}
	if cu, ok := u.(Costed); ok {
		if err := k.charge(ctx, c, cu.Cost(c)); err != nil {
			return nil, err
		}
	}
	t = time.Now()
	v, err := u.Release(ctx, c)
	k.stage(kind, "release", t)
	return v, err
}

// cached answers a cacheable operation from the stored answer, or runs it
// once for every identical request in flight and stores its answer.
func (k *Kernel) cached(ctx context.Context, c *Call, cp Cacheable, p Prepared) (any, error) {
	key := cp.CacheKey()
	if hit, err := k.cfg.Ledger.CachedResult(ctx, key.Agreement, key.Fingerprint, key.Period); err == nil {
		if v, ok := cp.Decode(hit.Body); ok {
			return cp.Reused(c, v, false), nil
		}
	}
	leader := false
	body, err, _ := k.flight.Do(key.Agreement+"\x00"+key.Fingerprint+"\x00"+key.Period.String(), func() (any, error) {
		leader = true
		v, err := k.execute(ctx, c, p)
		if err != nil {
			return nil, err
		}
		body := cp.Encode(v)
		// First writer wins: an identical query answered at once by
		// another replica returns that replica's answer.
		stored, err := k.cfg.Ledger.PutCachedResult(ctx, store.CachedResult{Agreement: key.Agreement, Fingerprint: key.Fingerprint, PeriodStart: key.Period, Body: body, CreatedAt: c.Now})
		if err == nil && string(stored.Body) != string(body) {
			if _, ok := cp.Decode(stored.Body); ok {
				body = stored.Body
			}
		}
		return body, nil
	})
	if err != nil {
		return nil, err
	}
	v, ok := cp.Decode(body.([]byte))
	if !ok {
		return nil, refusal.New(refusal.Internal, "internal", "internal error; see the server log")
	}
	if !leader {
		return cp.Reused(c, v, true), nil
	}
	return v, nil
}

// charge announces each charge in a durable "reserve" entry, then debits
// all of them atomically: after any crash every debit is explained by
// the log (airlock audit reconcile), and a charge refused for budget
// spends nothing anywhere.
func (k *Kernel) charge(ctx context.Context, c *Call, cs []Charge) error {
	if len(cs) == 0 {
		return nil
	}
	t := time.Now()
	defer k.stage(string(c.Op.Kind()), "charge", t)
	debits := make([]store.Charge, len(cs))
	for i, ch := range cs {
		id := k.cfg.NewID()
		r := *c.Entry
		r.Decision, r.ChargeID, r.Event = audit.DecisionReserve, id, share.EventCode(share.OpReserve, share.Run, true)
		if ch.Announce != nil {
			ch.Announce(&r)
			ch.Announce(c.Entry)
		}
		if _, err := k.cfg.Audit.Append(context.WithoutCancel(ctx), r); err != nil {
			return refusal.AuditUnavailable().WithCause(err)
		}
		if c.Entry.ChargeID == "" {
			c.Entry.ChargeID = id // the deciding entry names the first charge
		}
		debits[i] = ch.Charge
		debits[i].ID = id
	}
	states, err := k.cfg.Ledger.ChargeBudgets(ctx, debits)
	var ex *store.ExhaustedError
	if errors.As(err, &ex) {
		return cs[ex.Index].Exhausted(states[ex.Index])
	}
	if err != nil {
		return refusal.StoreUnavailable(err)
	}
	if k.cfg.Metrics != nil {
		for _, d := range debits {
			k.cfg.Metrics.Charged(d.Key.Agreement, d.Rho)
		}
	}
	c.Charged = states
	return nil
}

// seal is the one way out of the kernel: it audits the decision (every
// refusal; every allowed operation except a Describe) before anything is
// returned, logs causes server-side with the request id, and records the
// decision's metrics. If the log cannot take the entry, nothing is
// released.
func (k *Kernel) seal(ctx context.Context, c *Call, v any, err error, start time.Time) (*Result, error) {
	kind := share.OpKind("")
	if c.Op != nil {
		kind = c.Op.Kind()
	}
	e := c.Entry
	allowed := err == nil
	e.Event = share.EventCode(kind, c.Mode, allowed)
	var r *refusal.Error
	if allowed {
		e.Decision = "allow"
	} else {
		r = refusal.As(err)
		e.Decision, e.Code, e.Rule, e.Message = "deny", string(r.Code), r.Rule, r.Message
		logRefusal(c.Log, r)
	}
	var idx uint64
	appended := false
	if !allowed || (c.Mode != share.Describe && !c.Quiet) {
		t := time.Now()
		var aerr error
		idx, aerr = k.cfg.Audit.Append(context.WithoutCancel(ctx), *e)
		k.stage(string(kind), "audit", t)
		if aerr != nil {
			c.Log.Error("audit append failed; nothing released", "err", aerr)
			r, allowed = refusal.AuditUnavailable(), false
		}
		appended = aerr == nil
	}
	if k.cfg.Metrics != nil && c.Mode != share.Describe {
		decision, rule := "allow", ""
		if !allowed {
			decision, rule = "deny", r.Rule
		}
		k.cfg.Metrics.Decision(string(kind), c.Caller.Channel, decision, rule, time.Since(start))
	}
	if allowed && appended {
		for _, f := range c.sealed {
			f(context.WithoutCancel(ctx), idx)
		}
	}
	if !allowed {
		out := *r // the refusal may be shared (a single flight's followers)
		out.RequestID = c.Caller.RequestID
		return nil, &out
	}
	return &Result{Value: v, RequestID: c.Caller.RequestID, AuditIndex: idx, PolicyVersion: e.PolicyVersion, WorkspaceVersion: e.WorkspaceVersion}, nil
}

// logRefusal writes a refusal's cause to the server log with the request
// id: failures of the node at error level, the client's own at info.
func logRefusal(log *slog.Logger, r *refusal.Error) {
	cause := errors.Unwrap(r)
	level := slog.LevelInfo
	switch r.Code {
	case refusal.Internal, refusal.Engine, refusal.Unavailable:
		level = slog.LevelError
	}
	if cause == nil && level == slog.LevelInfo {
		return
	}
	detail := ""
	if cause != nil {
		detail = cause.Error()
		// An engine's raw message (it may quote data) goes to this log only.
		var raw interface{ Cause() string }
		if errors.As(cause, &raw) {
			detail = raw.Cause()
		}
	}
	log.Log(context.Background(), level, "refused", "rule", r.Rule, "code", string(r.Code), "cause", detail)
}

func (k *Kernel) stage(op, stage string, since time.Time) {
	if k.cfg.Metrics != nil {
		k.cfg.Metrics.Stage(op, stage, time.Since(since))
	}
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

func randomID() string {
	var b [12]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Answer is a Prepared that needs no policy check, runs nothing and
// releases v: for operations that only read state the caller may see
// (a catalog listing).
func Answer(v any) Prepared { return answer{v} }

type answer struct{ v any }

func (a answer) Checks() []policy.Request                       { return nil }
func (a answer) Preview(context.Context, *Call) (any, error)    { return a.v, nil }
func (a answer) Run(context.Context, *Call) (Unreleased, error) { return a, nil }
func (a answer) Release(context.Context, *Call) (any, error)    { return a.v, nil }
