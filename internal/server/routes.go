package server

import (
	"context"
	"encoding/base64"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/httpapi"
	"github.com/airlock-dev/airlock/internal/identity"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func policyPrincipal(id identity.Identity) policy.Principal {
	return policy.Principal{Name: id.Principal, Org: id.Org, Region: id.Region, Country: id.Country, Clearance: id.Clearance, Roles: id.Roles, Attributes: id.Attributes}
}

// auditScope is the datasets whose audit entries the principal may read
// (Cedar action audit_read), and whether that is all of them.
func (n *Node) auditScope(id identity.Identity) (map[string]bool, bool) {
	snap := n.Gateway.Snapshot()
	allowed := map[string]bool{}
	for name, m := range snap.WS.Datasets {
		d := snap.Policy.Decide(policy.Request{
			Principal: policyPrincipal(id), Action: "audit_read",
			Resource: policy.Resource{Name: name, Owner: m.Owner, Tier: m.Tier, Region: m.Region},
			Context:  policy.Context{ClientRegion: id.Region, Now: n.opts.Now()},
		})
		if d.Allowed {
			allowed[name] = true
		}
	}
	return allowed, len(allowed) == len(snap.WS.Datasets) && len(allowed) > 0
}

func queryUint(r *http.Request, name string, def uint64) (uint64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, refusal.New(refusal.BadSQL, "http.parameter", "%s must be a non-negative integer", name)
	}
	return v, nil
}

const maxPage = 10000

func (n *Node) auditRoutes(mux *http.ServeMux, wrap func(httpapi.Handler) http.Handler) {
	// Decoded entries for stewards (their datasets) and auditors (all).
	mux.Handle("GET /v1/audit", wrap(func(w http.ResponseWriter, r *http.Request, id identity.Identity) error {
		scope, all := n.auditScope(id)
		if len(scope) == 0 {
			return refusal.New(refusal.Forbidden, "policy", "reading the audit log is not permitted by policy")
		}
		ctx := r.Context()
		size, err := n.Store.Size(ctx)
		if err != nil {
			return err
		}
		limit, err := queryUint(r, "limit", 100)
		if err != nil {
			return err
		}
		limit = min(limit, maxPage)
		f := audit.Filter{Principal: r.URL.Query().Get("principal"), Dataset: r.URL.Query().Get("dataset"), Decision: r.URL.Query().Get("decision")}
		if s := r.URL.Query().Get("since"); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return refusal.New(refusal.BadSQL, "http.parameter", "since must be RFC 3339")
			}
			f.From = t
		}
		// Newest first, scanning back in pages until limit matches.
		type item struct {
			Index uint64      `json:"index"`
			Entry audit.Entry `json:"entry"`
		}
		var out []item
		for end := size; end > 0 && uint64(len(out)) < limit; {
			start := end - min(end, 1000)
			raw, err := n.Store.Leaves(ctx, start, end)
			if err != nil {
				return err
			}
			for i := len(raw) - 1; i >= 0 && uint64(len(out)) < limit; i-- {
				e, err := audit.ParseEntry(raw[i])
				if err != nil || !f.Match(e) || !visible(e, scope, all) {
					continue
				}
				out = append(out, item{start + uint64(i), e})
			}
			end = start
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"size": size, "entries": out})
		return nil
	}))
	// The transparency-log API: checkpoint and proofs for any principal,
	// raw entries for whoever may read all of the log.
	mux.Handle("GET /v1/audit/checkpoint", wrap(func(w http.ResponseWriter, r *http.Request, _ identity.Identity) error {
		signed, err := n.Audit.Checkpoint(r.Context())
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(signed)
		return nil
	}))
	mux.Handle("GET /v1/audit/entries", wrap(func(w http.ResponseWriter, r *http.Request, id identity.Identity) error {
		if _, all := n.auditScope(id); !all {
			return refusal.New(refusal.Forbidden, "policy", "raw audit entries are served only to principals who may read the whole log")
		}
		start, err := queryUint(r, "start", 0)
		if err != nil {
			return err
		}
		size, err := n.Store.Size(r.Context())
		if err != nil {
			return err
		}
		end, err := queryUint(r, "end", size)
		if err != nil {
			return err
		}
		end = min(end, size, start+maxPage)
		if start > end {
			return refusal.New(refusal.BadSQL, "http.parameter", "start is past the end of the log")
		}
		raw, err := n.Store.Leaves(r.Context(), start, end)
		if err != nil {
			return err
		}
		enc := make([]string, len(raw))
		for i, b := range raw {
			enc[i] = base64.StdEncoding.EncodeToString(b)
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"start": start, "entries": enc})
		return nil
	}))
	mux.Handle("GET /v1/audit/proof/inclusion", wrap(func(w http.ResponseWriter, r *http.Request, _ identity.Identity) error {
		if err := n.Audit.Sync(r.Context()); err != nil {
			return err
		}
		idx, err := queryUint(r, "index", 0)
		if err != nil {
			return err
		}
		size, err := queryUint(r, "size", n.Audit.Tree().Size())
		if err != nil {
			return err
		}
		p, err := n.Audit.Tree().InclusionProof(idx, size)
		if err != nil {
			return refusal.New(refusal.BadSQL, "audit.range", "index %d is not in a tree of size %d", idx, size)
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"index": idx, "size": size, "proof": encodeHashes(p)})
		return nil
	}))
	mux.Handle("GET /v1/audit/proof/consistency", wrap(func(w http.ResponseWriter, r *http.Request, _ identity.Identity) error {
		if err := n.Audit.Sync(r.Context()); err != nil {
			return err
		}
		from, err := queryUint(r, "from", 0)
		if err != nil {
			return err
		}
		to, err := queryUint(r, "to", n.Audit.Tree().Size())
		if err != nil {
			return err
		}
		p, err := n.Audit.Tree().ConsistencyProof(from, to)
		if err != nil {
			return refusal.New(refusal.BadSQL, "audit.range", "no consistency proof from %d to %d", from, to)
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "proof": encodeHashes(p)})
		return nil
	}))
}

