package server_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/jsonschema"
)

// TestOpenAPIDocumentMatchesTheServer: GET /v1/openapi.json documents
// exactly the routes the node registers, and real responses of every
// endpoint, answers and refusals, conform to the schemas it gives (no
// field undocumented, none missing that it requires).
func TestOpenAPIDocumentMatchesTheServer(t *testing.T) {
	h := newHarness(t, nil)
	r := h.get(t, "/v1/openapi.json", "")
	var doc map[string]any
	if r.Status != 200 || json.Unmarshal(r.Body, &doc) != nil || doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi.json: %d %.200s", r.Status, r.Body)
	}
	paths := doc["paths"].(map[string]any)
	var documented, served []string
	for p, ops := range paths {
		for m := range ops.(map[string]any) {
			documented = append(documented, strings.ToUpper(m)+" "+p)
		}
	}
	served = append(served, h.node.Routes()...)
	sort.Strings(documented)
	sort.Strings(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("documented routes\n  %v\nserved routes\n  %v", documented, served)
	}
	v := jsonschema.Validator{Root: doc}
	analyst, steward, auditor := h.tokens["analyst@partner"], h.tokens["steward@stmary"], h.tokens["auditor@regulator"]
	for _, c := range []struct {
		method, path, docPath, token, body string
		status                             int
	}{
		{"POST", "/v1/query", "/v1/query", analyst, `{"sql": "SELECT region, count(*) FROM visits GROUP BY region", "purpose": "research"}`, 200},
		{"POST", "/v1/query", "/v1/query", h.tokens["internal@stmary"], `{"sql": "SELECT diagnosis, cost FROM visits ORDER BY cost LIMIT 3", "purpose": "care_quality"}`, 200},
		{"POST", "/v1/query", "/v1/query", h.tokens["fraud@partnerbank"], `{"sql": "SELECT country, count(*) FROM transactions WHERE mcc = $1 GROUP BY country", "purpose": "fraud_detection", "params": ["5814"]}`, 200},
		{"POST", "/v1/query", "/v1/query", analyst, `{"sql": "SELECT name FROM visits", "purpose": "research"}`, 422},
		{"POST", "/v1/query", "/v1/query", analyst, `{"sql": "SELECT count(*) FROM visits", "purpose": "marketing"}`, 403},
		{"POST", "/v1/query", "/v1/query", analyst, `{"bad": 1}`, 400},
		{"POST", "/v1/query", "/v1/query", "", `{}`, 401},
		{"POST", "/v1/query/plan", "/v1/query/plan", analyst, `{"sql": "SELECT region, count(*) FROM visits GROUP BY region", "purpose": "research"}`, 200},
		{"GET", "/v1/datasets", "/v1/datasets", analyst, "", 200},
		{"GET", "/v1/audit?limit=5", "/v1/audit", steward, "", 200},
		{"GET", "/v1/audit", "/v1/audit", analyst, "", 403},
		{"GET", "/v1/audit/entries?start=0&end=3", "/v1/audit/entries", auditor, "", 200},
		{"GET", "/v1/audit/proof/inclusion?index=0&size=2", "/v1/audit/proof/inclusion", analyst, "", 200},
		{"GET", "/v1/audit/proof/consistency?from=1&to=2", "/v1/audit/proof/consistency", analyst, "", 200},
		{"GET", "/v1/whoami", "/v1/whoami", analyst, "", 200},
		{"GET", "/healthz", "/healthz", "", "", 200},
		{"GET", "/readyz", "/readyz", "", "", 200},
		{"POST", "/v1/agreements/partner-visits-research/revoke", "/v1/agreements/{id}/revoke", analyst, "", 403},
		{"POST", "/v1/agreements/partner-visits-expired/revoke?reason=test", "/v1/agreements/{id}/revoke", steward, "", 200},
	} {
		resp := h.do(t, c.method, c.path, c.token, []byte(c.body))
		if resp.Status != c.status {
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, resp.Status, c.status, resp.Body)
			continue
		}
		op, _ := paths[c.docPath].(map[string]any)[strings.ToLower(c.method)].(map[string]any)
		rs, ok := op["responses"].(map[string]any)[fmt.Sprint(c.status)]
		if !ok {
			t.Errorf("%s %s: status %d is not documented", c.method, c.docPath, c.status)
			continue
		}
		schema := v.Resolve(rs.(map[string]any))["content"].(map[string]any)["application/json"].(map[string]any)["schema"]
		var body any
		if err := json.Unmarshal(resp.Body, &body); err != nil {
			t.Errorf("%s %s: not JSON: %s", c.method, c.path, resp.Body)
			continue
		}
		for _, e := range v.Check(schema.(map[string]any), body, "$") {
			t.Errorf("%s %s (%d): %s", c.method, c.path, c.status, e)
		}
	}
}
