package sqlop

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// CatalogEntry is one dataset as a principal may see it: only the columns
// its agreement exposes, with the rule that governs it.
type CatalogEntry struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Owner       string          `json:"owner"`
	Access      string          `json:"access"`
	Agreement   string          `json:"agreement,omitempty"`
	Columns     []CatalogColumn `json:"columns"`
	MinUnits    int             `json:"min_units,omitempty"`
}

// CatalogColumn is one visible column and what the principal may do with it.
type CatalogColumn struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Class string `json:"class"`
	Role  string `json:"role"` // column, masked, dimension, aggregate, join
}

// CatalogList is the operation that lists the datasets a caller may query.
func (s *Service) CatalogList() govern.Op { return catalogOp{s} }

type catalogOp struct{ svc *Service }

func (catalogOp) Kind() share.OpKind { return share.OpCatalogList }
func (catalogOp) Light()             {}

func (o catalogOp) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	entries, err := o.svc.Catalog(ctx, c.Snap.WS, c.Caller.Identity, c.Now)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		c.Entry.Datasets = append(c.Entry.Datasets, e.Name)
	}
	return govern.Answer(entries), nil
}

// Catalog lists the datasets the principal may query now: its org's own as
// a steward, and those covered by an agreement in force for it (valid
// now, not revoked, permitting its region). Nothing else of the workspace
// is revealed.
func (s *Service) Catalog(ctx context.Context, ws *workspace.Workspace, id share.Identity, now time.Time) ([]CatalogEntry, error) {
	usable := map[string]bool{}
	for aid, a := range ws.Agreements {
		if a.RecipientOrg != id.Org || !a.InForce(now) || (len(a.Regions) > 0 && !slices.Contains(a.Regions, id.Region)) {
			continue
		}
		_, err := s.Store.AgreementRevocation(ctx, aid)
		switch {
		case errors.Is(err, store.ErrNotFound):
			usable[aid] = true
		case err != nil:
			return nil, refusal.StoreUnavailable(err)
		}
	}
	return catalogOf(ws, id, usable), nil
}

func catalogOf(ws *workspace.Workspace, id share.Identity, usable map[string]bool) []CatalogEntry {
	var out []CatalogEntry
	for _, n := range slices.Sorted(maps.Keys(ws.Datasets)) {
		m := ws.Datasets[n]
		if isSteward(id, m) {
			out = append(out, entry(m, query.AccessOwner, "", workspace.Rule{}))
			continue
		}
		var ids []string
		for aid, a := range ws.Agreements {
			if usable[aid] && slices.Contains(a.Datasets, n) {
				ids = append(ids, aid)
			}
		}
		sort.Strings(ids)
		if len(ids) == 0 {
			continue
		}
		a := ws.Agreements[ids[0]]
		r := a.Rules[n]
		out = append(out, entry(m, accessOf(r.Kind), a.ID, r))
	}
	return out
}

func accessOf(k workspace.RuleKind) query.Access {
	switch k {
	case workspace.RuleList:
		return query.AccessList
	case workspace.RuleDP:
		return query.AccessDP
	}
	return query.AccessAggregation
}

func entry(m *workspace.Manifest, acc query.Access, agreement string, r workspace.Rule) CatalogEntry {
	e := CatalogEntry{Name: m.Name, Description: m.Description, Owner: m.Owner, Access: string(acc), Agreement: agreement, MinUnits: r.MinUnits}
	for _, c := range m.Columns {
		role := "column"
		switch acc {
		case query.AccessList:
			if len(r.Columns) > 0 && !slices.Contains(r.Columns, c.Name) {
				continue
			}
			if mk, ok := r.Masks[c.Name]; ok && mk != workspace.MaskNone {
				role = "masked:" + string(mk)
			}
		case query.AccessAggregation, query.AccessDP:
			switch {
			case slices.Contains(r.Dimensions, c.Name):
				role = "dimension"
			case len(r.Aggregates[c.Name]) > 0:
				role = "aggregate"
			case slices.Contains(r.JoinColumns, c.Name):
				role = "join"
			default:
				continue
			}
		}
		e.Columns = append(e.Columns, CatalogColumn{Name: c.Name, Type: c.Type, Class: string(c.Class), Role: role})
	}
	return e
}
