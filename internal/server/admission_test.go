package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Overload is answered, not queued without end: with room for one query
// at a time and no queue, a burst gets 429s naming the rule, with
// Retry-After, and every request, admitted or not, is audited.
func TestOverloadIsAnsweredAndAudited(t *testing.T) {
	h := newHarness(t, func(dir string) {
		setLimits(dir, "max_concurrent_queries: 1", "max_concurrent_per_principal: 1", "queue_wait: 1ms")
	})
	before := h.node.Audit.Tree().Size()
	const n = 24
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered, refused := 0, 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.query(t, "fraud@partnerbank", "fraud_detection", "", "SELECT merchant, country, count(*), avg(amount) FROM transactions GROUP BY merchant, country")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case r.Status == 200:
				answered++
			case r.Status == 429 && r.Error.Rule == "admission.concurrency" && r.RetryAfter == "1":
				refused++
			default:
				t.Errorf("request %d: %d %s", i, r.Status, r.Body)
			}
		}()
	}
	wg.Wait()
	if answered == 0 || refused == 0 {
		t.Fatalf("%d answered, %d refused: the burst was not limited", answered, refused)
	}
	if got := h.node.Audit.Tree().Size() - before; got != n {
		t.Fatalf("%d audit entries for %d requests", got, n)
	}
	// And counted: the same numbers in /metrics, which a partner may not read.
	m := h.scrape(t, "auditor@regulator")
	for _, want := range []string{
		fmt.Sprintf(`airlock_admission_refused_total{reason="principal_concurrency"} %d`, refused),
		fmt.Sprintf(`airlock_requests_total{channel="http",decision="deny",op="sql.query",rule="admission.concurrency"} %d`, refused),
		fmt.Sprintf(`airlock_requests_total{channel="http",decision="allow",op="sql.query",rule=""} %d`, answered),
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	req, _ := http.NewRequest("GET", h.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+h.tokens["fraud@partnerbank"])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("a partner reading /metrics: %v %v", resp.StatusCode, err)
	}
}

// scrape reads /metrics as principal.
func (h *harness) scrape(t *testing.T, principal string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", h.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+h.tokens[principal])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// setLimits adds settings to the limits section of the workspace's
// airlock.yaml (the demo workspace has one).
func setLimits(dir string, settings ...string) {
	p := filepath.Join(dir, "airlock.yaml")
	b, err := os.ReadFile(p)
	if err != nil || !bytes.Contains(b, []byte("limits:\n")) {
		panic("setLimits: no limits section in " + p)
	}
	add := "limits:\n"
	for _, kv := range settings {
		add += "  " + kv + "\n"
	}
	os.WriteFile(p, bytes.Replace(b, []byte("limits:\n"), []byte(add), 1), 0o644)
}
