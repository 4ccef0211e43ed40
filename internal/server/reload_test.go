package server_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A workspace edit that does not load is never silent: /readyz names the
// file and line, a metric says so, the previous workspace stays in force,
// and fixing the file clears it all. Every answer names the workspace
// version it was decided under, which changes with any decisive file.
func TestBrokenWorkspaceEditIsReportedAndKeepsThePrevious(t *testing.T) {
	h := newHarness(t, nil)
	ready := func() map[string]any {
		r := h.get(t, "/readyz", "")
		var body map[string]any
		json.Unmarshal(r.Body, &body)
		return body
	}
	q := func() apiResponse {
		return h.query(t, "fraud@partnerbank", "fraud_detection", "", "SELECT country, count(*) FROM transactions GROUP BY country")
	}
	before := q()
	var v1 struct {
		WorkspaceVersion string `json:"workspace_version"`
	}
	json.Unmarshal(before.Body, &v1)
	if before.Status != 200 || !strings.HasPrefix(v1.WorkspaceVersion, "sha256:") || ready()["workspace_version"] != v1.WorkspaceVersion {
		t.Fatalf("before: %d %s; readyz %v", before.Status, before.Body, ready())
	}
	file := filepath.Join(h.dir, "agreements", "partnerbank-transactions-fraud.yaml")
	good, _ := os.ReadFile(file)
	if err := os.WriteFile(file, []byte(strings.Replace(string(good), "kind: aggregation", "kind: aggregaton", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ready()["workspace_reload_error"] != nil })
	msg := ready()["workspace_reload_error"].(string)
	if !strings.Contains(msg, "agreements/partnerbank-transactions-fraud.yaml:") || !strings.Contains(msg, "aggregaton") {
		t.Fatalf("reload error %q: want the file, the line and the bad value", msg)
	}
	if !strings.Contains(h.scrape(t, "auditor@regulator"), "airlock_workspace_reload_failing 1") {
		t.Fatal("no metric shows the failing reload")
	}
	if r := q(); r.Status != 200 {
		t.Fatalf("the previous workspace must stay in force: %d %s", r.Status, r.Body)
	}
	// An agreement-only edit changes the version in the answers.
	fixed := strings.Replace(string(good), "description:", "description: amended —", 1)
	if err := os.WriteFile(file, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ready()["workspace_reload_error"] == nil })
	var v2 struct {
		WorkspaceVersion string `json:"workspace_version"`
	}
	json.Unmarshal(q().Body, &v2)
	if v2.WorkspaceVersion == v1.WorkspaceVersion || !strings.Contains(h.scrape(t, "auditor@regulator"), "airlock_workspace_reload_failing 0") {
		t.Fatalf("after the fix: version %s (was %s)", v2.WorkspaceVersion, v1.WorkspaceVersion)
	}
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
