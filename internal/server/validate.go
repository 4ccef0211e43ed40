package server

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/airlock-dev/airlock/internal/engine/duckdb"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Validate checks a workspace: its files (structure and references), its
// policies (they compile and their tests pass) and each manifest against
// its data (file present, every column present and convertible to its
// declared type, privacy unit never NULL). Every problem names its file.
func Validate(ctx context.Context, dir string) (workspace.Problems, error) {
	ws, err := workspace.Load(dir)
	var probs workspace.Problems
	if err != nil {
		ps, ok := err.(workspace.Problems)
		if !ok {
			return nil, err
		}
		probs = append(probs, ps...)
	}
	pol, err := policy.Load(ws.Policies)
	if err != nil {
		probs = append(probs, workspace.Problem{File: "policies/", Msg: err.Error()})
	} else {
		probs = append(probs, PolicyTestProblems(pol, ws)...)
	}
	var declared []string
	for _, p := range ws.Principals {
		for k := range p.Attributes {
			declared = append(declared, k)
		}
	}
	for _, u := range policy.CheckAttributes(ws.Policies, declared) {
		msg := fmt.Sprintf("policies/%s:%d:%d: %s.%s is not an attribute Airlock sends (%s has: %s)", u.File, u.Line, u.Col, u.Var, u.Attr, u.Var, strings.Join(u.Known, ", "))
		if best := workspace.Nearest(u.Attr, u.Known, 3); best != "" {
			msg += fmt.Sprintf("; did you mean %s.%s?", u.Var, best)
		}
		probs = append(probs, workspace.Problem{File: "policies/", Msg: msg})
	}
	eng, err := duckdb.Open(duckdb.Config{MemoryLimit: "1GB"})
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	for _, m := range sortedDatasets(ws) {
		probs = append(probs, checkData(ctx, eng, ws, m)...)
	}
	return probs, nil
}

func lineOf(file, key string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, key) {
			return i + 1
		}
	}
	return 0
}

func checkData(ctx context.Context, eng *duckdb.DB, ws *workspace.Workspace, m *workspace.Manifest) workspace.Problems {
	var ps workspace.Problems
	mf := filepath.Join(ws.Dir, m.File)
	if m.Source.File == "" {
		return nil
	}
	file := m.Source.File
	if !filepath.IsAbs(file) {
		file = filepath.Join(ws.Dir, file)
	}
	if _, err := os.Stat(file); err != nil {
		return append(ps, workspace.Problem{File: m.File, Line: lineOf(mf, "file:"), Msg: fmt.Sprintf("data file %s does not exist", m.Source.File), Fix: "correct source.file"})
	}
	have, err := eng.FileColumns(ctx, file)
	if err != nil {
		return append(ps, workspace.Problem{File: m.Source.File, Msg: "cannot read: " + err.Error()})
	}
	got := map[string]string{}
	var names []string
	for _, c := range have {
		got[strings.ToLower(c.Name)] = c.Type
		names = append(names, c.Name)
	}
	missing := false
	for _, c := range m.Columns {
		if _, ok := got[c.Name]; !ok {
			missing = true
			ps = append(ps, workspace.Problem{File: m.File, Line: lineOf(mf, "name: "+c.Name), Msg: fmt.Sprintf("column %q is not in %s (it has: %s)", c.Name, m.Source.File, strings.Join(names, ", ")), Fix: "rename the column or fix the data file"})
		}
	}
	if missing {
		return ps
	}
	if !strings.EqualFold(filepath.Ext(file), ".parquet") {
		for _, c := range m.Columns {
			if c.Type == "text" {
				continue
			}
			n, line, err := eng.BadValues(ctx, file, c.Name, c.Type)
			if err == nil && n > 0 {
				ps = append(ps, workspace.Problem{File: m.File, Line: lineOf(mf, "name: "+c.Name),
					Msg: fmt.Sprintf("column %q is declared %s but %d value(s) in %s are not (the first on line %d)", c.Name, c.Type, n, m.Source.File, line),
					Fix: "fix the type here or the data"})
			}
		}
		if len(ps) > 0 {
			return ps
		}
	}
	cols := loadSpecs(m)
	if err := eng.LoadTable(ctx, m.Name, file, cols); err != nil {
		return append(ps, workspace.Problem{File: m.Source.File, Msg: "does not match the declared column types: " + firstLine(err.Error()), Fix: "fix the type in " + m.File + " or the data"})
	}
	ps = append(ps, identifyingDimensions(ctx, eng, ws, m, mf)...)
	if m.PrivacyUnit != "" {
		n, err := eng.NullCount(ctx, m.Name, m.PrivacyUnit)
		if err == nil && n > 0 {
			ps = append(ps, workspace.Problem{File: m.Source.File, Msg: fmt.Sprintf("privacy unit column %q has %d NULL values", m.PrivacyUnit, n), Fix: "every row must name its privacy unit; fill or drop those rows"})
		}
	}
	return ps
}