func encodeHashes(p []audit.Hash) []string {
	out := make([]string, len(p))
	for i := range p {
		out[i] = base64.StdEncoding.EncodeToString(p[i][:])
	}
	return out
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

func (n *Node) adminRoutes(mux *http.ServeMux, wrap func(httpapi.Handler) http.Handler) {
	mux.Handle("POST /v1/agreements/{id}/revoke", wrap(func(w http.ResponseWriter, r *http.Request, id identity.Identity) error {
		snap := n.Gateway.Snapshot()
		agID := r.PathValue("id")
		a, ok := snap.WS.Agreements[agID]
		if !ok {
			return refusal.New(refusal.NotFound, "agreement.unknown", "agreement %q does not exist", agID)
		}
		if !isOwnerSteward(id, a) {
			return refusal.New(refusal.Forbidden, "agreement.revoke", "only a steward of %s may revoke agreement %s", a.OwnerOrg, a.ID)
		}
		reason := r.URL.Query().Get("reason")
		if err := Revoke(r.Context(), n.Store, n.Audit, a, id.Principal, reason, n.opts.Now(), "http"); err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"revoked": a.ID})
		return nil
	}))
	mux.Handle("GET /v1/whoami", wrap(func(w http.ResponseWriter, r *http.Request, id identity.Identity) error {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"principal": id.Principal, "org": id.Org, "roles": id.Roles, "region": id.Region, "method": id.Method})
		return nil
	}))
}

func isOwnerSteward(id identity.Identity, a *workspace.Agreement) bool {
	if id.Org != a.OwnerOrg {
		return false
	}
	for _, r := range id.Roles {
		if r == "steward" {
			return true
		}
	}
	return false
}

// Revoke records an agreement's revocation in the state store (effective on
// the next request of every replica) and audits it.
func Revoke(ctx context.Context, st store.Store, lg *audit.Log, a *workspace.Agreement, by, reason string, now time.Time, channel string) error {
	if err := st.RevokeAgreement(ctx, store.Revocation{Agreement: a.ID, RevokedAt: now.UTC(), By: by, Reason: reason}); err != nil {
		return err
	}
	_, err := lg.Append(ctx, audit.Entry{Time: now.UTC(), Principal: by, Agreement: a.ID, Channel: channel, Datasets: a.Datasets,
		QueryKind: "revoke", Decision: "allow", Rule: "agreement.revoke", Message: reason})
	return err
}
