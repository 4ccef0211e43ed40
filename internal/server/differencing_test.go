package server_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The differencing check (issue #13), from the attacker's side: the pairs
// and splits that subtract one transaction or one account out of released
// aggregates are refused with rule aggregation.differencing, naming the
// earlier answer's audit entry; honest exploration is answered; the
// history is shared by replicas and survives a restart.

const fraudTeam = "fraud@partnerbank"

// tsDimension offers the near-identifying ts as a dimension again, as a
// careless owner might: the check must hold even then.
func tsDimension(dir string) {
	p := filepath.Join(dir, "agreements", "partnerbank-transactions-fraud.yaml")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), "dimensions: [merchant, mcc, country, day, is_fraud]", "dimensions: [merchant, mcc, country, day, ts, is_fraud]", 1)), 0o644)
}

// victims are transactions whose ts is unique in the data, of distinct
// accounts that have other transactions too, fraud-flagged ones first
// when fraudFirst.
func victims(t *testing.T, dir string, n int, fraudFirst bool) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "data", "transactions.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	tsCount, perAccount := map[string]int{}, map[string]int{}
	for _, r := range recs[1:] {
		tsCount[r[6]]++
		perAccount[r[0]]++
	}
	var out []string
	used := map[string]bool{}
	for pass := range 2 {
		for _, r := range recs[1:] {
			fraud := r[9] == "true"
			if len(out) == n || (fraudFirst && pass == 0 && !fraud) || tsCount[r[6]] != 1 || perAccount[r[0]] < 2 || used[r[0]] || used[r[6]] {
				continue
			}
			used[r[0]], used[r[6]] = true, true
			out = append(out, r[6])
		}
	}
	if len(out) < n {
		t.Fatalf("found %d victims, want %d", len(out), n)
	}
	return out
}

func tsList(ts []string) string {
	q := make([]string, len(ts))
	for i, s := range ts {
		q[i] = "TIMESTAMP '" + s + "'"
	}
	return strings.Join(q, ", ")
}

func wantDifferencing(t *testing.T, r apiResponse, earlier uint64, what string) {
	t.Helper()
	if r.Status != 422 || r.Error.Rule != "aggregation.differencing" {
		t.Fatalf("%s: status %d rule %q (%s), want 422 aggregation.differencing", what, r.Status, r.Error.Rule, r.Body)
	}
	if earlier > 0 && !strings.Contains(r.Error.Message, "audit index "+strconv.FormatUint(earlier, 10)) {
		t.Fatalf("%s: the refusal does not name the earlier answer's audit index %d: %s", what, earlier, r.Error.Message)
	}
}

func wantAnswer(t *testing.T, r apiResponse, what string) {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("%s: status %d %s", what, r.Status, r.Body)
	}
}

