package internal_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/airlock-dev/airlock/internal/"

type goPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
	CgoFiles   []string
}

// listPackages is `go list -deps -json` of every package of the module.
func listPackages(t *testing.T) map[string]goPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]goPackage{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p goPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module)] = p
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	return pkgs
}

func internalOnly(paths []string) []string {
	var out []string
	for _, p := range paths {
		if rest, ok := strings.CutPrefix(p, module); ok {
			out = append(out, rest)
		}
	}
	return out
}

// TestDependencyRules fails the build on an import that breaks the
// layering ARCHITECTURE.md describes (in the manner of tailscale's
// deptest): cgo in one package, channels over the kernel only, the engine
// below the planner, the kernel ignorant of its operations, no networking
// in DP or policy.
func TestDependencyRules(t *testing.T) {
	pkgs := listPackages(t)
	for name, p := range pkgs {
		if len(p.CgoFiles) > 0 && name != "engine/duckdb" {
			t.Errorf("%s uses cgo; only engine/duckdb may", name)
		}
	}
	rules := []struct {
		pkgs   []string
		direct bool // direct imports only (else: every dependency)
		forbid []string
		why    string
	}{
		{[]string{"httpapi", "pgwire"}, true, []string{"query", "store", "store/sqlite", "store/postgres", "engine", "engine/duckdb", "engine/postgres", "policy", "dp", "workspace"},
			"channels decode into kernel requests and encode results; planning, storage, engines and policy sit behind the kernel"},
		{[]string{"engine", "engine/duckdb", "engine/postgres"}, false, []string{"query", "sqlop", "govern", "catalog", "policy"},
			"the engine runs SQL it is given; it does not know the planner"},
		{[]string{"govern"}, false, []string{"sqlop", "query", "catalog", "adminop", "engine", "engine/duckdb", "engine/postgres", "httpapi", "pgwire", "cli", "server"},
			"the kernel runs operations through interfaces; it knows no operation and no channel"},
		{[]string{"share"}, false, nil, "share is the vocabulary everything imports; it imports nothing of Airlock"},
		{[]string{"dp", "policy", "anon", "risk", "synth"}, false, []string{"net", "net/http", "crypto/tls", "net/rpc"},
			"mechanisms, policy and the anonymisation cores decide offline; no networking"},
		{[]string{"anon", "risk", "synth"}, false, []string{"govern", "store", "engine", "workspace", "policy"},
			"the anonymisation cores work on tables alone (the CLI runs them offline); governance is exportop's"},
		{[]string{"psi", "secagg", "fl"}, false, []string{"net", "net/http", "crypto/tls", "govern", "store", "engine", "workspace", "policy", "federation"},
			"the private-join and secure-aggregation protocols are messages in, messages out: no networking, no governance (their operations carry and govern them)"},
		{[]string{"sqlop", "adminop", "catalog", "exportop", "collab", "fedjob"}, true, []string{"httpapi", "pgwire", "cli", "server"},
			"operations do not know the channel that carries them"},
	}
	for _, r := range rules {
		for _, name := range r.pkgs {
			p, ok := pkgs[name]
			if !ok {
				t.Errorf("package %s is gone: update the rule (%s)", name, r.why)
				continue
			}
			deps := p.Deps
			if r.direct {
				deps = p.Imports
			}
			if name == "share" {
				if got := internalOnly(deps); len(got) > 0 {
					t.Errorf("share imports %v: %s", got, r.why)
				}
				continue
			}
			for _, d := range deps {
				short := strings.TrimPrefix(d, module)
				if slices.Contains(r.forbid, short) {
					t.Errorf("%s imports %s: %s", name, short, r.why)
				}
			}
		}
	}
}
