package cli

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/collab"
	"github.com/airlock-dev/airlock/internal/demo"
)

func airlock(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errw bytes.Buffer
	code := Main(args, &out, &errw)
	return out.String() + errw.String(), code
}

// TestCollabCommands: the demo writes both banks; each signs, approves a
// template, reports its status and leaves, as the README says.
func TestCollabCommands(t *testing.T) {
	dir := t.TempDir()
	if out, code := airlock(t, "demo", "cleanroom", "--rows", "200", dir); code != 0 {
		t.Fatalf("demo cleanroom: %s", out)
	}
	nb := filepath.Join(dir, "northbank")
	out, code := airlock(t, "collab", "status", "--workspace", nb, demo.CleanroomID)
	if code != 0 || !strings.Contains(out, "has not signed") {
		t.Fatalf("status before signing: %d %s", code, out)
	}
	for _, bank := range []string{"northbank", "partnerbank"} {
		ws := filepath.Join(dir, bank)
		if out, code := airlock(t, "collab", "sign", "--workspace", ws, demo.CleanroomID); code != 0 || !strings.Contains(out, "signed collaboration") {
			t.Fatalf("sign %s: %s", bank, out)
		}
		if out, code := airlock(t, "collab", "approve", "--workspace", ws, demo.CleanroomID, "fraud_overlap_by_country"); code != 0 {
			t.Fatalf("approve %s: %s", bank, out)
		}
	}
	out, _ = airlock(t, "collab", "status", "--workspace", nb, demo.CleanroomID)
	if !strings.Contains(out, "signed this hash") || !strings.Contains(out, "fraud_overlap_by_country") || !strings.Contains(out, "yes") {
		t.Errorf("status after signing: %s", out)
	}
	// Both copies are identical, so both signatures are over one hash.
	a, _ := collab.Load(nb, demo.CleanroomID)
	b, _ := collab.Load(filepath.Join(dir, "partnerbank"), demo.CleanroomID)
	if a.Hash() != b.Hash() {
		t.Error("the two banks' copies differ")
	}
	if out, code := airlock(t, "collab", "approve", "--workspace", nb, demo.CleanroomID, "nope"); code != 1 || !strings.Contains(out, "no template nope") {
		t.Errorf("approve an unknown template: %d %s", code, out)
	}
	if out, code := airlock(t, "collab", "leave", "--workspace", nb, demo.CleanroomID); code != 0 || !strings.Contains(out, "left collaboration") {
		t.Fatalf("leave: %s", out)
	}
	if out, code := airlock(t, "collab", "sign", "--workspace", nb, demo.CleanroomID); code != 1 || !strings.Contains(out, "left collaboration") {
		t.Errorf("sign after leaving: %d %s", code, out)
	}
	if _, code := airlock(t, "collab", "query", "--token", "x", demo.CleanroomID); code != 2 {
		t.Errorf("query without sql or template: exit %d", code)
	}
}