func TestDifferencingPairsAreRefused(t *testing.T) {
	h := newHarness(t, tsDimension)
	q := func(sql string) apiResponse { return h.query(t, fraudTeam, "fraud_detection", "", sql) }
	v := victims(t, h.dir, 45, true)

	total := q("SELECT sum(amount) FROM transactions")
	wantAnswer(t, total, "the total")
	// The same total again reads the same rows: answered.
	wantAnswer(t, q("SELECT sum(amount) AS s FROM transactions"), "the total again")
	again := q("SELECT count(*), sum(amount) FROM transactions")
	wantAnswer(t, again, "count and total")

	// The total minus one transaction of an account that has others: its
	// amount. Refused, naming the answer it combines with (the first: the
	// repeats covered the same rows and were not remembered again).
	minusOne := q("SELECT sum(amount) FROM transactions WHERE ts <> TIMESTAMP '" + v[0] + "'")
	wantDifferencing(t, minusOne, total.AuditIndex, "total minus one transaction")
	if strings.Contains(minusOne.Error.Message, v[0]) {
		t.Fatalf("the refusal echoes the filter's value: %s", minusOne.Error.Message)
	}

	// The same with counts on is_fraud: one account's fraud flag.
	wantAnswer(t, q("SELECT count(*) FROM transactions WHERE is_fraud"), "fraud count")
	wantDifferencing(t, q("SELECT count(*) FROM transactions WHERE is_fraud AND ts <> TIMESTAMP '"+v[0]+"'"), 0, "fraud count minus one")

	// The complement split in one query: the large group (all but one
	// transaction) beside the earlier total.
	wantDifferencing(t, q("SELECT ts <> TIMESTAMP '"+v[1]+"' AS rest, sum(amount) FROM transactions GROUP BY ts <> TIMESTAMP '"+v[1]+"'"), 0, "complement split")

	// Three answers: the total (above), the total minus 30 accounts'
	// transactions (30 >= 25 units from the total: answered), and minus
	// 15 of those (15 from each): refused.
	minus30 := q("SELECT sum(amount) FROM transactions WHERE ts NOT IN (" + tsList(v[2:32]) + ")")
	wantAnswer(t, minus30, "minus 30 accounts")
	wantDifferencing(t, q("SELECT sum(amount) FROM transactions WHERE ts NOT IN ("+tsList(v[2:17])+")"), 0, "minus 15 of them")

	// Every refusal is audited with the rule and the earlier answer.
	var refused int
	for _, e := range auditedSince(t, h, 0) {
		if e.Rule == "aggregation.differencing" {
			refused++
			if e.Extra["differencing_dataset"] != "transactions" || (e.Extra["differencing_with"] == "" && !strings.Contains(e.Message, "rows of this answer")) {
				t.Fatalf("audited refusal without what it combined with: %+v", e)
			}
		}
	}
	if refused != 4 {
		t.Fatalf("%d differencing refusals audited, want 4", refused)
	}
	// The owner's steward sees them in /v1/audit, each with the answer it
	// protected.
	page := h.get(t, "/v1/audit?rule=aggregation.differencing", h.tokens["steward@northbank"])
	var body struct {
		Entries []struct {
			Entry struct {
				Rule  string            `json:"rule"`
				Extra map[string]string `json:"extra"`
			} `json:"entry"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(page.Body, &body); err != nil || page.Status != 200 || len(body.Entries) != 4 {
		t.Fatalf("/v1/audit?rule=aggregation.differencing: %d %s", page.Status, page.Body)
	}
	if last := body.Entries[len(body.Entries)-1].Entry; last.Rule != "aggregation.differencing" || last.Extra["differencing_with"] != strconv.FormatUint(total.AuditIndex, 10) {
		t.Fatalf("the steward does not see that the first refusal protected entry %d: %s", total.AuditIndex, page.Body)
	}
}

// An analyst exploring honestly: totals by country, then by country and
// month, then one country by month, then the same again. Every answer is
// released.
func TestHonestExplorationIsAnswered(t *testing.T) {
	h := newHarness(t, nil)
	q := func(sql string) apiResponse { return h.query(t, fraudTeam, "fraud_detection", "", sql) }
	for _, sql := range []string{
		"SELECT country, count(*), sum(amount) FROM transactions GROUP BY country",
		"SELECT country, date_trunc('month', day) AS month, count(*), sum(amount) FROM transactions GROUP BY country, date_trunc('month', day)",
		"SELECT date_trunc('month', day) AS month, count(*), sum(amount) FROM transactions WHERE country = 'DE' GROUP BY date_trunc('month', day)",
		"SELECT is_fraud, count(*), avg(amount) FROM transactions GROUP BY is_fraud",
		"SELECT mcc, count(*) FROM transactions WHERE is_fraud GROUP BY mcc",
		"SELECT country, count(*), sum(amount) FROM transactions GROUP BY country",
	} {
		r := q(sql)
		if r.Status != 200 || len(r.Rows) == 0 {
			t.Fatalf("%s: status %d rows %d %s", sql, r.Status, len(r.Rows), r.Body)
		}
	}
}

// The history survives a restart, and two replicas on one PostgreSQL
// state store share it: one's answer is the other's earlier answer, and
// a pair sent to both at once is answered at most once.
func TestDifferencingHistoryIsDurableAndShared(t *testing.T) {
	h := newHarness(t, tsDimension)
	v := victims(t, h.dir, 3, false)
	total := h.query(t, fraudTeam, "fraud_detection", "", "SELECT sum(amount) FROM transactions")
	wantAnswer(t, total, "the total")
	dir, tokens := h.dir, h.tokens
	h.stop()

	h2, err := startHarness(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	h2.tokens = tokens
	wantDifferencing(t, h2.query(t, fraudTeam, "fraud_detection", "", "SELECT sum(amount) FROM transactions WHERE ts <> TIMESTAMP '"+v[0]+"'"), total.AuditIndex, "after a restart")
	h2.stop()

	schema := storeSchema(t, "differencing")
	ha, err := startHarnessSchema(dir, pgDSN(), schema, true)
	if err != nil {
		t.Fatalf("replica A on PostgreSQL at %s: %v", pgDSN(), err)
	}
	defer ha.stop()
	hb, err := startHarnessSchema(dir, pgDSN(), schema, false)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.stop()
	hb.tokens = ha.tokens
	onA := ha.query(t, fraudTeam, "fraud_detection", "", "SELECT count(*) FROM transactions")
	wantAnswer(t, onA, "count on replica A")
	wantDifferencing(t, hb.query(t, fraudTeam, "fraud_detection", "", "SELECT count(*) FROM transactions WHERE ts <> TIMESTAMP '"+v[1]+"'"), onA.AuditIndex, "on replica B")

	// A pair at once, one query to each replica, eight times over fresh
	// pairs (sum over one country minus a transaction of it): never both.
	for i := range 8 {
		country := []string{"DE", "FR", "NL", "ES", "IT", "GB", "PL", "BE"}[i]
		pair := []string{
			fmt.Sprintf("SELECT sum(amount) FROM transactions WHERE country = '%s' AND mcc <> '0000'", country),
			fmt.Sprintf("SELECT sum(amount) FROM transactions WHERE country = '%s' AND ts <> TIMESTAMP '%s'", country, firstTSOf(t, dir, country)),
		}
		var wg sync.WaitGroup
		res := make([]apiResponse, 2)
		for j, node := range []*harness{ha, hb} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[j] = node.query(t, fraudTeam, "fraud_detection", "", pair[j])
			}()
		}
		wg.Wait()
		if res[0].Status == 200 && res[1].Status == 200 {
			t.Fatalf("%s: both of a differencing pair were answered by two replicas at once", country)
		}
		for _, r := range res {
			if r.Status != 200 && r.Error.Rule != "aggregation.differencing" {
				t.Fatalf("%s: %d %s", country, r.Status, r.Body)
			}
		}
	}
}

// firstTSOf is a unique ts of a transaction in country.
func firstTSOf(t *testing.T, dir, country string) string {
	t.Helper()
	f, _ := os.Open(filepath.Join(dir, "data", "transactions.csv"))
	defer f.Close()
	recs, _ := csv.NewReader(f).ReadAll()
	count := map[string]int{}
	for _, r := range recs[1:] {
		count[r[6]]++
	}
	for _, r := range recs[1:] {
		if r[5] == country && count[r[6]] == 1 && r[4] != "0000" {
			return r[6]
		}
	}
	t.Fatalf("no transaction in %s", country)
	return ""
}

// Over the wire (psql) the same pair meets the same refusal, with the
// rule in the error, and answers by either channel share one history.
func TestDifferencingOverTheWire(t *testing.T) {
	h := newHarness(t, tsDimension)
	v := victims(t, h.dir, 1, false)
	conn := h.pgConnString(fraudTeam, "fraud_detection")
	out, errw := psql(t, conn, "-c", "SELECT count(*) FROM transactions")
	if strings.Contains(errw, "ERROR") || !strings.Contains(out, "(1 row)") {
		t.Fatalf("the count over psql: %s %s", out, errw)
	}
	_, errw = psql(t, conn, "-c", "SELECT count(*) FROM transactions WHERE ts <> TIMESTAMP '"+v[0]+"'")
	if !strings.Contains(errw, "aggregation.differencing") || !strings.Contains(errw, "audit index") {
		t.Fatalf("minus one over psql: %q", errw)
	}
	wantDifferencing(t, h.query(t, fraudTeam, "fraud_detection", "", "SELECT count(*) AS n FROM transactions WHERE ts <> TIMESTAMP '"+v[0]+"'"), 0, "the same over HTTP")
}

// On a dataset governed in place in PostgreSQL, the sketches are computed
// in the owner's database (hashtextextended of the row and the unit), and
// the same pair is refused.
func TestDifferencingOnPostgres(t *testing.T) {
	dir := pgWorkspace(t, shared.dir, tsDimension)
	h, err := startHarness(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	if len(h.node.PGEngines) != 1 {
		t.Fatal("datasets are not routed to PostgreSQL")
	}
	v := victims(t, dir, 30, false)
	q := func(sql string) apiResponse { return h.query(t, fraudTeam, "fraud_detection", "", sql) }
	total := q("SELECT country, sum(amount) FROM transactions GROUP BY country")
	wantAnswer(t, total, "totals by country")
	wantAnswer(t, q("SELECT country, count(*) AS n, sum(amount) FROM transactions GROUP BY country"), "the same groups again")
	wantDifferencing(t, q("SELECT country, sum(amount) FROM transactions WHERE ts <> TIMESTAMP '"+v[0]+"' GROUP BY country"), 0, "minus one transaction")
	wantAnswer(t, q("SELECT sum(amount) FROM transactions WHERE ts NOT IN ("+tsList(v)+")"), "the grand total minus 30 accounts")
}

// Whether an answer is refused must not depend on what the analyst's
// HAVING, ORDER BY and LIMIT make of hidden values: every group that meets
// the threshold is compared, released or not. (An attack round read a
// hidden amount to the cent by bisecting a HAVING against the refusal.)
func TestDifferencingSeesCellsHavingAndLimitLeaveOut(t *testing.T) {
	h := newHarness(t, tsDimension)
	q := func(sql string) apiResponse { return h.query(t, fraudTeam, "fraud_detection", "", sql) }
	v := victims(t, h.dir, 1, false)[0]
	country := countryOf(t, h.dir, v)
	other := "DE"
	if country == "DE" {
		other = "FR"
	}
	wantAnswer(t, q("SELECT sum(amount) FROM transactions"), "the total")
	wantAnswer(t, q("SELECT country, sum(amount) FROM transactions GROUP BY country"), "totals by country")
	for _, having := range []string{"sum(amount) > 0", "sum(amount) < 0", "sum(amount) > 1e12"} {
		wantDifferencing(t, q("SELECT count(*) FROM transactions WHERE ts <> TIMESTAMP '"+v+"' HAVING "+having), 0, "minus one with HAVING "+having)
	}
	for _, order := range []string{"DESC", "ASC"} {
		wantDifferencing(t, q(fmt.Sprintf("SELECT country, sum(amount) FROM transactions WHERE ts <> TIMESTAMP '%s' AND country IN ('%s', '%s') GROUP BY country ORDER BY sum(amount) %s LIMIT 1", v, country, other, order)), 0, "minus one, one row by "+order)
		wantDifferencing(t, q(fmt.Sprintf("SELECT country, sum(amount) FROM transactions WHERE ts <> TIMESTAMP '%s' AND country IN ('%s', '%s') GROUP BY country ORDER BY sum(amount) %s OFFSET 1", v, country, other, order)), 0, "minus one, OFFSET 1 by "+order)
	}
	// A HAVING that leaves a group out does not make it remembered: the
	// group, asked for later minus one transaction, is compared with what
	// was released (the earlier totals), as before.
	wantAnswer(t, q("SELECT country, count(*) FROM transactions GROUP BY country HAVING count(*) > 1e12"), "a HAVING no group meets")
}

// countryOf is the country of the transaction at ts.
func countryOf(t *testing.T, dir, ts string) string {
	t.Helper()
	f, _ := os.Open(filepath.Join(dir, "data", "transactions.csv"))
	defer f.Close()
	recs, _ := csv.NewReader(f).ReadAll()
	for _, r := range recs[1:] {
		if r[6] == ts {
			return r[5]
		}
	}
	t.Fatalf("no transaction at %s", ts)
	return ""
}

// -0.0 and 0.0 are one group, but each engine query picks its own
// representative key: the answer's row and its sketch must still meet
// whole (an attack round released a total minus one transaction through
// a group key of signed zeros, compared against half its sketch).
func TestDifferencingSignedZeroGroupKey(t *testing.T) {
	h := newHarness(t, tsDimension)
	q := func(sql string) apiResponse { return h.query(t, fraudTeam, "fraud_detection", "", sql) }
	v := victims(t, h.dir, 1, false)[0]
	wantAnswer(t, q("SELECT sum(amount) FROM transactions"), "the total")
	const key = "CASE WHEN right(mcc, 1) IN ('0', '2', '4', '6', '8') THEN -CAST(0 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END"
	wantDifferencing(t, q("SELECT "+key+" AS k, sum(amount) FROM transactions WHERE ts <> TIMESTAMP '"+v+"' GROUP BY "+key), 0, "minus one, grouped by signed zeros")
	// Honest use of such a key is answered and matches its sketch.
	wantAnswer(t, q("SELECT "+key+" AS k, count(*) FROM transactions GROUP BY "+key), "grouped by signed zeros")
}

// The analyst cannot push the answer they want to subtract from out of
// the history by asking others: repeats take no place, and a full history
// refuses new answers rather than forget (an attack round flushed a
// count-bounded window with three harmless questions).
func TestDifferencingHistoryCannotBeFlushed(t *testing.T) {
	h := newHarness(t, func(dir string) {
		tsDimension(dir)
		editWorkspaceFile(t, dir, "agreements/partnerbank-transactions-fraud.yaml", "answers: 1000", "answers: 3")
	})
	q := func(sql string) apiResponse { return h.query(t, fraudTeam, "fraud_detection", "", sql) }
	v := victims(t, h.dir, 1, false)[0]
	minusOne := "SELECT sum(amount) FROM transactions WHERE ts <> TIMESTAMP '" + v + "'"
	total := q("SELECT sum(amount) FROM transactions")
	wantAnswer(t, total, "the total")
	for range 5 {
		wantAnswer(t, q("SELECT country, count(*) FROM transactions GROUP BY country"), "the same question again")
	}
	wantDifferencing(t, q(minusOne), total.AuditIndex, "minus one after repeats")
	wantAnswer(t, q("SELECT mcc, count(*) FROM transactions GROUP BY mcc"), "a third answer")
	full := q("SELECT merchant, count(*) FROM transactions GROUP BY merchant")
	if full.Status != 429 || full.Error.Rule != "aggregation.differencing_history" {
		t.Fatalf("a fourth answer into a history of 3: %d %s", full.Status, full.Body)
	}
	wantDifferencing(t, q(minusOne), total.AuditIndex, "minus one with the history full")
	wantAnswer(t, q("SELECT country, count(*) FROM transactions GROUP BY country"), "a repeat into the full history")
	// The operator sees what the history holds.
	m := h.scrape(t, "auditor@regulator")
	if got := metricValue(t, m, "airlock_differencing_history_answers"); got != 3 {
		t.Errorf("airlock_differencing_history_answers = %v, want 3", got)
	}
	if cells, bytes := metricValue(t, m, "airlock_differencing_history_cells"), metricValue(t, m, "airlock_differencing_history_bytes"); cells < 3 || bytes < 100*cells {
		t.Errorf("history of %v cells in %v bytes", cells, bytes)
	}
}

// A full join's row count depends on how rows pair, which each side's
// sketch does not see: refused under the aggregation rule (a fourth
// attack round paired one hidden row or not through the ON condition
// while both sides' rows stayed those of the total).
func TestFullJoinIsRefusedUnderAggregation(t *testing.T) {
	h := newHarness(t, tsDimension)
	v := victims(t, h.dir, 1, false)[0]
	r := h.query(t, fraudTeam, "fraud_detection", "", "SELECT count(*) FROM transactions a FULL JOIN transactions b ON a.ts = b.ts AND (a.ts <> TIMESTAMP '"+v+"' OR a.is_fraud) = (b.ts = b.ts)")
	if r.Status != 422 || r.Error.Rule != "aggregation.join" {
		t.Fatalf("FULL JOIN: %d %s", r.Status, r.Body)
	}
	wantAnswer(t, h.query(t, fraudTeam, "fraud_detection", "", "SELECT a.country, count(*) FROM transactions a LEFT JOIN transactions b ON a.ts = b.ts AND b.is_fraud GROUP BY a.country"), "a LEFT JOIN")
}

// Two worlds that differ only in one hidden account (testdata/oracles.yaml's
// neighbour): the pair "total, total without the account's country" never
// releases the account's amount in either world. What remains is the one
// bit docs/privacy.md names: without the account the second answer is the
// first again (no unit differs) and is answered; with it, it is refused.
func TestDifferencingPairAcrossAHiddenAccount(t *testing.T) {
	base := newHarness(t, nil)
	neighbour := newHarness(t, addHiddenPerson)
	const total, without = "SELECT sum(amount) FROM transactions", "SELECT sum(amount) FROM transactions WHERE country <> 'ZZ'"
	for _, h := range []*harness{base, neighbour} {
		wantAnswer(t, h.query(t, fraudTeam, "fraud_detection", "", total), "the total")
	}
	b1 := base.query(t, fraudTeam, "fraud_detection", "", total)
	b2 := base.query(t, fraudTeam, "fraud_detection", "", without)
	wantAnswer(t, b2, "without ZZ, no ZZ account")
	if fmt.Sprint(b1.Rows) != fmt.Sprint(b2.Rows) {
		t.Fatalf("without the hidden account, the two answers differ: %v %v", b1.Rows, b2.Rows)
	}
	n2 := neighbour.query(t, fraudTeam, "fraud_detection", "", without)
	wantDifferencing(t, n2, 0, "without ZZ, with the hidden account")
	if strings.Contains(string(n2.Body), "17.85") || strings.Contains(string(n2.Body), "53.55") {
		t.Fatalf("the refusal carries the hidden account's amount: %s", n2.Body)
	}
}
