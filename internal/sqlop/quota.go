package sqlop

import (
	"context"
	"errors"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// RowQuota reports a list rule's quota: the rows an agreement may release
// per period, over all its answers. A per-answer cap would let LIMIT and
// OFFSET page through the whole table.
type RowQuota struct {
	Rows    int       `json:"rows_per_period"`
	Used    int64     `json:"used"`
	Left    int64     `json:"left"`
	Refresh time.Time `json:"refresh"`
}

// rowQuotaKey is the quota's entry in the budget ledger: the same atomic
// conditional update that keeps DP budgets from being overspent, with the
// row count in the ledger's rho column.
func rowQuotaKey(ag *workspace.Agreement, now time.Time) store.BudgetKey {
	return store.BudgetKey{Agreement: ag.ID + "#rows", PeriodStart: now.UTC().Truncate(quotaPeriod(ag))}
}

// quotaPeriod is the agreement's budget period, or the default.
func quotaPeriod(ag *workspace.Agreement) time.Duration {
	if ag.Budget != nil {
		return dp.Period(ag.Budget.Period)
	}
	return dp.DefaultPeriod
}

// quotaState reads what is left without charging (dry runs, empty answers).
func (g *Service) quotaState(ctx context.Context, ag *workspace.Agreement, quota int, now time.Time) (*RowQuota, error) {
	st, err := g.Store.Budget(ctx, rowQuotaKey(ag, now))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, refusal.StoreUnavailable(err)
	}
	return quotaOf(ag, quota, st, now), nil
}

func quotaOf(ag *workspace.Agreement, quota int, st store.BudgetState, now time.Time) *RowQuota {
	used := int64(st.Rho)
	return &RowQuota{Rows: quota, Used: used, Left: max(0, int64(quota)-used), Refresh: rowQuotaKey(ag, now).PeriodStart.Add(quotaPeriod(ag))}
}

// rowCharge charges n released rows to the agreement's quota, atomically
// and before they are released; an answer that does not fit is refused
// whole, never cut.
func (g *Service) rowCharge(ag *workspace.Agreement, quota, n int, now time.Time) govern.Charge {
	key := rowQuotaKey(ag, now)
	refresh := key.PeriodStart.Add(quotaPeriod(ag))
	return govern.Charge{
		Charge:   store.Charge{Key: key, Rho: float64(n), LimitRho: float64(quota), LimitDelta: 1},
		Announce: func(e *audit.Entry) { e.QuotaRows = int64(n) },
		Exhausted: func(st store.BudgetState) *refusal.Error {
			left := max(0, int64(quota)-int64(st.Rho))
			e := refusal.New(refusal.Limit, "list.quota", "agreement %s may release %d rows per period; %d are left and this answer has more; narrow the query or wait until %s",
				ag.ID, quota, left, refresh.Format(time.RFC3339))
			e.Details = map[string]any{"rows_left": left, "refresh": refresh}
			return e
		},
	}
}

// quotaSpent is the refusal of any list query once the period's rows are
// all released.
func quotaSpent(ag *workspace.Agreement, quota int, refresh time.Time) *refusal.Error {
	e := refusal.New(refusal.Limit, "list.quota", "agreement %s may release %d rows per period and has none left; wait until %s", ag.ID, quota, refresh.Format(time.RFC3339))
	e.Details = map[string]any{"rows_left": 0, "refresh": refresh}
	return e
}

// quotaTooSmall is the refusal of an answer with more rows than the quota
// has left: the answer is withheld and counts as one row (what it
// revealed, that more rows match than are left, is paid for).
func quotaTooSmall(ag *workspace.Agreement, quota int, left int64, refresh time.Time) *refusal.Error {
	e := refusal.New(refusal.Limit, "list.quota", "agreement %s may release %d rows per period; %d are left and this answer has more; it is withheld and counts as one row; narrow the query or wait until %s",
		ag.ID, quota, left, refresh.Format(time.RFC3339))
	e.Details = map[string]any{"rows_left": max(0, left-1), "refresh": refresh}
	return e
}
