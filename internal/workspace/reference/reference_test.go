package reference

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReferenceIsCurrent: the checked-in reference and schemas are what
// the loader's definitions generate. Regenerate with `make reference`.
func TestReferenceIsCurrent(t *testing.T) {
	md, schemas, err := Generate("..", "../../demo/workspace")
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("AIRLOCK_WRITE_REFERENCE") != "" {
		os.WriteFile("../../../docs/workspace-reference.md", []byte(md), 0o644)
		os.MkdirAll("../../../docs/schema", 0o755)
		for name, b := range schemas {
			os.WriteFile(filepath.Join("../../../docs/schema", name), b, 0o644)
		}
		return
	}
	if got, _ := os.ReadFile("../../../docs/workspace-reference.md"); string(got) != md {
		t.Error("docs/workspace-reference.md is out of date with internal/workspace: run make reference")
	}
	for name, b := range schemas {
		if got, _ := os.ReadFile(filepath.Join("../../../docs/schema", name)); string(got) != string(b) {
			t.Errorf("docs/schema/%s is out of date: run make reference", name)
		}
	}
	// Every key is explained.
	for _, f := range Files {
		var fields []field
		src, _ := parseSource("..")
		walk(f.Type, "", src, &fields)
		for _, fd := range fields {
			if fd.doc == "" {
				t.Errorf("%s: key %s has no doc comment in internal/workspace", f.Path, fd.path)
			}
		}
	}
}
