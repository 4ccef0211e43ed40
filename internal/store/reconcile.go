package store

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Reservation is what an audit "reserve" entry announced before a charge.
type Reservation struct {
	ChargeID  string
	Agreement string
	Rho       float64 // a DP charge
	QuotaRows int64   // a row-quota charge
	Index     uint64  // the entry's audit index
}

// Reconciliation is the result of matching the ledger against the log.
type Reconciliation struct {
	Charges, Ledgers int
	// Unreserved are charges no audit entry announced; Mismatched charges
	// whose amount differs from their reservation; Unbalanced ledger rows
	// that are not the sum of their charges. All three must be empty.
	Unreserved, Mismatched, Unbalanced []string
	// Uncharged counts reservations with no charge: refused for budget, or
	// interrupted between the reservation and the charge. Expected.
	Uncharged int
}

// OK reports whether every charge is explained and every ledger row adds up.
func (r Reconciliation) OK() bool {
	return len(r.Unreserved) == 0 && len(r.Mismatched) == 0 && len(r.Unbalanced) == 0
}

func (r Reconciliation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d charges in %d ledger rows; %d reservations without a charge (refused or interrupted before charging)\n", r.Charges, r.Ledgers, r.Uncharged)
	for _, l := range [][2]any{{"charge with no reserving audit entry", r.Unreserved}, {"charge differing from its reservation", r.Mismatched}, {"ledger row not the sum of its charges", r.Unbalanced}} {
		for _, x := range l[1].([]string) {
			fmt.Fprintf(&b, "MISMATCH %s: %s\n", l[0], x)
		}
	}
	if r.OK() {
		b.WriteString("ledger and audit log reconcile: every charge is explained by an audit entry\n")
	}
	return b.String()
}

// Reconcile matches the ledger's charges and rows against the audit log's
// reservations. The debit and its charge record commit together, and the
// reservation is durable before either, so after any crash each charge has
// its reservation and each ledger row is the sum of its charges.
func Reconcile(reserved []Reservation, charges []ChargeRecord, ledger []LedgerRow) Reconciliation {
	r := Reconciliation{Charges: len(charges), Ledgers: len(ledger)}
	byID := map[string]Reservation{}
	for _, v := range reserved {
		byID[v.ChargeID] = v
	}
	sums := map[BudgetKey]float64{}
	seen := map[string]bool{}
	for _, c := range charges {
		sums[c.Key] += c.Rho
		seen[c.ID] = true
		v, ok := byID[c.ID]
		switch {
		case !ok:
			r.Unreserved = append(r.Unreserved, fmt.Sprintf("%s on %s (rho %g)", c.ID, c.Key.Agreement, c.Rho))
		case v.QuotaRows > 0 && float64(v.QuotaRows) != c.Rho, v.QuotaRows == 0 && !near(v.Rho, c.Rho):
			r.Mismatched = append(r.Mismatched, fmt.Sprintf("%s: charged %g, audit entry %d announced rho %g / %d rows", c.ID, c.Rho, v.Index, v.Rho, v.QuotaRows))
		case !strings.HasPrefix(c.Key.Agreement, v.Agreement):
			r.Mismatched = append(r.Mismatched, fmt.Sprintf("%s: charged to %s, audit entry %d names %s", c.ID, c.Key.Agreement, v.Index, v.Agreement))
		}
	}
	for _, v := range reserved {
		if !seen[v.ChargeID] {
			r.Uncharged++
		}
	}
	for _, row := range ledger {
		if !near(row.State.Rho, sums[row.Key]) {
			r.Unbalanced = append(r.Unbalanced, fmt.Sprintf("%s/%s/%s spent %g, its charges sum to %g", row.Key.Agreement, row.Key.Principal, row.Key.PeriodStart.Format("2006-01-02T15:04Z"), row.State.Rho, sums[row.Key]))
		}
	}
	sort.Strings(r.Unbalanced)
	return r
}

func near(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}
