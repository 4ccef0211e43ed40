package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/exportop"
	"github.com/airlock-dev/airlock/internal/federation"
)

const adult = "../anon/testdata/adult"

func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errw bytes.Buffer
	code := Main(args, &out, &errw)
	return out.String() + errw.String(), code
}

// The command reproduces ARX's published optimum for k = 5 with 4%
// suppression (TestAnonymizationKAnonymity case 0) and writes a file in
// which every kept class has at least 5 records.
func TestAnonymizeCommand(t *testing.T) {
	outFile := filepath.Join(t.TempDir(), "out.csv")
	text, code := run(t, "anonymize", "--input", adult+"/adult.csv", "--hierarchies", adult, "--k", "5", "--max-suppression", "0.04", "--output", outFile, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, text)
	}
	var rep struct {
		Levels     []int   `json:"levels"`
		Loss       float64 `json:"loss"`
		Suppressed int     `json:"suppressed"`
	}
	if err := json.Unmarshal([]byte(text), &rep); err != nil {
		t.Fatalf("%v: %s", err, text)
	}
	if want := []int{1, 0, 1, 1, 3, 2, 2, 0, 1}; !equalInts(rep.Levels, want) || rep.Loss < 255559.854 || rep.Loss > 255559.855 {
		t.Fatalf("levels %v loss %v, ARX %v 255559.85455731067", rep.Levels, rep.Loss, want)
	}
	b, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	classes, stars := map[string]int{}, 0
	for _, l := range lines[1:] {
		if strings.Count(l, "*") == 9 && strings.Trim(l, "*;") == "" {
			stars++
			continue
		}
		classes[l]++
	}
	for c, n := range classes {
		if n < 5 {
			t.Fatalf("class %q has %d rows", c, n)
		}
	}
	if stars != rep.Suppressed || len(lines)-1 != 30162 {
		t.Fatalf("%d suppressed rows in the file, %d reported; %d rows", stars, rep.Suppressed, len(lines)-1)
	}
	if text, code := run(t, "anonymize", "--input", adult+"/adult.csv", "--hierarchies", adult, "--k", "5", "--metric", "bogus"); code != 1 || !strings.Contains(text, "unknown metric") {
		t.Fatalf("a bad metric: exit %d %s", code, text)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRiskCommand(t *testing.T) {
	text, code := run(t, "risk", "--input", adult+"/adult.csv", "--sampling-fraction", "0.1", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, text)
	}
	var r struct {
		Prosecutor struct{ Average float64 }
		Population struct {
			Uniques float64
			Model   string
		}
	}
	json.Unmarshal([]byte(text), &r)
	if r.Prosecutor.Average != 0.6465751607983555 || int(r.Population.Uniques*10000) != 2768 || r.Population.Model != "pitman" {
		t.Fatalf("got %+v, ARX 0.6465751607983555 and 0.27684993883653597 (Pitman)", r)
	}
}

func TestSynthesizeCommand(t *testing.T) {
	outFile := filepath.Join(t.TempDir(), "syn.csv")
	text, code := run(t, "synthesize", "--input", adult+"/adult.csv", "--hierarchies", adult, "--epsilon", "1", "--output", outFile)
	if code != 0 || !strings.Contains(text, "marginal error") {
		t.Fatalf("exit %d: %s", code, text)
	}
	b, _ := os.ReadFile(outFile)
	header, _, _ := strings.Cut(string(b), "\n")
	if header != "sex;age;race;marital-status;education;native-country;workclass;occupation;salary-class" {
		t.Fatalf("header %q", header)
	}
}

func TestExportVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	skey, vkey, err := audit.LoadOrCreateKey(dir, "stmary")
	if err != nil {
		t.Fatal(err)
	}
	key, err := federation.ParseSigner(skey, vkey)
	if err != nil {
		t.Fatal(err)
	}
	file := []byte("sex,zip\n*,123**\n")
	rec := exportop.Record{V: 1, ID: "rel-1", Dataset: "visits", Node: "stmary", Method: "kanonymity", SHA256: sha(file), Licence: json.RawMessage(`{}`), Lineage: json.RawMessage(`{}`)}
	s, err := exportop.Sign(key, rec)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "visits.csv")
	os.WriteFile(path, file, 0o600)
	// Pretty-printed, as someone may keep it: it still verifies.
	sb, _ := json.MarshalIndent(s, "", "  ")
	os.WriteFile(path+".record.json", sb, 0o600)
	pub := filepath.Join(dir, "node.pub")
	os.WriteFile(pub, []byte(vkey+"\n"), 0o600)
	if text, code := run(t, "export", "verify", "--key", pub, path); code != 0 || !strings.Contains(text, "ok: ") {
		t.Fatalf("a genuine file: exit %d %s", code, text)
	}
	os.WriteFile(path, []byte("sex,zip\nF,12345\n"), 0o600)
	if text, code := run(t, "export", "verify", "--key", pub, path); code != 1 || !strings.Contains(text, "SHA-256 differs") {
		t.Fatalf("a tampered file: exit %d %s", code, text)
	}
	_, other, _ := audit.LoadOrCreateKey(t.TempDir(), "stmary")
	os.WriteFile(path, file, 0o600)
	if text, code := run(t, "export", "verify", "--key", other, path); code != 1 || !strings.Contains(text, "signature") {
		t.Fatalf("another node's key: exit %d %s", code, text)
	}
	// A genuine release whose licence has ended verifies, and says so.
	rec.Licence = json.RawMessage(`{"permission":[{"action":"use","constraint":[{"leftOperand":"dateTime","operator":"lt","rightOperand":{"@value":"2020-01-01T00:00:00Z","@type":"xsd:dateTime"}}]}]}`)
	s, _ = exportop.Sign(key, rec)
	sb, _ = json.Marshal(s)
	os.WriteFile(path+".record.json", sb, 0o600)
	if text, code := run(t, "export", "verify", "--key", pub, path); code != 0 || !strings.Contains(text, "licence until 2020-01-01T00:00:00Z: EXPIRED") {
		t.Fatalf("an expired licence: exit %d %s", code, text)
	}
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestRiskWithAPopulation: a sample of the Adult rows against all of them
// as the population gives the journalist's and marketer's risks.
func TestRiskWithAPopulation(t *testing.T) {
	b, err := os.ReadFile(adult + "/adult.csv")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	sample := filepath.Join(t.TempDir(), "sample.csv")
	os.WriteFile(sample, []byte(strings.Join(lines[:3001], "\n")+"\n"), 0o600)
	text, code := run(t, "risk", "--input", sample, "--population", adult+"/adult.csv", "--qi", "sex,age,race", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, text)
	}
	var r struct {
		Prosecutor struct{ Highest, Average float64 }
		Journalist *struct{ Highest, Average, Marketer float64 }
	}
	json.Unmarshal([]byte(text), &r)
	if r.Journalist == nil || r.Journalist.Highest > r.Prosecutor.Highest || r.Journalist.Average >= r.Prosecutor.Average/2 || r.Journalist.Marketer <= 0 {
		t.Fatalf("journalist %+v vs prosecutor %+v: a population ten times the sample lowers the average risk", r.Journalist, r.Prosecutor)
	}
	if text, code := run(t, "risk", "--input", adult+"/adult.csv", "--population", sample, "--qi", "sex,age,race"); code != 1 || !strings.Contains(text, "not a superset") {
		t.Fatalf("a population smaller than the sample: exit %d %s", code, text)
	}
}
