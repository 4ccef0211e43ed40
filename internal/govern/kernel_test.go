package govern

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// trace records the order of everything the kernel and the fakes do.
type trace struct {
	mu     sync.Mutex
	events []string
}

func (t *trace) add(s string) {
	t.mu.Lock()
	t.events = append(t.events, s)
	t.mu.Unlock()
}

func (t *trace) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.events, " ")
}

type fakeAudit struct {
	tr      *trace
	entries []audit.Entry
	fail    bool
	mu      sync.Mutex
}

func (a *fakeAudit) Append(_ context.Context, e audit.Entry) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return 0, errors.New("disk full")
	}
	a.tr.add("audit:" + e.Decision)
	a.entries = append(a.entries, e)
	return uint64(len(a.entries) - 1), nil
}

type fakeLedger struct {
	tr    *trace
	spent map[store.BudgetKey]float64
	cache map[string][]byte
	mu    sync.Mutex
}

func (l *fakeLedger) ChargeBudgets(_ context.Context, cs []store.Charge) ([]store.BudgetState, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]store.BudgetState, len(cs))
	for i, c := range cs {
		if l.spent[c.Key]+c.Rho > c.LimitRho {
			for j, c := range cs {
				out[j] = store.BudgetState{Rho: l.spent[c.Key]}
			}
			l.tr.add("charge:refused")
			return out, &store.ExhaustedError{Index: i}
		}
	}
	for i, c := range cs {
		l.spent[c.Key] += c.Rho
		out[i] = store.BudgetState{Rho: l.spent[c.Key]}
	}
	l.tr.add("charge")
	return out, nil
}

func (l *fakeLedger) CachedResult(_ context.Context, ag, fp string, p time.Time) (store.CachedResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.cache[ag+fp]; ok {
		return store.CachedResult{Body: b}, nil
	}
	return store.CachedResult{}, store.ErrNotFound
}

func (l *fakeLedger) PutCachedResult(_ context.Context, r store.CachedResult) (store.CachedResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.cache[r.Agreement+r.Fingerprint]; ok {
		return store.CachedResult{Body: b}, nil
	}
	l.cache[r.Agreement+r.Fingerprint] = r.Body
	return r, nil
}

// fakeOp is an operation whose every stage records itself.
type fakeOp struct {
	tr        *trace
	prepErr   error
	checks    []policy.Request
	cost      float64 // charged before Run when > 0
	postCost  float64 // charged after Run
	runErr    error
	panicRun  bool
	cacheable bool
	runs      atomic.Int64
	gate      chan struct{} // Run waits on it when set
}

func (o *fakeOp) Kind() share.OpKind { return share.OpQuery }

func (o *fakeOp) Prepare(_ context.Context, c *Call) (Prepared, error) {
	o.tr.add("prepare")
	c.Entry.Datasets = []string{"d"}
	if o.prepErr != nil {
		return nil, o.prepErr
	}
	if o.cacheable {
		return &cachedPrepared{fakePrepared{o}}, nil
	}
	return &fakePrepared{o}, nil
}

type fakePrepared struct{ o *fakeOp }

func (p *fakePrepared) Checks() []policy.Request { p.o.tr.add("checks"); return p.o.checks }
func (p *fakePrepared) Preview(context.Context, *Call) (any, error) {
	p.o.tr.add("preview")
	return "preview", nil
}

func charge(rho float64, agreement string) []Charge {
	return []Charge{{
		Charge:   store.Charge{Key: store.BudgetKey{Agreement: agreement}, Rho: rho, LimitRho: 1},
		Announce: func(e *audit.Entry) { e.Rho = rho },
		Exhausted: func(st store.BudgetState) *refusal.Error {
			return refusal.New(refusal.BudgetExhausted, "dp.budget_exhausted", "spent")
		},
	}}
}

func (p *fakePrepared) Cost(*Call) []Charge {
	if p.o.cost == 0 {
		return nil
	}
	return charge(p.o.cost, "a")
}

func (p *fakePrepared) Run(context.Context, *Call) (Unreleased, error) {
	if p.o.gate != nil {
		<-p.o.gate
	}
	p.o.runs.Add(1)
	p.o.tr.add("run")
	if p.o.panicRun {
		panic("boom")
	}
	if p.o.runErr != nil {
		return nil, p.o.runErr
	}
	return &fakeUnreleased{p.o}, nil
}

type fakeUnreleased struct{ o *fakeOp }

func (u *fakeUnreleased) Cost(*Call) []Charge {
	if u.o.postCost == 0 {
		return nil
	}
	return charge(u.o.postCost, "a#rows")
}

