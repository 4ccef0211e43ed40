package collab

import (
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/psi"
	"golang.org/x/mod/sumdb/note"
)

func nodeKey(t testing.TB, name string) *federation.NodeKey {
	t.Helper()
	skey, vkey, err := note.GenerateKey(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := federation.ParseSigner(skey, vkey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testCollab(t testing.TB, a, b *federation.NodeKey) []byte {
	return fmt.Appendf(nil, `id: fraud
purpose: fraud_detection
members:
  - org: northbank
    node: %s
    key: %s
    abilities: [can_receive_results]
    budget: {epsilon: 10, delta: 1.0e-6}
  - org: partnerbank
    node: %s
    key: %s
    abilities: [can_query, can_receive_results]
    queriers: [fraud@partnerbank]
    budget: {epsilon: 10, delta: 1.0e-6}
tables:
  northbank.transactions:
    member: northbank
    dataset: transactions
    rule: aggregation
    join_keys: [counterparty_iban]
    filters: [is_fraud, amount, country]
    dimensions: {country: [DE, FR, NL]}
    values: {amount: {min: 0, max: 10000}}
    min_matched: 3
    epsilon: 1
  partnerbank.transactions:
    member: partnerbank
    dataset: transactions
    rule: custom
    join_keys: [counterparty_iban]
    filters: [is_fraud, amount]
    dimensions: {merchant: [m1, m2]}
    values: {amount: {min: 0, max: 5000}}
    min_matched: 5
    epsilon: 1
templates:
  - name: overlap
    sql: SELECT a.country, count(*) FROM northbank.transactions a JOIN partnerbank.transactions b ON a.counterparty_iban = b.counterparty_iban WHERE a.is_fraud AND b.amount > $1 GROUP BY a.country
    params: [min_amount]
`, a.Name, a.Verifier, b.Name, b.Verifier)
}

type row = []any

// bank: rows (iban, country/merchant, amount, is_fraud), each iban in one group.
func bank(r *mrand.Rand, prefix string, n int, groups []string, shared int) [][]any {
	var out [][]any
	for i := range n {
		iban := fmt.Sprintf("%s%06d", prefix, i)
		if i < shared {
			iban = fmt.Sprintf("SH%06d", i)
		}
		g := groups[(i*7)%len(groups)]
		for range 1 + r.IntN(3) {
			out = append(out, row{iban, g, float64(r.IntN(900)), r.IntN(2) == 0})
		}
	}
	return out
}

// play runs the private join for a plan over both sides' rows, noise-free.
func play(t testing.TB, p *Plan, rows [2][][]any) []int64 {
	t.Helper()
	var items [2][]psi.Item
	for side := range 2 {
		var err error
		items[side], err = p.Items(side, rows[side])
		if err != nil {
			t.Fatal(err)
		}
	}
	var sess [16]byte
	m, _ := psi.NewParty(sess, p.Width(), 1<<22)
	h, _ := psi.NewParty(sess, p.Width(), 1<<22)
	m.Join(h.Public())
	h.Join(m.Public())
	mi, err := m.Items(items[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	re, err := h.Reblind(mi)
	if err != nil {
		t.Fatal(err)
	}
	hi, err := h.Items(items[1], 0)
	if err != nil {
		t.Fatal(err)
	}
	cells, _, err := m.Match(re, hi)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Decrypt(cells, h.Partials(cells))
	if err != nil {
		t.Fatal(err)
	}
	return out
}
