package store

import (
	"testing"
	"time"
)

func TestReconcile(t *testing.T) {
	k := BudgetKey{Agreement: "a", PeriodStart: time.Unix(0, 0)}
	q := BudgetKey{Agreement: "a#rows", PeriodStart: time.Unix(0, 0)}
	reserved := []Reservation{{ChargeID: "1", Agreement: "a", Rho: 0.5}, {ChargeID: "2", Agreement: "a", QuotaRows: 7}, {ChargeID: "3", Agreement: "a", Rho: 0.5}}
	charges := []ChargeRecord{{ID: "1", Key: k, Rho: 0.5}, {ID: "2", Key: q, Rho: 7}}
	ledger := []LedgerRow{{Key: k, State: BudgetState{Rho: 0.5}}, {Key: q, State: BudgetState{Rho: 7}}}
	r := Reconcile(reserved, charges, ledger)
	if !r.OK() || r.Uncharged != 1 {
		t.Fatalf("a consistent ledger: %s", r)
	}
	// A charge the log never announced, a ledger row that does not add up,
	// and a charge larger than announced are each reported.
	bad := Reconcile(reserved[:1], append(charges, ChargeRecord{ID: "9", Key: k, Rho: 0.1}), []LedgerRow{{Key: k, State: BudgetState{Rho: 0.7}}})
	if bad.OK() || len(bad.Unreserved) != 2 || len(bad.Unbalanced) != 1 {
		t.Fatalf("want two unreserved charges and one unbalanced row: %s", bad)
	}
	if m := Reconcile([]Reservation{{ChargeID: "1", Agreement: "a", Rho: 0.4}}, charges[:1], ledger[:1]); len(m.Mismatched) != 1 {
		t.Fatalf("a charge larger than its reservation: %s", m)
	}
}
