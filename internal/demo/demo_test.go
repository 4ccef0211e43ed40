package demo

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"testing"

	"github.com/airlock-dev/airlock/internal/workspace"
)

func TestInitIsDeterministicAndValid(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if err := Init(a); err != nil {
		t.Fatal(err)
	}
	if err := Init(b); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"data/visits.csv", "data/transactions.csv", "agreements/partner-visits-research.yaml"} {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Fatalf("%s differs between two runs", f)
		}
	}
	ws, err := workspace.Load(a)
	if err != nil {
		t.Fatalf("demo workspace does not load: %v", err)
	}
	if len(ws.Datasets) != 2 || len(ws.Agreements) != 4 || len(ws.Principals) != 7 {
		t.Fatalf("got %d datasets, %d agreements, %d principals", len(ws.Datasets), len(ws.Agreements), len(ws.Principals))
	}
	if err := Init(a); err != nil {
		t.Fatalf("re-init of a demo workspace: %v", err)
	}
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "x"), []byte("x"), 0o644)
	if err := Init(other); err == nil {
		t.Fatal("Init overwrote a non-demo directory")
	}
}

func TestVisitsShape(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteVisitsCSV(&buf, 20000, 5000, 7); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 20001 {
		t.Fatalf("got %d records", len(recs))
	}
	perPatient := map[string]int{}
	for _, r := range recs[1:] {
		if r[0] == "" {
			t.Fatal("empty privacy unit")
		}
		perPatient[r[0]]++
	}
	maxVisits := 0
	for _, n := range perPatient {
		maxVisits = max(maxVisits, n)
	}
	if len(perPatient) != 5000 || maxVisits < 20 {
		t.Fatalf("%d patients, heaviest has %d visits; want 5000 and a skewed tail", len(perPatient), maxVisits)
	}
}
