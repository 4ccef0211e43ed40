package server_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkFederatedAggregate: the federation demo's aggregate over three
// members of N rows each, against the same query on one node holding all
// 3N rows under the same (threshold) rule, side by side in one run.
// AIRLOCK_BENCH_ROWS sets N (default 200000).
func BenchmarkFederatedAggregate(b *testing.B) {
	rows := 200_000
	if v, err := strconv.Atoi(os.Getenv("AIRLOCK_BENCH_ROWS")); err == nil {
		rows = v
	}
	var f *federationNet
	thresholdEverywhere := func(dir string) {
		for _, n := range []string{"stmary", "stjohn"} {
			b2, _ := os.ReadFile(filepath.Join(dir, "mercy", "agreements", "mercy-research.yaml"))
			s := strings.ReplaceAll(string(b2), "mercy", n)
			s = strings.Replace(s, "egress:\n  - {to: [eu], outputs: [aggregate]}\n", "", 1)
			s = strings.Replace(s, "    min_units: 10\n", "    min_units: 10\n    differencing: {off: true}\n", 1)
			os.WriteFile(filepath.Join(dir, n, "agreements", n+"-research.yaml"), []byte(s), 0o644)
		}
		ag := filepath.Join(dir, "mercy", "agreements", "mercy-research.yaml")
		b2, _ := os.ReadFile(ag)
		os.WriteFile(ag, []byte(strings.Replace(string(b2), "    min_units: 10\n", "    min_units: 10\n    differencing: {off: true}\n", 1)), 0o644)
		// One node with all three hospitals' rows, under stmary's rule.
		all := filepath.Join(dir, "all")
		os.CopyFS(all, os.DirFS(filepath.Join(dir, "stjohn")))
		os.RemoveAll(filepath.Join(all, ".airlock"))
		var csv []byte
		for i, n := range []string{"stmary", "stjohn", "mercy"} {
			d, _ := os.ReadFile(filepath.Join(dir, n, "data", "visits.csv"))
			if i > 0 { // the header once
				_, rest, _ := strings.Cut(string(d), "\n")
				d = []byte(rest)
			}
			csv = append(csv, d...)
		}
		os.WriteFile(filepath.Join(all, "data", "visits.csv"), csv, 0o644)
		// The analyst asks this node directly, as a local principal.
		pf := filepath.Join(all, "principals.yaml")
		pb, _ := os.ReadFile(pf)
		os.WriteFile(pf, append(pb, "  - {name: analyst@research, org: research, roles: [researcher], country: NL, region: eu, clearance: standard}\n"...), 0o644)
	}
	f = startFederation(b, rows, thresholdEverywhere)
	single, err := startHarness(filepath.Join(f.dir, "all"), "")
	if err != nil {
		b.Fatal(err)
	}
	defer single.stop()
	b.Run("federated-3x", func(b *testing.B) {
		for b.Loop() {
			r := f.nodes["research"].query(b, "analyst@research", "research", "", fedSQL)
			if r.Status != 200 {
				b.Fatalf("%s", r.Body)
			}
		}
	})
	b.Run("single-node", func(b *testing.B) {
		for b.Loop() {
			r := single.query(b, "analyst@research", "research", "", fedSQL)
			if r.Status != 200 {
				b.Fatalf("%s", r.Body)
			}
		}
	})
}
