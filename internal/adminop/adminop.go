// Package adminop holds the kernel operations on a node's governance state
// rather than on data: reading the audit log (decoded entries, raw
// leaves), reading metrics, and revoking an agreement. Each is a
// govern.Op, so each is decided by Cedar and audited like a query.
package adminop

import (
	"context"
	"encoding/base64"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Leaves is the part of the store audit reads use.
type Leaves interface {
	Size(ctx context.Context) (uint64, error)
	Leaves(ctx context.Context, start, end uint64) ([][]byte, error)
}

// MaxPage is the most entries one audit read returns.
const MaxPage = 10000

// scanPage is how many leaves a decoded read fetches from the store at once.
const scanPage = 1000

// Scope is the datasets whose audit entries a principal may read (Cedar
// action audit_read, asked per dataset), and whether that is all of them.
func Scope(snap *govern.Snapshot, id share.Identity, now time.Time) (map[string]bool, bool) {
	allowed := map[string]bool{}
	for name, m := range snap.WS.Datasets {
		d := snap.Policy.Decide(policy.Request{
			Principal: principal(id), Action: policy.ActionAuditRead,
			Resource: resource(m), Context: policy.Context{ClientRegion: id.Region, Now: now},
		})
		if d.Allowed {
			allowed[name] = true
		}
	}
	return allowed, len(allowed) == len(snap.WS.Datasets) && len(allowed) > 0
}

func principal(id share.Identity) policy.Principal {
	return policy.Principal{Name: id.Principal, Org: id.Org, Region: id.Region, Country: id.Country, Clearance: id.Clearance, Roles: id.Roles, Attributes: id.Attributes}
}

func resource(m *workspace.Manifest) policy.Resource {
	return policy.Resource{Name: m.Name, Owner: m.Owner, Tier: m.Tier, Region: m.Region}
}

// Entry is one decoded audit entry with its index.
type Entry struct {
	Index uint64      `json:"index"`
	Entry audit.Entry `json:"entry"`
}

// EntriesPage is a decoded audit read.
type EntriesPage struct {
	Size    uint64  `json:"size"`
	Entries []Entry `json:"entries"`
	// Unreadable are indices of leaves that do not decode (tamper or
	// corruption evidence), for readers of the whole log.
	Unreadable []uint64 `json:"unreadable,omitempty"`
}

// ReadEntries is the operation behind GET /v1/audit: newest first, the
// entries matching f that concern only datasets whose audit the caller may
// read (all entries for a reader of the whole log).
func ReadEntries(st Leaves, f audit.Filter, limit uint64) govern.Op {
	return &readEntries{st: st, f: f, limit: min(limit, MaxPage)}
}

type readEntries struct {
	st    Leaves
	f     audit.Filter
	limit uint64
}

// Not Light: a filtered read may scan the whole log, so admission counts it.
func (o *readEntries) Kind() share.OpKind { return share.OpAuditRead }

func (o *readEntries) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	// The scope filters rather than gates: each dataset's entries are
	// visible exactly when Cedar allows audit_read on it.
	scope, all := Scope(c.Snap, c.Caller.Identity, c.Now)
	if len(scope) == 0 {
		return nil, refusal.New(refusal.Forbidden, "policy", "reading the audit log is not permitted by policy")
	}
	size, err := o.st.Size(ctx)
	if err != nil {
		return nil, refusal.StoreUnavailable(err)
	}
	page := &EntriesPage{Size: size, Entries: []Entry{}}
	for end := size; end > 0 && uint64(len(page.Entries)) < o.limit; {
		start := end - min(end, scanPage)
		raw, err := o.st.Leaves(ctx, start, end)
		if err != nil {
			return nil, refusal.StoreUnavailable(err)
		}
		for i := len(raw) - 1; i >= 0 && uint64(len(page.Entries)) < o.limit; i-- {
			e, err := audit.ParseEntry(raw[i])
			if err != nil {
				if all {
					page.Unreadable = append(page.Unreadable, start+uint64(i))
				}
				continue
			}
			if o.f.Match(e) && visible(e, scope, all) {
				page.Entries = append(page.Entries, Entry{start + uint64(i), e})
			}
		}
		end = start
	}
	c.Entry.RowsReturned = int64(len(page.Entries))
	return govern.Answer(page), nil
}

func visible(e audit.Entry, scope map[string]bool, all bool) bool {
	if all {
		return true
	}
	if len(e.Datasets) == 0 {
		return false
	}
	for _, d := range e.Datasets {
		if !scope[d] {
			return false
		}
	}
	return true
}

// RawPage is a raw audit read: leaves as stored, base64.
type RawPage struct {
	Start   uint64   `json:"start"`
	Entries []string `json:"entries"`
}

// ReadRaw is the operation behind GET /v1/audit/entries: leaves
// [start, end) as stored, for principals who may read the whole log
// (monitors re-hash them against signed checkpoints). end 0 is the log's
// size.
func ReadRaw(st Leaves, start, end uint64) govern.Op {
	return &readRaw{st: st, start: start, end: end}
}

