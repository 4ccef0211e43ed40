package reference

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/airlock-dev/airlock/internal/jsonschema"
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

// TestDemoFilesMatchTheSchemas: the files an editor would check against
// the JSON Schemas (the demo's, written by airlock demo init) pass them,
// so the schemas describe what the loader reads.
func TestDemoFilesMatchTheSchemas(t *testing.T) {
	_, schemas, err := Generate("..", "../../demo/workspace")
	if err != nil {
		t.Fatal(err)
	}
	check := func(schemaName, file string) {
		var schema map[string]any
		if err := json.Unmarshal(schemas[schemaName], &schema); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := yaml.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		for _, e := range (jsonschema.Validator{Root: schema}).Check(schema, jsonValue(v), "$") {
			t.Errorf("%s: %s", file, e)
		}
	}
	demo := "../../demo/workspace"
	check("airlock.schema.json", filepath.Join(demo, "airlock.yaml"))
	check("principals.schema.json", filepath.Join(demo, "principals.yaml"))
	for _, kind := range []string{"datasets", "agreements"} {
		files, _ := filepath.Glob(filepath.Join(demo, kind, "*.yaml"))
		if len(files) == 0 {
			t.Fatalf("no demo %s", kind)
		}
		for _, f := range files {
			check(map[string]string{"datasets": "dataset.schema.json", "agreements": "agreement.schema.json"}[kind], f)
		}
	}
	// And a file with a typo fails them.
	var schema map[string]any
	json.Unmarshal(schemas["agreement.schema.json"], &schema)
	bad := map[string]any{"id": "x", "rules": map[string]any{"d": map[string]any{"kindd": "aggregation"}}}
	if len((jsonschema.Validator{Root: schema}).Check(schema, bad, "$")) == 0 {
		t.Fatal("the agreement schema accepts an unknown key")
	}
}

// jsonValue is a decoded YAML value as JSON would decode it (times as
// RFC 3339 text, numbers as float64).
func jsonValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = jsonValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	case time.Time:
		return x.Format(time.RFC3339)
	case int:
		return float64(x)
	}
	return v
}
