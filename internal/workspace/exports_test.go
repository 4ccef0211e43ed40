package workspace_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// TestExportsAreCheckedAgainstTheDatasets: every name exports.yaml uses
// must exist, with the line it is on.
func TestExportsAreCheckedAgainstTheDatasets(t *testing.T) {
	dir := t.TempDir()
	if err := demo.Init(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := workspace.Load(dir); err != nil {
		t.Fatalf("the demo's exports.yaml: %v", err)
	}
	bad := `datasets:
  nosuch: {quasi_identifiers: [a], generalise: {a: prefix}}
  visits:
    quasi_identifiers: [birth_date, sex, shoe_size]
    generalise: {birth_date: date}
    sensitive: diagnosis
    drop: [patient_id, sex]
    budget: {epsilon: 0, delta: 1.0e-6}
tiers:
  restricted:
    - to: [eu]
      methods:
        - {method: kanonymity, min_k: 1}
        - {method: teleport}
        - {method: synthetic}
`
	if err := os.WriteFile(filepath.Join(dir, workspace.ExportsFile), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := workspace.Load(dir)
	probs, ok := err.(workspace.Problems)
	if !ok {
		t.Fatalf("got %v, want Problems", err)
	}
	var got []string
	for _, p := range probs.Errors() {
		if p.File == workspace.ExportsFile {
			got = append(got, p.Msg)
			if p.Line == 0 {
				t.Errorf("%q has no line", p.Msg)
			}
		}
	}
	text := strings.Join(got, "\n")
	for _, want := range []string{`no dataset "nosuch"`, `quasi-identifier column "shoe_size" does not exist`, `"sex" has no generalise rule`,
		`"sex" is a quasi-identifier and also dropped`, "export budget needs ε > 0", "min_k ≥ 2", `unknown method "teleport"`, "max_epsilon > 0"} {
		if !strings.Contains(text, want) {
			t.Errorf("no problem %q among:\n%s", want, text)
		}
	}
}
