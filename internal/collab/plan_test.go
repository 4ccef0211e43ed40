package collab

import (
	"fmt"
	mrand "math/rand/v2"
	"sort"
	"strings"
	"testing"
)

func mustPlan(t *testing.T, c *Collaboration, sql string, params ...any) *Plan {
	t.Helper()
	p, err := c.PlanQuery(sql, params)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return p
}

// plain computes the reduced-rows SQL in Go: per identifier of each side
// (after its filter), grouped, counted and summed.
func plain(rowsA, rowsB [][]any, keepA, keepB func([]any) bool, group func(a, b []any) string, sumB bool) map[string][2]int64 {
	a := map[string][]any{}
	for _, r := range rowsA {
		if keepA(r) {
			a[r[0].(string)] = r
		}
	}
	type agg struct {
		rows []any
		sum  float64
	}
	b := map[string]*agg{}
	for _, r := range rowsB {
		if keepB(r) {
			k := r[0].(string)
			if b[k] == nil {
				b[k] = &agg{rows: r}
			}
			b[k].sum += r[2].(float64)
		}
	}
	out := map[string][2]int64{}
	for k, ra := range a {
		if x := b[k]; x != nil {
			g := group(ra, x.rows)
			v := out[g]
			v[0]++
			if sumB {
				v[1] += int64(min(x.sum, 5000))
			}
			out[g] = v
		}
	}
	return out
}

