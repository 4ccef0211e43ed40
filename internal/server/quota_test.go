package server_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The list rule's max_rows is a quota of rows released per period, not a
// page size: LIMIT/OFFSET paging stops where the quota ends, an answer
// that does not fit is refused whole, and every answer says what is left.
func TestListQuotaStopsPaging(t *testing.T) {
	h := newHarness(t, func(dir string) {
		p := filepath.Join(dir, "agreements", "stmary-internal-visits.yaml")
		b, _ := os.ReadFile(p)
		os.WriteFile(p, []byte(strings.Replace(string(b), "max_rows: 10000", "max_rows: 100", 1)), 0o644)
	})
	page := func(sql string) (apiResponse, map[string]any) {
		r := h.query(t, "internal@stmary", "care_quality", "", sql)
		var body struct {
			Quota map[string]any `json:"row_quota"`
		}
		json.Unmarshal(r.Body, &body)
		return r, body.Quota
	}
	const q = "SELECT diagnosis, cost FROM visits ORDER BY visit_date, cost LIMIT %s"
	r, quota := page(strings.Replace(q, "%s", "60", 1))
	if r.Status != 200 || len(r.Rows) != 60 || quota["left"] != 40.0 || quota["rows_per_period"] != 100.0 {
		t.Fatalf("first page: %d rows, quota %v: %s", len(r.Rows), quota, r.Body)
	}
	// The next 60 do not fit in the 40 left: refused whole, and counted as
	// one row. Were the refusal free, "nothing, or more than is left" would
	// answer a yes/no question about the rows without end.
	if r, _ := page(strings.Replace(q, "%s", "60 OFFSET 60", 1)); r.Status != 429 || r.Error.Rule != "list.quota" || !strings.Contains(r.Error.Message, "40 are left and this answer has more; it is withheld and counts as one row") || len(r.Rows) != 0 {
		t.Fatalf("second page over the quota: %d %s", r.Status, r.Body)
	}
	if r, quota := page(strings.Replace(q, "%s", "39 OFFSET 60", 1)); r.Status != 200 || len(r.Rows) != 39 || quota["left"] != 0.0 {
		t.Fatalf("the 39 left: %d rows, quota %v: %s", len(r.Rows), quota, r.Body)
	}
	if r, _ := page(strings.Replace(q, "%s", "1 OFFSET 100", 1)); r.Status != 429 || r.Error.Rule != "list.quota" {
		t.Fatalf("past the quota: %d %s", r.Status, r.Body)
	}
	// With the quota spent every query is refused before it runs, the
	// same whether rows would match or not: were empty answers still
	// free, "does a matching row exist?" could be asked without end.
	none, _ := page("SELECT diagnosis FROM visits WHERE diagnosis = 'no such code' LIMIT 1")
	some, _ := page("SELECT diagnosis FROM visits WHERE cost > 10 LIMIT 1")
	if none.Status != 429 || some.Status != 429 || none.Error != some.Error {
		t.Fatalf("with the quota spent, a query matching nothing (%d %s) and one matching rows (%d %s) must be refused alike", none.Status, none.Body, some.Status, some.Body)
	}
	// A dry run reports the quota without spending it.
	plan := h.post(t, "/v1/query/plan", h.tokens["internal@stmary"], []byte(`{"sql": "SELECT diagnosis FROM visits LIMIT 5", "purpose": "care_quality"}`))
	if plan.Status != 200 || !strings.Contains(string(plan.Body), `"left":0`) {
		t.Fatalf("dry run: %d %s", plan.Status, plan.Body)
	}
}
