package server_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/cli"
	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/server"
)

func TestValidateNamesFileLineAndFix(t *testing.T) {
	dir := t.TempDir()
	if err := demo.Init(dir); err != nil {
		t.Fatal(err)
	}
	if probs, err := server.Validate(context.Background(), dir); err != nil || len(probs) != 0 {
		t.Fatalf("the demo workspace must validate: %v %v", probs, err)
	}
	edit := func(rel, old, new string) {
		p := filepath.Join(dir, rel)
		b, _ := os.ReadFile(p)
		if !bytes.Contains(b, []byte(old)) {
			t.Fatalf("%s has no %q", rel, old)
		}
		os.WriteFile(p, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644)
	}
	// A column the data does not have, in the visits manifest.
	edit("datasets/visits.yaml", "name: hospital,", "name: hospitals,")
	// A type the data does not fit, in the transactions manifest.
	edit("datasets/transactions.yaml", "{name: merchant, type: text", "{name: merchant, type: date")
	// Rows without a privacy unit: blank the account of the first two rows.
	csv := filepath.Join(dir, "data", "transactions.csv")
	b, _ := os.ReadFile(csv)
	lines := strings.SplitN(string(b), "\n", 4)
	for i := 1; i <= 2; i++ {
		lines[i] = lines[i][strings.Index(lines[i], ","):]
	}
	os.WriteFile(csv, []byte(strings.Join(lines, "\n")), 0o644)
	// An agreement naming an unknown column.
	edit("agreements/partnerbank-transactions-fraud.yaml", "dimensions: [merchant,", "dimensions: [merchants, merchant,")

	var out, errw bytes.Buffer
	code := cli.Main([]string{"validate", dir}, &out, &errw)
	report := out.String()
	if code == 0 {
		t.Fatalf("validate passed a broken workspace:\n%s", report)
	}
	for _, want := range []string{
		`datasets/visits.yaml:`, `column "hospitals" is not in data/visits.csv`, `(fix: rename the column or fix the data file)`,
		`agreements/partnerbank-transactions-fraud.yaml:`, `unknown column "merchants"`,
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	// Fix the type so the NULL check on the unit is reached.
	edit("datasets/transactions.yaml", "{name: merchant, type: date", "{name: merchant, type: text")
	out.Reset()
	cli.Main([]string{"validate", dir}, &out, &errw)
	if !strings.Contains(out.String(), `privacy unit column "account_id" has 2 NULL values`) {
		t.Errorf("NULL privacy units not reported:\n%s", out.String())
	}
	edit("datasets/transactions.yaml", "{name: merchant, type: text", "{name: merchant, type: date")
	out.Reset()
	cli.Main([]string{"validate", dir}, &out, &errw)
	if !strings.Contains(out.String(), "data/transactions.csv: does not match the declared column types") {
		t.Errorf("type mismatch not reported:\n%s", out.String())
	}
}