func (u *fakeUnreleased) Release(_ context.Context, c *Call) (any, error) {
	u.o.tr.add("release")
	c.Entry.RowsReturned = 1
	return fmt.Sprintf("answer %d", u.o.runs.Load()), nil
}

type cachedPrepared struct{ fakePrepared }

func (p *cachedPrepared) CacheKey() CacheKey          { return CacheKey{Agreement: "a", Fingerprint: "fp"} }
func (p *cachedPrepared) Encode(v any) []byte         { return []byte(v.(string)) }
func (p *cachedPrepared) Decode(b []byte) (any, bool) { return string(b), true }
func (p *cachedPrepared) Reused(c *Call, v any, concurrent bool) any {
	if concurrent {
		return v.(string) + " (concurrent)"
	}
	return v.(string) + " (stored)"
}

const permitAll = `permit (principal, action, resource);`

func newKernel(t *testing.T, policies string) (*Kernel, *trace, *fakeAudit, *fakeLedger) {
	t.Helper()
	pol, err := policy.Load(map[string][]byte{"p.cedar": []byte(policies)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &trace{}
	au := &fakeAudit{tr: tr}
	led := &fakeLedger{tr: tr, spent: map[store.BudgetKey]float64{}, cache: map[string][]byte{}}
	k, err := New(&Snapshot{WS: &workspace.Workspace{}, Policy: pol}, Config{Audit: au, Ledger: led})
	if err != nil {
		t.Fatal(err)
	}
	return k, tr, au, led
}

func request(op Op, mode share.Mode) Request {
	return Request{Caller: share.Caller{Identity: share.Identity{Principal: "p"}, Channel: "test"}, Mode: mode, Op: op}
}

var check = policy.Request{Principal: policy.Principal{Name: "p"}, Action: "query", Resource: policy.Resource{Name: "d"}}

func TestStagesRunInOrder(t *testing.T) {
	k, tr, au, _ := newKernel(t, permitAll)
	op := &fakeOp{checks: []policy.Request{check}, cost: 0.25, postCost: 0.5}
	op.tr = tr
	res, err := k.Do(context.Background(), request(op, share.Run))
	if err != nil {
		t.Fatal(err)
	}
	// Policy before anything runs; each charge announced, then made,
	// before the run (or, counted by the run, before release); the
	// decision audited last.
	if got, want := tr.String(), "prepare checks audit:reserve charge run audit:reserve charge release audit:allow"; got != want {
		t.Fatalf("stages\n got %s\nwant %s", got, want)
	}
	last := au.entries[len(au.entries)-1]
	if res.AuditIndex != uint64(len(au.entries)-1) || res.RequestID == "" || last.RequestID != res.RequestID || last.Event != "AL1000I" || last.RowsReturned != 1 {
		t.Fatalf("receipt %+v, entry %+v", res, last)
	}
	if au.entries[0].ChargeID == "" || au.entries[0].ChargeID != last.ChargeID || au.entries[0].Event != "AL1500I" || au.entries[0].Rho != 0.25 {
		t.Fatalf("the reserve entry %+v must announce the charge the decision names", au.entries[0])
	}
}

func TestRefusalsAreSealedAtEveryStage(t *testing.T) {
	for _, c := range []struct {
		name   string
		op     *fakeOp
		policy string
		rule   string
		trace  string
	}{
		{"prepare", &fakeOp{prepErr: refusal.New(refusal.BadSQL, "sql.invalid", "no")}, permitAll, "sql.invalid", "prepare audit:deny"},
		{"policy", &fakeOp{checks: []policy.Request{check}}, `forbid (principal, action, resource);`, "policy", "prepare checks audit:deny"},
		{"budget", &fakeOp{cost: 2}, permitAll, "dp.budget_exhausted", "prepare checks audit:reserve charge:refused audit:deny"},
		{"run", &fakeOp{runErr: refusal.New(refusal.Engine, "engine", "failed")}, permitAll, "engine", "prepare checks run audit:deny"},
		{"panic", &fakeOp{panicRun: true}, permitAll, "internal.panic", "prepare checks run audit:deny"},
		{"quota", &fakeOp{postCost: 5}, permitAll, "dp.budget_exhausted", "prepare checks run audit:reserve charge:refused audit:deny"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k, tr, au, _ := newKernel(t, c.policy)
			c.op.tr = tr
			_, err := k.Do(context.Background(), request(c.op, share.Run))
			r := refusal.As(err)
			if r.Rule != c.rule || r.RequestID == "" {
				t.Fatalf("refusal %+v, want rule %s with a request id", r, c.rule)
			}
			if tr.String() != c.trace {
				t.Fatalf("stages %q, want %q", tr.String(), c.trace)
			}
			last := au.entries[len(au.entries)-1]
			if last.Decision != "deny" || last.Rule != c.rule || last.Event != "AL1000W" || last.RequestID != r.RequestID {
				t.Fatalf("entry %+v", last)
			}
		})
	}
}

func TestNothingLeavesWithoutItsAuditEntry(t *testing.T) {
	k, tr, au, _ := newKernel(t, permitAll)
	au.fail = true
	op := &fakeOp{tr: tr}
	res, err := k.Do(context.Background(), request(op, share.Run))
	if res != nil || refusal.As(err).Rule != "audit.unavailable" {
		t.Fatalf("got %v, %v: an answer whose entry is not durable must not leave", res, err)
	}
}

func TestPlanAndDescribeRunNothing(t *testing.T) {
	for _, mode := range []share.Mode{share.Plan, share.Describe} {
		k, tr, au, _ := newKernel(t, permitAll)
		op := &fakeOp{tr: tr, cost: 0.5}
		res, err := k.Do(context.Background(), request(op, mode))
		if err != nil || res.Value != "preview" || op.runs.Load() != 0 {
			t.Fatalf("%v: %v %v, ran %d times", mode, res, err, op.runs.Load())
		}
		audited := len(au.entries)
		if (mode == share.Plan && audited != 1) || (mode == share.Describe && audited != 0) {
			t.Fatalf("%v: %d entries; a plan is audited, a Describe only when refused", mode, audited)
		}
		if strings.Contains(tr.String(), "charge") {
			t.Fatalf("%v charged: %s", mode, tr.String())
		}
	}
	k, tr, au, _ := newKernel(t, `forbid (principal, action, resource);`)
	op := &fakeOp{tr: tr, checks: []policy.Request{check}}
	if _, err := k.Do(context.Background(), request(op, share.Describe)); err == nil || len(au.entries) != 1 || au.entries[0].Event != "AL1002W" {
		t.Fatalf("a refused Describe: %v, %+v", err, au.entries)
	}
}

func TestCacheableAnswersOnceAndChargesOnce(t *testing.T) {
	k, tr, au, led := newKernel(t, permitAll)
	op := &fakeOp{tr: tr, cost: 0.1, cacheable: true, gate: make(chan struct{})}
	const n = 8
	var wg sync.WaitGroup
	answers := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := k.Do(context.Background(), request(op, share.Run))
			if err != nil {
				t.Error(err)
				return
			}
			answers[i] = res.Value.(string)
		}()
	}
	time.Sleep(100 * time.Millisecond) // let them all reach the flight
	close(op.gate)
	wg.Wait()
	if op.runs.Load() != 1 || led.spent[store.BudgetKey{Agreement: "a"}] != 0.1 {
		t.Fatalf("%d runs, spent %v: identical requests in flight run and pay once", op.runs.Load(), led.spent)
	}
	concurrent := 0
	for _, a := range answers {
		if strings.HasSuffix(a, "(concurrent)") {
			concurrent++
		} else if a != "answer 1" {
			t.Fatalf("answer %q", a)
		}
	}
	if concurrent != n-1 {
		t.Fatalf("%d followers, want %d", concurrent, n-1)
	}
	// A repeat is answered from the stored answer, free.
	res, err := k.Do(context.Background(), request(op, share.Run))
	if err != nil || res.Value != "answer 1 (stored)" || op.runs.Load() != 1 {
		t.Fatalf("repeat: %v %v", res, err)
	}
	reserves, decisions := 0, 0
	for _, e := range au.entries {
		if e.Decision == audit.DecisionReserve {
			reserves++
		} else {
			decisions++
		}
	}
	if reserves != 1 || decisions != n+1 {
		t.Fatalf("%d reserve and %d deciding entries, want 1 and %d", reserves, decisions, n+1)
	}
}

func TestEdgeRefusalIsAudited(t *testing.T) {
	k, _, au, _ := newKernel(t, permitAll)
	c := share.Caller{Channel: "http", TokenID: "token:abc"}
	err := k.Refuse(context.Background(), Request{Caller: c, Op: Edge(share.OpAuthenticate)}, refusal.New(refusal.Unauthenticated, "authn.invalid", "unknown API token"))
	r := refusal.As(err)
	if r.Rule != "authn.invalid" || len(au.entries) != 1 || au.entries[0].Event != "AL0100W" || au.entries[0].Credential != "token:abc" || au.entries[0].RequestID != r.RequestID {
		t.Fatalf("%+v, %+v", r, au.entries)
	}
}
