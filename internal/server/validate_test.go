package server_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/cli"
	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/server"
)

// editWorkspaceFile replaces the first old with new in a workspace file,
// failing if old is not there.
func editWorkspaceFile(t *testing.T, dir, rel, old, new string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	b, _ := os.ReadFile(p)
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s has no %q", rel, old)
	}
	os.WriteFile(p, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644)
}

func TestValidateNamesFileLineAndFix(t *testing.T) {
	dir := t.TempDir()
	if err := demo.Init(dir); err != nil {
		t.Fatal(err)
	}
	probs, err := server.Validate(context.Background(), dir)
	if err != nil || len(probs.Errors()) != 0 {
		t.Fatalf("the demo workspace must validate: %v %v", probs, err)
	}
	if len(probs) != 0 {
		t.Fatalf("the demo offers no near-identifying dimension, yet: %v", probs)
	}
	edit := func(rel, old, new string) { editWorkspaceFile(t, dir, rel, old, new) }
	// Offering ts raw again is warned of: a timestamp per transaction lets
	// groups and filters isolate a few accounts (differencing, issue 13).
	edit("agreements/partnerbank-transactions-fraud.yaml", "country, day,", "country, day, ts,")
	probs, err = server.Validate(context.Background(), dir)
	if err != nil || len(probs) != 1 || !probs[0].Warning || !strings.Contains(probs[0].String(), `warning: agreements/partnerbank-transactions-fraud.yaml:`) || !strings.Contains(probs[0].Msg, `dimension "ts" of dataset transactions`) {
		t.Fatalf("warnings: %v %v", probs, err)
	}
	edit("agreements/partnerbank-transactions-fraud.yaml", "country, day, ts,", "country, day,")
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
	// The data does not fit the declared type: the column, its manifest
	// line and the first offending data line are named.
	if !regexp.MustCompile(`datasets/transactions\.yaml:\d+: column "merchant" is declared date but \d+ value\(s\) in data/transactions\.csv are not \(the first on line 2\)`).MatchString(out.String()) {
		t.Errorf("type mismatch not reported with column and lines:\n%s", out.String())
	}
}

// validate explains the other common mistakes where they are: an unknown
// key with the nearest known one, a bad date with its line, and a Cedar
// attribute that Airlock never sends (which no policy test may exercise).
func TestValidateSuggestsAndLocates(t *testing.T) {
	dir := t.TempDir()
	if err := demo.Init(dir); err != nil {
		t.Fatal(err)
	}
	edit := func(rel, old, new string) { editWorkspaceFile(t, dir, rel, old, new) }
	report := func() string {
		var out, errw bytes.Buffer
		if cli.Main([]string{"validate", dir}, &out, &errw) == 0 {
			t.Fatalf("validate passed a broken workspace:\n%s", out.String())
		}
		return out.String()
	}
	edit("agreements/partnerbank-transactions-fraud.yaml", "    kind: aggregation", "    kindd: aggregation")
	if r := report(); !regexp.MustCompile(`agreements/partnerbank-transactions-fraud\.yaml:\d+: field kindd not found.*did you mean "kind"\?`).MatchString(r) {
		t.Errorf("unknown key:\n%s", r)
	}
	edit("agreements/partnerbank-transactions-fraud.yaml", "    kindd: aggregation", "    kind: aggregation")
	edit("agreements/partnerbank-transactions-fraud.yaml", "valid_from: 2026-01-01T00:00:00Z", "valid_from: 2026-13-01")
	if r := report(); !regexp.MustCompile(`agreements/partnerbank-transactions-fraud\.yaml:\d+: parsing time "2026-13-01"`).MatchString(r) {
		t.Errorf("bad date:\n%s", r)
	}
	edit("agreements/partnerbank-transactions-fraud.yaml", "valid_from: 2026-13-01", "valid_from: 2026-01-01T00:00:00Z")
	edit("policies/base.cedar", `when { principal.clearance == "none"`, `when { principal.clearence == "none"`)
	if r := report(); !regexp.MustCompile(`policies/base\.cedar:\d+:\d+: principal\.clearence is not an attribute Airlock sends .*did you mean principal\.clearance\?`).MatchString(r) {
		t.Errorf("Cedar attribute typo:\n%s", r)
	}
}
