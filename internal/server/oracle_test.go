package server_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// addHiddenPerson makes the demo workspace at dir its neighbour: the same
// data plus one patient and one account that appear nowhere else (see
// testdata/oracles.yaml).
func addHiddenPerson(dir string) {
	appendRows := func(file string, rows []string) {
		f, err := os.OpenFile(filepath.Join(dir, "data", file), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		f.WriteString(strings.Join(rows, "\n") + "\n")
	}
	var visits, txs []string
	for i := range 50 {
		visits = append(visits, fmt.Sprintf("P9999902,Hidden Person,999-99-9999,1990-01-01,F,12345,Z99.9,St Mary South,south,2024-06-%02d,17.85", i%28+1))
	}
	for i := range 3 {
		txs = append(txs, fmt.Sprintf("A9999902,Hidden Account,DE00999999999999999999,Oracle Shop #001,5999,ZZ,2025-03-0%d 03:03:03,2025-03-0%[1]d,17.85,true", i+1))
	}
	appendRows("visits.csv", visits)
	appendRows("transactions.csv", txs)
}

type oracleProbe struct {
	Name      string `yaml:"name"`
	Principal string `yaml:"principal"`
	Purpose   string `yaml:"purpose"`
	SQL       string `yaml:"sql"`
	Compare   string `yaml:"compare"` // rows | shape (default)
}

// observation is everything a client sees of one answer; the caller
// blanks Rows and Values where noise makes them differ by design.
type observation struct {
	Status  string
	Error   string // HTTP: the whole body without rows; wire: the error message
	Columns []string
	Notes   []string
	Rows    int
	Values  string
	DP      string // wire: the command tag
}

// TestNoOracles: for every probe, a server on the demo data and a server on
// the demo plus one hidden person give answers that cannot be told apart
// except through noise, over HTTP, the wire endpoint and wire COPY, with the data in
// DuckDB and in PostgreSQL.
func TestNoOracles(t *testing.T) {
	b, err := os.ReadFile("../../testdata/oracles.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var suite struct {
		Probes []oracleProbe `yaml:"probes"`
	}
	if err := yaml.Unmarshal(b, &suite); err != nil || len(suite.Probes) < 20 {
		t.Fatalf("oracles.yaml: %v (%d probes)", err, len(suite.Probes))
	}
	engines := map[string]func(t *testing.T) (*harness, *harness){
		"duckdb": func(t *testing.T) (*harness, *harness) {
			return newHarness(t, nil), newHarness(t, addHiddenPerson)
		},
		"postgres": func(t *testing.T) (*harness, *harness) {
			base, err := startHarness(pgWorkspace(t, shared.dir, nil), "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(base.stop)
			neighbour, err := startHarness(pgWorkspace(t, shared.dir, addHiddenPerson), "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(neighbour.stop)
			return base, neighbour
		},
	}
	for _, name := range []string{"duckdb", "postgres"} {
		t.Run(name, func(t *testing.T) {
			base, neighbour := engines[name](t)
			for _, ch := range append(channels, copyChannel) {
				for _, p := range suite.Probes {
					if p.Principal == "" {
						p.Principal, p.Purpose = "analyst@partner", "research"
					}
					a, b := observe(t, base, ch, p), observe(t, neighbour, ch, p)
					if p.Compare != "rows" {
						a.Rows, a.Values, b.Rows, b.Values = 0, "", 0, ""
						a.DP, b.DP = "", "" // the command tag counts rows
					}
					if !reflect.DeepEqual(a, b) {
						t.Errorf("%s over %s: the hidden person is visible\n  without: %+v\n  with:    %+v", p.Name, ch.name, a, b)
					}
					if a.Status == "500" || a.Status == "XX000" {
						t.Errorf("%s over %s: internal error %s", p.Name, ch.name, a.Error)
					}
				}
			}
		})
	}
}

// observe is everything a client of the channel sees of one answer,
// except what differs by design between any two requests (the request id,
// the budget's refresh time).
func observe(t *testing.T, h *harness, ch channel, p oracleProbe) observation {
	t.Helper()
	r := ch.ask(t, h, p.Principal, p.Purpose, "", p.SQL)
	o := observation{Rows: len(r.Rows), Values: fmt.Sprint(r.Rows), Notes: r.Notices, DP: r.Tag}
	if ch.name == "http" {
		// The whole body counts, except the row values of noisy answers
		// (compared or not by the caller).
		var body map[string]any
		json.Unmarshal(r.Raw, &body)
		delete(body, "rows")
		delete(body, "request_id")
		// A function of the workspace files, not of the data; the two
		// PostgreSQL deployments name different schemas in their manifests.
		delete(body, "workspace_version")
		if e, ok := body["error"].(map[string]any); ok {
			delete(e, "request_id")
		}
		if dp, ok := body["dp"].(map[string]any); ok {
			delete(dp, "budget_refresh")
		}
		whole, _ := json.Marshal(body)
		o.Status, o.Error = fmt.Sprint(r.Status), string(whole)
		return o
	}
	o.Status, o.Columns = "ok", r.Columns
	if r.SQLState != "" {
		o.Status, o.Error = r.SQLState, r.Message+" (rule "+r.Rule+")"
		o.Columns, o.Rows, o.Values = nil, 0, ""
	}
	return o
}
