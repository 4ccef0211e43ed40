package collab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func rule(err error) string {
	if r, ok := err.(*Refusal); ok {
		return r.Rule
	}
	if err == nil {
		return ""
	}
	return "error: " + err.Error()
}

// TestSignaturesPutInForce: in force only when every member signed this
// hash; any change needs signing again; a leave ends it; templates run
// only when every owner of a table they read approved their hash.
func TestSignaturesPutInForce(t *testing.T) {
	a, b := nodeKey(t, "north"), nodeKey(t, "partner")
	wsA, wsB := t.TempDir(), t.TempDir()
	raw := testCollab(t, a, b)
	for _, ws := range []string{wsA, wsB} {
		os.MkdirAll(Dir(ws), 0o755)
		os.WriteFile(filepath.Join(Dir(ws), "fraud.yaml"), raw, 0o644)
	}
	load := func(ws string) *Collaboration {
		c, err := Load(ws, "fraud")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := load(wsA)
	st := map[string]*Statement{}
	if got := rule(c.InForce(st)); got != "collab.unsigned" {
		t.Errorf("nobody signed: %s", got)
	}
	sa, err := Sign(wsA, c, a)
	if err != nil {
		t.Fatal(err)
	}
	st[a.Name] = sa
	if got := rule(c.InForce(st)); got != "collab.unsigned" {
		t.Errorf("one of two signed: %s", got)
	}
	sb, _ := Sign(wsB, load(wsB), b)
	st[b.Name] = sb
	if err := c.InForce(st); err != nil {
		t.Fatalf("both signed: %v", err)
	}
	// a forged signature
	forged := *sb
	forged.Signature = append([]byte{}, sa.Signature...)
	if got := rule(c.InForce(map[string]*Statement{a.Name: sa, b.Name: &forged})); got != "collab.signature" {
		t.Errorf("forged: %s", got)
	}
	// partnerbank edits its copy: the hash differs from what northbank signed
	os.WriteFile(filepath.Join(Dir(wsB), "fraud.yaml"), append(raw, []byte("# edited\n")...), 0o644)
	cb := load(wsB)
	sb2, _ := Sign(wsB, cb, b)
	if got := rule(cb.InForce(map[string]*Statement{a.Name: sa, b.Name: sb2})); got != "collab.stale" {
		t.Errorf("edited copy: %s", got)
	}
	if got := rule(c.InForce(map[string]*Statement{a.Name: sa, b.Name: sb2})); got != "collab.stale" {
		t.Errorf("northbank's view of the edited signature: %s", got)
	}
	// templates
	tpl := c.Template("overlap")
	if got := rule(c.Approved(tpl, []string{"northbank", "partnerbank"}, st)); got != "collab.template_unapproved" {
		t.Errorf("unapproved template: %s", got)
	}
	sa, _ = Approve(wsA, c, "overlap", a)
	st[a.Name] = sa
	if got := rule(c.Approved(tpl, []string{"northbank", "partnerbank"}, st)); got != "collab.template_unapproved" || !strings.Contains(c.Approved(tpl, []string{"northbank", "partnerbank"}, st).Error(), "partnerbank") {
		t.Errorf("approved by one owner: %v", c.Approved(tpl, []string{"northbank", "partnerbank"}, st))
	}
	os.WriteFile(filepath.Join(Dir(wsB), "fraud.yaml"), raw, 0o644)
	sb, _ = Approve(wsB, load(wsB), "overlap", b)
	st[b.Name] = sb
	if err := c.Approved(tpl, []string{"northbank", "partnerbank"}, st); err != nil {
		t.Errorf("approved by both: %v", err)
	}
	// leave
	left, err := Leave(wsA, c, a, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st[a.Name] = left
	if got := rule(c.InForce(st)); got != "collab.member_left" {
		t.Errorf("after leave: %s", got)
	}
	if _, err := Sign(wsA, c, a); err == nil {
		t.Error("a member that left signed again")
	}
	if again, _ := ReadStatement(wsA, "fraud", a.Name); again.Left == nil || again.Signature != nil {
		t.Errorf("statement after leave: %+v", again)
	}
}

func TestParseRefusesBadFiles(t *testing.T) {
	a, b := nodeKey(t, "north"), nodeKey(t, "partner")
	raw := string(testCollab(t, a, b))
	for name, edit := range map[string][2]string{
		"unknown field":       {"purpose:", "purpse:"},
		"wrong id":            {"id: fraud", "id: other"},
		"unknown ability":     {"[can_receive_results]", "[can_peek]"},
		"epsilon over budget": {"    epsilon: 1\n  partnerbank", "    epsilon: 11\n  partnerbank"},
		"no join keys":        {"join_keys: [counterparty_iban]\n    filters: [is_fraud, amount, country]", "join_keys: []\n    filters: [is_fraud, amount, country]"},
	} {
		if !strings.Contains(raw, edit[0]) {
			t.Fatalf("%s: fixture lacks %q", name, edit[0])
		}
		if _, err := Parse([]byte(strings.Replace(raw, edit[0], edit[1], 1)), "fraud"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