func render(cols []string, rows []Row) string {
	var lines []string
	for _, r := range rows {
		lines = append(lines, fmt.Sprint(r...))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestPlanMatchesPlainJoin: counts grouped by one side, sums of one side
// grouped by the other (the expansion), filters on both sides, against
// the same reduction computed in the clear.
func TestPlanMatchesPlainJoin(t *testing.T) {
	a, b := nodeKey(t, "north"), nodeKey(t, "partner")
	c, err := Parse(testCollab(t, a, b), "fraud")
	if err != nil {
		t.Fatal(err)
	}
	r := mrand.New(mrand.NewPCG(7, 8))
	north := bank(r, "NB", 300, []string{"DE", "FR", "NL", "US"}, 150)
	partner := bank(r, "PB", 300, []string{"m1", "m2"}, 150)
	// SideQuery's selection is simulated: northbank rows (iban, country, amount, fraud)
	sel := func(rows [][]any, keep func([]any) bool, cols ...int) [][]any {
		var out [][]any
		for _, r := range rows {
			if keep(r) {
				var x []any
				for _, c := range cols {
					x = append(x, r[c])
				}
				out = append(out, x)
			}
		}
		return out
	}
	fraud := func(r []any) bool { return r[3].(bool) }
	big := func(r []any) bool { return r[2].(float64) > 100 }
	all := func([]any) bool { return true }

	// 1. count grouped by northbank's country, filters on both sides
	p := mustPlan(t, c, `SELECT a.country, count(*) AS n FROM northbank.transactions a JOIN partnerbank.transactions b
		ON a.counterparty_iban = b.counterparty_iban WHERE a.is_fraud AND b.amount > $1 GROUP BY a.country`, 100)
	if p.Sides[0].Filter != `("is_fraud")` || p.Sides[1].Filter != `("amount" > $1)` || p.Sides[1].Args[0] != 100 {
		t.Fatalf("filters %q %q %v", p.Sides[0].Filter, p.Sides[1].Filter, p.Sides[1].Args)
	}
	// One group per iban on each side only if the filter keeps a row per
	// iban consistently; the plain reduction keeps the first kept row.
	cells := play(t, p, [2][][]any{sel(north, fraud, 0, 1), sel(partner, big, 0)})
	_, rows := p.Rows(cells, 1)
	want := plain(north, partner, fraud, big, func(a, _ []any) string { return domainLabel(a[1].(string), "DE", "FR", "NL") }, false)
	if got, w := render(nil, rows), renderPlain(want, false); got != w {
		t.Errorf("count by country:\n%s\nplain:\n%s", got, w)
	}

	// 2. sum of partnerbank's amounts grouped by northbank's country:
	// the payload side is partnerbank, expanded over northbank's countries.
	p = mustPlan(t, c, `SELECT a.country, count(*), sum(b.amount) FROM northbank.transactions a JOIN partnerbank.transactions b
		ON a.counterparty_iban = b.counterparty_iban GROUP BY a.country`)
	if p.PayloadSide != 1 || p.Expansion() != 4 {
		t.Fatalf("payload side %d, expansion %d", p.PayloadSide, p.Expansion())
	}
	cells = play(t, p, [2][][]any{sel(north, all, 0, 1), sel(partner, all, 0, 2)})
	_, rows = p.Rows(cells, 1)
	want = plain(north, partner, all, all, func(a, _ []any) string { return domainLabel(a[1].(string), "DE", "FR", "NL") }, true)
	if got, w := render(nil, rows), renderPlain(want, true); got != w {
		t.Errorf("sum by other side's country:\n%s\nplain:\n%s", got, w)
	}

	// 3. thresholds drop groups below the count
	_, rows = p.Rows(cells, 1<<30)
	if len(rows) != 0 {
		t.Errorf("threshold kept %d rows", len(rows))
	}
}

func domainLabel(v string, domain ...string) string {
	for _, d := range domain {
		if d == v {
			return v
		}
	}
	return Other
}

func renderPlain(m map[string][2]int64, sum bool) string {
	var lines []string
	for g, v := range m {
		if sum {
			lines = append(lines, fmt.Sprint(g, v[0], v[1]))
		} else {
			lines = append(lines, fmt.Sprint(g, v[0]))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestPlanRefusals: each shape a collaboration does not allow names its rule.
func TestPlanRefusals(t *testing.T) {
	a, b := nodeKey(t, "north"), nodeKey(t, "partner")
	c, err := Parse(testCollab(t, a, b), "fraud")
	if err != nil {
		t.Fatal(err)
	}
	from := ` FROM northbank.transactions a JOIN partnerbank.transactions b ON a.counterparty_iban = b.counterparty_iban`
	for sql, rule := range map[string]string{
		`SELECT count(*) FROM northbank.transactions a JOIN partnerbank.transactions b ON a.amount = b.counterparty_iban`: "collab.join_key",
		`SELECT count(*) FROM northbank.transactions a JOIN other.t b ON a.counterparty_iban = b.x`:                       "collab.table",
		`SELECT count(*) FROM northbank.transactions a`:                                                                   "collab.shape",
		`SELECT count(*)` + from + ` WHERE a.counterparty_iban = 'x'`:                                                     "collab.filter",
		`SELECT count(*)` + from + ` WHERE a.amount > b.amount`:                                                           "collab.filter",
		`SELECT count(*)` + from + ` WHERE a.amount > (SELECT 1)`:                                                         "collab.filter",
		`SELECT a.merchant, count(*)` + from + ` GROUP BY a.merchant`:                                                     "collab.dimension",
		`SELECT a.country, count(*)` + from:                                                                               "collab.group",
		`SELECT sum(a.amount), sum(b.amount)` + from:                                                                      "collab.aggregate_sides",
		`SELECT sum(a.is_fraud)` + from:                                                                                   "collab.value",
		`SELECT max(a.amount)` + from:                                                                                     "collab.aggregate",
		`SELECT count(*)` + from + ` ORDER BY 1`:                                                                          "collab.shape",
		`SELECT count(*)` + from + ` WHERE a.amount > $2`:                                                                 "collab.params",
	} {
		_, err := c.PlanQuery(sql, nil)
		r, ok := err.(*Refusal)
		if !ok || r.Rule != rule {
			t.Errorf("%s: %v, want rule %s", sql, err, rule)
		}
	}
}

// TestCheckTypes: each side's conditions must fit its own column types,
// so no condition can fail on some rows only (an oracle on the data).
func TestCheckTypes(t *testing.T) {
	a, b := nodeKey(t, "north"), nodeKey(t, "partner")
	c, err := Parse(testCollab(t, a, b), "fraud")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{"counterparty_iban": "text", "is_fraud": "boolean", "amount": "decimal", "country": "text", "merchant": "text"}
	from := ` FROM northbank.transactions a JOIN partnerbank.transactions b ON a.counterparty_iban = b.counterparty_iban`
	for where, ok := range map[string]bool{
		"a.is_fraud":                           true,
		"NOT a.is_fraud OR a.amount > 5":       true,
		"a.amount IN (1, 2.5)":                 true,
		"a.country IN ('DE', 'FR')":            true,
		"a.country":                            false, // a text column as a boolean
		"a.amount > 'x'":                       false,
		"a.country = a.amount":                 false,
		"a.country IN ('DE', 2)":               false,
		"a.is_fraud = 1":                       false,
		"NOT a.country":                        false,
		"a.is_fraud OR a.country":              false,
		"a.amount IS NULL OR a.country = 'DE'": true,
	} {
		p, err := c.PlanQuery("SELECT count(*)"+from+" WHERE "+where, nil)
		if err == nil {
			err = p.CheckTypes(0, types)
		}
		if (err == nil) != ok {
			t.Errorf("%s: %v, want accepted %v", where, err, ok)
		}
	}
	// A summed column must be numeric on the payload side.
	p, _ := c.PlanQuery("SELECT sum(a.amount)"+from, nil)
	if err := p.CheckTypes(0, map[string]string{"amount": "text"}); rule(err) != "collab.value" {
		t.Errorf("sum of a text column: %v", err)
	}
	// Dates compare only with dates; string constants must parse.
	p, _ = c.PlanQuery("SELECT count(*)"+from+" WHERE a.amount > a.country AND a.country >= '2026-01-01'", nil)
	if err := p.CheckTypes(0, map[string]string{"amount": "date", "country": "timestamp"}); rule(err) != "collab.filter" {
		t.Errorf("date against timestamp: %v", err)
	}
	p, _ = c.PlanQuery("SELECT count(*)"+from+" WHERE a.country >= '2026-01-01 10:00:00.5'", nil)
	if err := p.CheckTypes(0, map[string]string{"country": "timestamp"}); err != nil {
		t.Errorf("a timestamp with fractional seconds: %v", err)
	}
	p, _ = c.PlanQuery("SELECT count(*)"+from+" WHERE a.country >= 'soon'", nil)
	if err := p.CheckTypes(0, map[string]string{"country": "timestamp"}); rule(err) != "collab.filter" {
		t.Errorf("an unparsable timestamp: %v", err)
	}
}
