package sqlop

import (
	"context"
	"errors"
	"github.com/airlock-dev/airlock/internal/differencing"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// isSteward reports whether the principal administers datasets of its own
// org: stewards read their own data as stored, without an agreement.
func isSteward(id share.Identity, m *workspace.Manifest) bool {
	return id.Org == m.Owner && id.HasRole("steward")
}

// resolve picks the agreement the request acts under and turns it into one
// grant per dataset. A request acts under exactly one agreement, or as the
// owner's steward.
func (g *Service) resolve(ctx context.Context, c *govern.Call, datasets []string) (*workspace.Agreement, map[string]*query.Grant, error) {
	ws := c.Snap.WS
	id := c.Caller.Identity
	allOwned := true
	for _, d := range datasets {
		if !isSteward(id, ws.Datasets[d]) {
			allOwned = false
		}
	}
	if allOwned && c.Agreement == "" {
		grants := map[string]*query.Grant{}
		for _, d := range datasets {
			_, table := g.Route(ws.Datasets[d])
			grants[d] = &query.Grant{Access: query.AccessOwner, Table: table}
		}
		return nil, grants, nil
	}
	ag, err := g.chooseAgreement(ctx, c, datasets)
	if err != nil {
		return nil, nil, err
	}
	grants := map[string]*query.Grant{}
	for _, d := range datasets {
		m := ws.Datasets[d]
		rule := ag.Rules[d]
		_, table := g.Route(m)
		gr := &query.Grant{Rule: rule, Table: table, HMACKey: g.maskKey(ag.ID)}
		switch rule.Kind {
		case workspace.RuleList:
			gr.Access = query.AccessList
		case workspace.RuleAggregation:
			gr.Access = query.AccessAggregation
			if g.History != nil && (rule.Differencing == nil || !rule.Differencing.Off) {
				gr.SketchBuckets = differencing.Buckets(rule.MinUnits)
			}
		case workspace.RuleDP:
			gr.Access = query.AccessDP
		default:
			return nil, nil, refusal.New(refusal.Forbidden, "agreement.rule", "agreement %s has no usable rule for %s", ag.ID, d)
		}
		if rule.RowFilter != "" {
			f, err := rowFilter(rule.RowFilter, m, id)
			if err != nil {
				return nil, nil, err
			}
			gr.RowFilter = f
		}
		grants[d] = gr
	}
	return ag, grants, nil
}

// chooseAgreement finds the one agreement in force that lets this principal
// act on these datasets for this purpose, and explains precisely why none
// does when none does.
func (g *Service) chooseAgreement(ctx context.Context, c *govern.Call, datasets []string) (*workspace.Agreement, error) {
	ws := c.Snap.WS
	id := c.Caller.Identity
	action := policy.ActionQuery
	if c.Mode == share.Plan {
		action = policy.ActionPlan
	}
	var candidates []*workspace.Agreement
	if c.Agreement != "" {
		a, ok := ws.Agreements[c.Agreement]
		if !ok || a.RecipientOrg != id.Org {
			return nil, refusal.New(refusal.Forbidden, "agreement.unknown", "agreement %q does not exist or is not addressed to org %s", c.Agreement, id.Org)
		}
		candidates = []*workspace.Agreement{a}
	} else {
		for _, a := range ws.Agreements {
			if a.RecipientOrg == id.Org && coversAll(a, datasets) {
				candidates = append(candidates, a)
			}
		}
		sort.Slice(candidates, func(i, j int) bool { return candidates[i].ID < candidates[j].ID })
	}
	if len(candidates) == 0 {
		return nil, refusal.New(refusal.Forbidden, "agreement.none", "no data-sharing agreement gives org %s access to %s", id.Org, strings.Join(datasets, ", "))
	}
	// Check every candidate; keep the usable ones and the first reason
	// each unusable one fails on.
	var usable []*workspace.Agreement
	var firstErr error
	for _, a := range candidates {
		err := g.checkAgreement(ctx, a, c, action, datasets)
		if err == nil {
			usable = append(usable, a)
		} else if firstErr == nil || specificity(err) > specificity(firstErr) {
			firstErr = err
		}
	}
	switch len(usable) {
	case 0:
		return nil, firstErr
	case 1:
		return usable[0], nil
	}
	var ids []string
	for _, a := range usable {
		ids = append(ids, a.ID)
	}
	return nil, refusal.New(refusal.Forbidden, "agreement.ambiguous", "several agreements apply (%s); name one with the agreement parameter", strings.Join(ids, ", "))
}

// specificity ranks refusal reasons so the most informative is reported
// when several agreements fail.
func specificity(err error) int {
	r := refusal.As(err)
	switch r.Rule {
	case "agreement.revoked":
		return 6
	case "agreement.purpose":
		return 5
	case "agreement.region":
		return 4
	case "agreement.expired", "agreement.not_yet_valid":
		return 3
	case "agreement.action":
		return 2
	}
	return 1
}

func coversAll(a *workspace.Agreement, datasets []string) bool {
	for _, d := range datasets {
		if !slices.Contains(a.Datasets, d) {
			return false
		}
	}
	return true
}

func (g *Service) checkAgreement(ctx context.Context, a *workspace.Agreement, c *govern.Call, action string, datasets []string) error {
	now := c.Now
	if !coversAll(a, datasets) {
		return refusal.New(refusal.Forbidden, "agreement.dataset", "agreement %s does not cover %s", a.ID, strings.Join(datasets, ", "))
	}
	rev, err := g.Store.AgreementRevocation(ctx, a.ID)
	switch {
	case err == nil:
		return refusal.New(refusal.Forbidden, "agreement.revoked", "agreement %s was revoked at %s", a.ID, rev.RevokedAt.UTC().Format(time.RFC3339))
	case !errors.Is(err, store.ErrNotFound):
		return refusal.StoreUnavailable(err)
	}
	if now.Before(a.ValidFrom) {
		return refusal.New(refusal.Forbidden, "agreement.not_yet_valid", "agreement %s is valid from %s", a.ID, a.ValidFrom.UTC().Format(time.RFC3339))
	}
	if !now.Before(a.ValidUntil) {
		return refusal.New(refusal.Forbidden, "agreement.expired", "agreement %s expired at %s", a.ID, a.ValidUntil.UTC().Format(time.RFC3339))
	}
	if c.Purpose == "" {
		return refusal.New(refusal.Forbidden, "agreement.purpose", "a purpose is required; agreement %s permits: %s", a.ID, strings.Join(a.Purposes, ", "))
	}
	if !slices.Contains(a.Purposes, c.Purpose) {
		return refusal.New(refusal.Forbidden, "agreement.purpose", "purpose %q is not permitted by agreement %s (permitted: %s)", c.Purpose, a.ID, strings.Join(a.Purposes, ", "))
	}
	if len(a.Regions) > 0 && !slices.Contains(a.Regions, c.Caller.Region) {
		return refusal.New(refusal.Forbidden, "agreement.region", "agreement %s does not permit access from region %q", a.ID, c.Caller.Region)
	}
	if !slices.Contains(a.Actions, action) {
		return refusal.New(refusal.Forbidden, "agreement.action", "agreement %s does not permit action %s", a.ID, action)
	}
	return nil
}

var placeholder = regexp.MustCompile(`\{principal\.([a-z_]+)\}`)

// rowFilter binds a rule's row filter to the principal (placeholders become
// quoted literals) and parses it as a predicate over the dataset.
func rowFilter(text string, m *workspace.Manifest, id share.Identity) (query.Expr, error) {
	missing := ""
	bound := placeholder.ReplaceAllStringFunc(text, func(ph string) string {
		attr := placeholder.FindStringSubmatch(ph)[1]
		v, ok := principalAttr(id, attr)
		if !ok {
			missing = attr
		}
		return query.QuoteString(v)
	})
	if missing != "" {
		// Fail closed: a filter that cannot be bound admits nothing.
		return nil, refusal.New(refusal.Forbidden, "row_filter.attribute", "the row filter needs principal attribute %q, which this principal lacks", missing)
	}
	where, err := query.ParsePredicate(bound, m)
	if err != nil {
		return nil, refusal.New(refusal.Internal, "row_filter.invalid", "the agreement's row filter for %s is invalid", m.Name)
	}
	return where, nil
}

func principalAttr(id share.Identity, attr string) (string, bool) {
	switch attr {
	case "name":
		return id.Principal, true
	case "org":
		return id.Org, id.Org != ""
	case "region":
		return id.Region, id.Region != ""
	case "country":
		return id.Country, id.Country != ""
	case "clearance":
		return id.Clearance, id.Clearance != ""
	}
	v, ok := id.Attributes[attr]
	return v, ok && v != ""
}

// policyRequest builds the Cedar request for one dataset.
func policyRequest(c *govern.Call, action string, m *workspace.Manifest, ag *workspace.Agreement, plan *query.Plan, kind string) policy.Request {
	id := c.Caller.Identity
	now := c.Now
	return policy.Request{
		Principal: policy.PrincipalOf(id),
		Action:    action,
		Resource:  policy.Resource{Name: m.Name, Owner: m.Owner, Tier: m.Tier, Region: m.Region},
		Context: policy.Context{
			Purpose: c.Purpose, Agreement: agID(ag), ClientRegion: id.Region, QueryKind: kind, Now: now,
			Columns: plan.Touched, Classes: plan.Classes,
			Channel: c.Caller.Channel, Peer: c.Caller.Peer, DestinationRegion: id.Region, PeerRegion: c.Caller.PeerRegion, Egress: egressOf(ag),
		},
	}
}

// egressOf flattens an agreement's egress entries for policy.
func egressOf(ag *workspace.Agreement) []policy.Egress {
	if ag == nil {
		return nil
	}
	var out []policy.Egress
	for _, e := range ag.Egress {
		for _, to := range e.To {
			for _, o := range e.Outputs {
				out = append(out, policy.Egress{Region: to, Output: o})
			}
		}
	}
	return out
}
