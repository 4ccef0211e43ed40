package server_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/exportop"
	"github.com/airlock-dev/airlock/internal/jsonschema"
	"github.com/airlock-dev/airlock/internal/server"
)

type exportAnswer struct {
	Release exportop.Released `json:"release"`
}

func exportBody(t *testing.T, agreement, purpose string, r exportop.Request) []byte {
	t.Helper()
	b, err := json.Marshal(exportop.Body{Request: r, Purpose: purpose, Agreement: agreement})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kRequest(org, region string, k, l int) exportop.Request {
	return exportop.Request{Dataset: "visits", Destination: exportop.Dest{Org: org, Region: region}, Method: "kanonymity",
		K: k, L: l, MaxSuppression: 0.05, Licence: exportop.Licence{Expires: time.Now().Add(90 * 24 * time.Hour), DUO: []string{"DUO:0000042"}, Attribution: "St Mary's"}}
}

// TestExportReleasesAKAnonymousFileWithAVerifiableRecord: a steward's
// release to an EU research institute is k-anonymous and l-diverse as the
// controls demand, drops the identifiers, is registered, audited, and
// verifies offline against the node key; a changed byte does not.
func TestExportReleasesAKAnonymousFileWithAVerifiableRecord(t *testing.T) {
	h := newHarness(t, nil)
	res := h.post(t, "/v1/exports", h.tokens["steward@stmary"], exportBody(t, "", "research", kRequest("eu-institute", "eu", 20, 3)))
	if res.Status != 200 {
		t.Fatalf("export: %d %.300s", res.Status, res.Body)
	}
	var a exportAnswer
	if err := json.Unmarshal(res.Body, &a); err != nil {
		t.Fatal(err)
	}
	var doc, body any
	json.Unmarshal(mustRead(t, "../httpapi/openapi.json"), &doc)
	json.Unmarshal(res.Body, &body)
	v := jsonschema.Validator{Root: doc.(map[string]any)}
	for _, e := range v.Check(v.Resolve(map[string]any{"$ref": "#/components/schemas/ExportResponse"}), body, "$") {
		t.Errorf("export answer vs openapi.json: %s", e)
	}
	rows, err := csv.NewReader(strings.NewReader(a.Release.CSV)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	header := rows[0]
	for _, id := range []string{"patient_id", "name", "ssn"} {
		for _, c := range header {
			if c == id {
				t.Fatalf("identifier %s released", id)
			}
		}
	}
	col := func(name string) int {
		for i, c := range header {
			if c == name {
				return i
			}
		}
		t.Fatalf("no column %s in %v", name, header)
		return -1
	}
	bd, sex, zip, dx := col("birth_date"), col("sex"), col("zip"), col("diagnosis")
	classes := map[string]int{}
	diagnoses := map[string]map[string]bool{}
	suppressed := 0
	for _, r := range rows[1:] {
		if r[bd] == "*" && r[sex] == "*" && r[zip] == "*" {
			suppressed++
			continue
		}
		k := r[bd] + "|" + r[sex] + "|" + r[zip]
		classes[k]++
		if diagnoses[k] == nil {
			diagnoses[k] = map[string]bool{}
		}
		diagnoses[k][r[dx]] = true
	}
	for k, n := range classes {
		if n < 20 || len(diagnoses[k]) < 3 {
			t.Fatalf("class %q has %d records and %d diagnoses, want ≥ 20 and ≥ 3", k, n, len(diagnoses[k]))
		}
	}
	if float64(suppressed) > 0.05*float64(len(rows)-1) {
		t.Fatalf("%d of %d rows suppressed, over the 5%% limit", suppressed, len(rows)-1)
	}
	pub, err := os.ReadFile(filepath.Join(server.DataDir(h.node.Kernel.Snapshot().WS), "node.pub"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := exportop.Verify([]byte(a.Release.CSV), a.Release.Record, string(pub))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rec.Risk == nil || rec.Risk.Highest > 1.0/20 || rec.Rows != len(rows)-1 || rec.Suppressed != suppressed {
		t.Fatalf("record %+v does not describe the file", rec)
	}
	var licence map[string]any
	json.Unmarshal(rec.Licence, &licence)
	if licence["@type"] != "Agreement" || licence["prohibition"] == nil {
		t.Fatalf("licence %s is not an ODRL agreement prohibiting onward transfer", rec.Licence)
	}
	tampered := []byte(strings.Replace(a.Release.CSV, "\n", "\r\n", 1))
	if _, err := exportop.Verify(tampered, a.Release.Record, string(pub)); !errors.Is(err, exportop.ErrTampered) {
		t.Fatalf("tampered file: got %v, want ErrTampered", err)
	}
	forged := a.Release.Record
	forged.Record = []byte(strings.Replace(string(forged.Record), `"k":20`, `"k":50`, 1))
	if _, err := exportop.Verify([]byte(a.Release.CSV), forged, string(pub)); !errors.Is(err, exportop.ErrSignature) {
		t.Fatalf("edited record: got %v, want ErrSignature", err)
	}
	e := lastEntry(t, h)
	if e.Event != "AL1700I" || e.Extra["release"] != a.Release.ID || e.Extra["release_sha256"] != rec.SHA256 {
		t.Fatalf("audit entry %+v does not record the release", e)
	}
	if reg, err := h.node.Store.ExportReleases(context.Background(), "visits", "eu-institute"); err != nil || len(reg) != 1 || reg[0].ID != a.Release.ID {
		t.Fatalf("registry: %+v %v, want the release", reg, err)
	}
}

// TestExportRefusalsNameTheRule: every control refuses with its rule, and
// each refusal is audited.
func TestExportRefusalsNameTheRule(t *testing.T) {
	h := newHarness(t, nil)
	past := kRequest("eu-institute", "eu", 20, 3)
	past.Licence.Expires = time.Now().Add(-time.Hour)
	long := kRequest("partner", "eu", 20, 3)
	long.Licence.Expires = time.Date(2028, 6, 1, 0, 0, 0, 0, time.UTC)
	usK := kRequest("us-lab", "us", 20, 3)
	synthUS := exportop.Request{Dataset: "visits", Destination: exportop.Dest{Org: "us-lab", Region: "us"}, Method: "synthetic", Epsilon: 3,
		Licence: exportop.Licence{Expires: time.Now().Add(time.Hour)}}
	bigDelta := synthUS
	bigDelta.Epsilon, bigDelta.Delta = 1, 0.5
	tinyEps := synthUS
	tinyEps.Epsilon = 1e-170
	negSupp := kRequest("eu-institute", "eu", 20, 3)
	negSupp.MaxSuppression = -1
	underAgreement := kRequest("partner", "eu", 20, 3)
	underAgreement.Licence.Expires = time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	otherRegion := underAgreement
	otherRegion.Destination.Region = "us"
	for _, tc := range []struct {
		name, principal, agreement string
		req                        exportop.Request
		status                     int
		rule                       string
	}{
		{"k below the tier's bound", "steward@stmary", "", kRequest("eu-institute", "eu", 10, 3), 403, "export.parameters"},
		{"l below the tier's bound", "steward@stmary", "", kRequest("eu-institute", "eu", 20, 2), 403, "export.parameters"},
		{"a jurisdiction not listed", "steward@stmary", "", kRequest("cn-lab", "cn", 50, 3), 403, "export.destination"},
		{"microdata to the us", "steward@stmary", "", usK, 403, "export.method"},
		{"ε above the tier's bound", "steward@stmary", "", synthUS, 403, "export.parameters"},
		{"δ above the dataset's budget", "steward@stmary", "", bigDelta, 403, "export.parameters"},
		{"an ε so small the noise sizes the output", "steward@stmary", "", tinyEps, 403, "export.parameters"},
		{"negative suppression", "steward@stmary", "", negSupp, 403, "export.parameters"},
		{"an org spelled with capitals", "steward@stmary", "", kRequest("EU-Institute", "eu", 20, 3), 400, "export.request"},
		{"an org with a trailing space", "steward@stmary", "", kRequest("eu-institute ", "eu", 20, 3), 400, "export.request"},
		{"an org with a Unicode hyphen", "steward@stmary", "", kRequest("eu\u2010institute", "eu", 20, 3), 400, "export.request"},
		{"a recipient outside the agreement's regions", "analyst@offshore", "partner-visits-research", underAgreement, 403, "agreement.region"},
		{"a recipient declaring another jurisdiction", "analyst@partner", "partner-visits-research", otherRegion, 403, "export.destination"},
		{"licence already expired", "steward@stmary", "", past, 403, "export.licence"},
		{"no authority", "analyst@partner", "", kRequest("partner", "eu", 20, 3), 403, "export.authority"},
		{"to another org under an agreement", "analyst@partner", "partner-visits-research", kRequest("someone-else", "eu", 20, 3), 403, "export.destination"},
		{"licence outlasting the agreement", "analyst@partner", "partner-visits-research", long, 403, "export.licence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := h.post(t, "/v1/exports", h.tokens[tc.principal], exportBody(t, tc.agreement, "research", tc.req))
			if res.Status != tc.status || res.Error.Rule != tc.rule {
				t.Fatalf("got %d %s, want %d %.300s", res.Status, res.Body, tc.status, tc.rule)
			}
			if e := lastEntry(t, h); e.Event != "AL1700W" || e.Rule != tc.rule {
				t.Fatalf("audit entry %s %s, want AL1700W %s", e.Event, e.Rule, tc.rule)
			}
		})
	}
	// Bodies are read as for queries: one object, known fields, a size limit.
	for _, tc := range []struct {
		body   []byte
		status int
		rule   string
	}{
		{[]byte(`{"dataset": "visits", "nonsense": 1}`), 400, "http.body"},
		{append(exportBody(t, "", "research", kRequest("eu-institute", "eu", 20, 3)), []byte(` {"k": 2}`)...), 400, "http.body"},
		{[]byte(`{"dataset": "` + strings.Repeat("x", 2<<20) + `"}`), 413, "http.body_size"},
	} {
		res := h.post(t, "/v1/exports", h.tokens["steward@stmary"], tc.body)
		if res.Status != tc.status || res.Error.Rule != tc.rule {
			t.Fatalf("body %.60q: got %d %.300s, want %d %s", tc.body, res.Status, res.Body, tc.status, tc.rule)
		}
		if e := lastEntry(t, h); e.Event != "AL1700W" || e.Rule != tc.rule {
			t.Fatalf("audit entry %s %s, want AL1700W %s", e.Event, e.Rule, tc.rule)
		}
	}
	// Under the agreement, to the recipient itself, within its term: allowed.
	ok := kRequest("partner", "eu", 20, 3)
	ok.Licence.Expires = time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	if res := h.post(t, "/v1/exports", h.tokens["analyst@partner"], exportBody(t, "partner-visits-research", "research", ok)); res.Status != 200 {
		t.Fatalf("recipient's own release: %d %.300s", res.Status, res.Body)
	}
}

// TestSyntheticExportChargesTheDatasetBudget: a DP synthetic release to
// the us is allowed within ε ≤ 2, charged to the dataset's export budget
// until it is spent.
func TestSyntheticExportChargesTheDatasetBudget(t *testing.T) {
	h := newHarness(t, nil)
	req := exportop.Request{Dataset: "visits", Destination: exportop.Dest{Org: "us-lab", Region: "us"}, Method: "synthetic", Epsilon: 2, Delta: 1e-9,
		Licence: exportop.Licence{Expires: time.Now().Add(time.Hour)}}
	var released int
	for range 10 {
		res := h.post(t, "/v1/exports", h.tokens["steward@stmary"], exportBody(t, "", "research", req))
		if res.Status != 200 {
			if res.Error.Rule != "export.budget" {
				t.Fatalf("release %d: %d %.300s", released+1, res.Status, res.Body)
			}
			break
		}
		released++
		if e := lastEntry(t, h); e.Rho <= 0 || e.Event != "AL1700I" {
			t.Fatalf("entry %+v records no charge", e)
		}
	}
	if released == 0 || released == 10 {
		t.Fatalf("%d synthetic releases at ε = 2 against a budget of ε = 4: the budget must allow some and stop the rest", released)
	}
}

// TestRepeatedReleaseThatWouldLowerKIsRefused: after one k = 20 release to
// an institute, the owner changes the controls to release the zip code
// alone (birth date and sex now dropped); that release is finer in zip,
// and joined row by row with the first (the worst case: the recipient
// links the two) it would leave patients among fewer than 20, so it is
// refused naming the first release. Another
// organisation, which holds no earlier release, may have it.
func TestRepeatedReleaseThatWouldLowerKIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	first := h.post(t, "/v1/exports", h.tokens["steward@stmary"], exportBody(t, "", "research", kRequest("eu-institute", "eu", 20, 3)))
	if first.Status != 200 {
		t.Fatalf("first release: %d %.300s", first.Status, first.Body)
	}
	var a exportAnswer
	json.Unmarshal(first.Body, &a)
	path := filepath.Join(h.dir, "exports.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), "quasi_identifiers: [birth_date, sex, zip]", "quasi_identifiers: [zip]", 1)
	changed = strings.Replace(changed, "drop: [patient_id,", "drop: [birth_date, sex, patient_id,", 1)
	if changed == string(b) {
		t.Fatal("the demo's exports.yaml changed shape")
	}
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.node.Reload(); err != nil {
		t.Fatal(err)
	}
	second := h.post(t, "/v1/exports", h.tokens["steward@stmary"], exportBody(t, "", "research", kRequest("eu-institute", "eu", 20, 3)))
	if second.Status != 403 || second.Error.Rule != "export.linkage" || !strings.Contains(second.Error.Message, a.Release.ID) || !strings.Contains(second.Error.Message, "would leave records among") {
		t.Fatalf("second release to the same institute: %d %.300s, want 403 export.linkage naming %s", second.Status, second.Body, a.Release.ID)
	}
	if e := lastEntry(t, h); e.Event != "AL1700W" || e.Rule != "export.linkage" {
		t.Fatalf("refusal audited as %s %s", e.Event, e.Rule)
	}
	other := h.post(t, "/v1/exports", h.tokens["steward@stmary"], exportBody(t, "", "research", kRequest("other-institute", "eu", 20, 3)))
	if other.Status != 200 {
		t.Fatalf("the same release to an organisation without earlier ones: %d %.300s", other.Status, other.Body)
	}
}

// TestConcurrentReleasesAreJudgedAgainstEachOther: two releases to the
// same institute at once cannot both skip the other's linkage check; the
// registry takes one, and the other is either judged against it (it came
// later) or refused to be retried.
func TestConcurrentReleasesAreJudgedAgainstEachOther(t *testing.T) {
	h := newHarness(t, nil)
	body := exportBody(t, "", "research", kRequest("eu-institute", "eu", 20, 3))
	results := make(chan apiResponse, 2)
	for range 2 {
		go func() { results <- h.post(t, "/v1/exports", h.tokens["steward@stmary"], body) }()
	}
	ok := 0
	for range 2 {
		r := <-results
		switch {
		case r.Status == 200:
			ok++
		case r.Status == 503 && r.Error.Rule == "export.concurrent":
		default:
			t.Fatalf("concurrent release: %d %.300s", r.Status, r.Body)
		}
	}
	reg, err := h.node.Store.ExportReleases(context.Background(), "visits", "eu-institute")
	if err != nil || len(reg) != ok || ok == 0 {
		t.Fatalf("%d released, registry %d (%v)", ok, len(reg), err)
	}
	if ok == 2 {
		var s exportop.Signed
		var second exportop.Record
		json.Unmarshal(reg[1].Record, &s)
		json.Unmarshal(s.Record, &second)
		if second.Risk == nil || second.Risk.JoinedK < 20 {
			t.Fatalf("the second release was not judged against the first: %+v", second.Risk)
		}
	}
}

// TestExportRegistryListsWhatEachMayKnow: the owner's steward sees every
// release of the dataset; a recipient only those to its own organisation.
func TestExportRegistryListsWhatEachMayKnow(t *testing.T) {
	h := newHarness(t, nil)
	if r := h.post(t, "/v1/exports", h.tokens["steward@stmary"], exportBody(t, "", "research", kRequest("eu-institute", "eu", 20, 3))); r.Status != 200 {
		t.Fatalf("steward's release: %d %.300s", r.Status, r.Body)
	}
	own := kRequest("partner", "eu", 20, 3)
	own.Licence.Expires = time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	if r := h.post(t, "/v1/exports", h.tokens["analyst@partner"], exportBody(t, "partner-visits-research", "research", own)); r.Status != 200 {
		t.Fatalf("recipient's release: %d %.300s", r.Status, r.Body)
	}
	var doc any
	json.Unmarshal(mustRead(t, "../httpapi/openapi.json"), &doc)
	v := jsonschema.Validator{Root: doc.(map[string]any)}
	count := func(principal string) []string {
		r := h.get(t, "/v1/exports?dataset=visits", h.tokens[principal])
		if r.Status != 200 {
			t.Fatalf("%s lists: %d %.300s", principal, r.Status, r.Body)
		}
		var body any
		json.Unmarshal(r.Body, &body)
		for _, e := range v.Check(v.Resolve(map[string]any{"$ref": "#/components/schemas/ExportList"}), body, "$") {
			t.Errorf("list vs openapi.json: %s", e)
		}
		var l struct{ Releases []exportop.Signed }
		json.Unmarshal(r.Body, &l)
		var orgs []string
		for _, s := range l.Releases {
			var rec exportop.Record
			json.Unmarshal(s.Record, &rec)
			orgs = append(orgs, rec.Destination.Org)
		}
		if e := lastEntry(t, h); e.Event != "AL1701I" {
			t.Fatalf("list audited as %s", e.Event)
		}
		return orgs
	}
	if got := count("steward@stmary"); len(got) != 2 {
		t.Fatalf("steward sees %v, want both releases", got)
	}
	if got := count("analyst@partner"); len(got) != 1 || got[0] != "partner" {
		t.Fatalf("recipient sees %v, want only its own", got)
	}
	if got := count("fraud@partnerbank"); len(got) != 0 {
		t.Fatalf("an unrelated org sees %v", got)
	}
}

// TestExportThroughTheBinary: the release and its verification as a user
// runs them, with the real server process and the real command line: the
// file verifies against the node.pub on disk, and a file edited by one
// byte does not.
func TestExportThroughTheBinary(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	if err := demo.Init(dir); err != nil {
		t.Fatal(err)
	}
	cmd, url := startBinary(t, bin, dir)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	tok := mintToken(t, dir, "steward@stmary")
	out := filepath.Join(t.TempDir(), "visits-eu.csv")
	run := func(args ...string) (string, error) {
		b, err := exec.Command(bin, args...).CombinedOutput()
		return string(b), err
	}
	if text, err := run("export", "--server", url, "--token", tok, "--purpose", "research", "--dataset", "visits", "--to", "eu-institute@eu",
		"--k", "20", "--l", "3", "--max-suppression", "0.05", "--expires", "2160h", "--output", out); err != nil {
		t.Fatalf("export: %v %s", err, text)
	}
	pub := filepath.Join(dir, ".airlock", "node.pub")
	if text, err := run("export", "verify", "--key", pub, out); err != nil || !strings.Contains(text, "ok: ") || !strings.Contains(text, "in force") {
		t.Fatalf("verify: %v %s", err, text)
	}
	b, _ := os.ReadFile(out)
	b[len(b)-2] ^= 1
	os.WriteFile(out, b, 0o600)
	if text, err := run("export", "verify", "--key", pub, out); err == nil || !strings.Contains(text, "SHA-256 differs") {
		t.Fatalf("verify of an edited file: %v %s", err, text)
	}
	if text, err := run("export", "--server", url, "--token", tok, "--purpose", "research", "--dataset", "visits", "--to", "us-lab@us",
		"--k", "20", "--expires", "2160h", "--output", out+".us"); err == nil || !strings.Contains(text, "export.method") {
		t.Fatalf("microdata to the us: %v %s", err, text)
	}
}