// identifyingDimensions warns of aggregation and DP dimensions that nearly
// identify rows or units (a timestamp with a value per row): grouping or
// filtering by them isolates a few units, which thresholds only hide one
// answer at a time and differencing across answers can undo.
func identifyingDimensions(ctx context.Context, eng *duckdb.DB, ws *workspace.Workspace, m *workspace.Manifest, mf string) workspace.Problems {
	var ps workspace.Problems
	for _, id := range slices.Sorted(maps.Keys(ws.Agreements)) {
		a := ws.Agreements[id]
		r, ok := a.Rules[m.Name]
		if !ok || (r.Kind != workspace.RuleAggregation && r.Kind != workspace.RuleDP) || m.PrivacyUnit == "" {
			continue
		}
		for _, dim := range r.Dimensions {
			distinct, rows, units, err := eng.Distinctness(ctx, m.Name, dim, m.PrivacyUnit)
			if err != nil || rows < 100 {
				continue
			}
			if float64(distinct) >= 0.5*float64(rows) || float64(distinct) >= 0.5*float64(units) {
				ps = append(ps, workspace.Problem{File: a.File, Line: lineOf(filepath.Join(ws.Dir, a.File), "dimensions:"), Warning: true,
					Msg: fmt.Sprintf("dimension %q of dataset %s has %d distinct values over %d rows and %d units: it nearly identifies them, so groups or filters on it isolate a few units", dim, m.Name, distinct, rows, units),
					Fix: "offer it in buckets (a derived column such as the date or month) or drop it from dimensions"})
			}
		}
	}
	return ps
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// PolicyTestProblems runs the workspace's policy tests.
func PolicyTestProblems(pol *policy.Engine, ws *workspace.Workspace) workspace.Problems {
	var ps workspace.Problems
	for _, name := range slices.Sorted(maps.Keys(ws.PolicyTests)) {
		res, err := policy.RunTests(pol, name, ws.PolicyTests[name], PolicyPrincipalLookup(ws), PolicyResourceLookup(ws))
		if err != nil {
			ps = append(ps, workspace.Problem{File: "policies/tests/" + name, Msg: err.Error()})
			continue
		}
		for _, r := range res {
			if !r.Passed {
				ps = append(ps, workspace.Problem{File: "policies/tests/" + name, Line: lineOf(filepath.Join(ws.Dir, "policies", "tests", name), r.Name), Msg: fmt.Sprintf("policy test %q: %s", r.Name, r.Detail)})
			}
		}
	}
	return ps
}

// PolicyPrincipalLookup resolves policy-test principals from the workspace.
func PolicyPrincipalLookup(ws *workspace.Workspace) func(string) (policy.Principal, bool) {
	return func(name string) (policy.Principal, bool) {
		p, ok := ws.Principals[name]
		if !ok {
			return policy.Principal{}, false
		}
		return policy.Principal{Name: p.Name, Org: p.Org, Region: p.Region, Country: p.Country, Clearance: p.Clearance, Roles: p.Roles, Attributes: p.Attributes}, true
	}
}

// PolicyResourceLookup resolves policy-test datasets from the workspace.
func PolicyResourceLookup(ws *workspace.Workspace) func(string) (policy.Resource, bool) {
	return func(name string) (policy.Resource, bool) {
		m, ok := ws.Datasets[name]
		if !ok {
			return policy.Resource{}, false
		}
		return policy.Resource{Name: m.Name, Owner: m.Owner, Tier: m.Tier, Region: m.Region}, true
	}
}