type readRaw struct {
	st         Leaves
	start, end uint64
}

func (o *readRaw) Kind() share.OpKind { return share.OpAuditRead }
func (o *readRaw) Light()             {}

func (o *readRaw) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	if _, all := Scope(c.Snap, c.Caller.Identity, c.Now); !all {
		return nil, refusal.New(refusal.Forbidden, "policy", "raw audit entries are served only to principals who may read the whole log")
	}
	size, err := o.st.Size(ctx)
	if err != nil {
		return nil, refusal.StoreUnavailable(err)
	}
	end := o.end
	if end == 0 {
		end = size
	}
	end = min(end, size, o.start+MaxPage)
	if o.start > end {
		return nil, refusal.New(refusal.BadSQL, "http.parameter", "start is past the end of the log")
	}
	raw, err := o.st.Leaves(ctx, o.start, end)
	if err != nil {
		return nil, refusal.StoreUnavailable(err)
	}
	enc := make([]string, len(raw))
	for i, b := range raw {
		enc[i] = base64.StdEncoding.EncodeToString(b)
	}
	c.Entry.RowsReturned = int64(len(enc))
	return govern.Answer(&RawPage{Start: o.start, Entries: enc}), nil
}

// ReadMetrics is the operation behind GET /metrics: allowed to principals
// who may read the whole audit log (refusal counts by rule describe what
// partners ask). Its value is nil; the channel serves the registry.
func ReadMetrics() govern.Op { return readMetrics{} }

type readMetrics struct{}

func (readMetrics) Kind() share.OpKind { return share.OpMetricsRead }
func (readMetrics) Light()             {}

func (readMetrics) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	if _, all := Scope(c.Snap, c.Caller.Identity, c.Now); !all {
		return nil, refusal.New(refusal.Forbidden, "policy", "metrics are served only to principals who may read the whole audit log")
	}
	return govern.Answer(nil), nil
}

// Revoked is the answer to a revocation.
type Revoked struct {
	Agreement string `json:"revoked"`
}

// Revoke is the operation that revokes an agreement at once (effective on
// the next request of every replica sharing the store). Over the network
// Cedar decides (action admin on each of the agreement's datasets); local
// is the CLI on the node itself, whose operator holds the node's keys and
// workspace already, so policy does not gate it, and it is audited the same.
func Revoke(st Revocations, agreement, reason string, local bool) govern.Op {
	return &revoke{st: st, agreement: agreement, reason: reason, local: local}
}

// Revocations is the part of the store revocation uses.
type Revocations interface {
	RevokeAgreement(ctx context.Context, r store.Revocation) error
}

type revoke struct {
	st                Revocations
	agreement, reason string
	local             bool
}

func (o *revoke) Kind() share.OpKind { return share.OpRevoke }
func (o *revoke) Light()             {}

type revokePrepared struct {
	o *revoke
	a *workspace.Agreement
}

func (o *revoke) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	// One refusal for an agreement that does not exist and one the caller
	// may not administer, naming no dataset: otherwise any principal could
	// enumerate agreements and what they cover. Policy is therefore asked
	// here (action admin on every covered dataset) rather than through
	// Checks, whose refusal names the dataset.
	refused := refusal.New(refusal.Forbidden, "agreement.revoke", "agreement %q does not exist or this principal may not revoke it", o.agreement)
	a, ok := c.Snap.WS.Agreements[o.agreement]
	if !ok {
		return nil, refused
	}
	c.Entry.Agreement, c.Entry.Datasets, c.Entry.Message = a.ID, a.Datasets, o.reason
	if !o.local {
		covered := 0
		for _, name := range a.Datasets {
			m := c.Snap.WS.Datasets[name]
			if m == nil {
				continue
			}
			covered++
			d := c.Snap.Policy.Decide(policy.Request{
				Principal: principal(c.Caller.Identity), Action: policy.ActionAdmin, Resource: resource(m),
				Context: policy.Context{Agreement: a.ID, ClientRegion: c.Caller.Region, Now: c.Now},
			})
			if !d.Allowed {
				return nil, refused
			}
		}
		if covered == 0 {
			return nil, refused
		}
	}
	return &revokePrepared{o: o, a: a}, nil
}

func (p *revokePrepared) Checks() []policy.Request { return nil } // decided in Prepare

// Mutates: the kernel logs the intent before the revocation is stored.
func (p *revokePrepared) Mutates() {}

func (p *revokePrepared) Preview(context.Context, *govern.Call) (any, error) {
	return &Revoked{Agreement: p.a.ID}, nil
}

func (p *revokePrepared) Run(ctx context.Context, c *govern.Call) (govern.Unreleased, error) {
	err := p.o.st.RevokeAgreement(ctx, store.Revocation{Agreement: p.a.ID, RevokedAt: c.Now, By: c.Caller.Principal, Reason: p.o.reason})
	if err != nil {
		return nil, refusal.StoreUnavailable(err)
	}
	return govern.Answer(&Revoked{Agreement: p.a.ID}).(govern.Unreleased), nil
}
