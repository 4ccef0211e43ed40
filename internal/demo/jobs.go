package demo

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/airlock-dev/airlock/internal/workspace"
)

// JobNode is one node of a federated-job demo.
type JobNode struct {
	Name, Title string
	HTTP, Peer  string // listen addresses for make run-demand / run-fl
}

// JobDemo is a federated-job demo: its members, its coordinator and the
// job file they share.
type JobDemo struct {
	Kind        string // "demand" or "fl"
	Job         string // the job id (and DIR/<id>.yaml)
	Members     []JobNode
	Coordinator JobNode
	Analyst     string // the coordinator's principal who runs the job
}

// DemandDemo: four competing retailers and the exchange that coordinates.
var DemandDemo = JobDemo{Kind: "demand", Job: "demand-weekly", Analyst: "analyst@exchange",
	Members: []JobNode{
		{Name: "acme", Title: "Acme Stores", HTTP: "127.0.0.1:8101", Peer: "127.0.0.1:7451"},
		{Name: "bolt", Title: "Bolt Market", HTTP: "127.0.0.1:8102", Peer: "127.0.0.1:7452"},
		{Name: "corner", Title: "Corner Shop Group", HTTP: "127.0.0.1:8103", Peer: "127.0.0.1:7453"},
		{Name: "dash", Title: "Dash Grocers", HTTP: "127.0.0.1:8104", Peer: "127.0.0.1:7454"},
	},
	Coordinator: JobNode{Name: "exchange", Title: "the demand exchange", HTTP: "127.0.0.1:8100", Peer: "127.0.0.1:7450"}}

// FLDemo: three nodes with disjoint, non-IID slices of Adult (split by
// workclass) and the research coordinator.
var FLDemo = JobDemo{Kind: "fl", Job: "salary-class", Analyst: "analyst@lab",
	Members: []JobNode{
		{Name: "private", Title: "Private-sector survey office", HTTP: "127.0.0.1:8111", Peer: "127.0.0.1:7461"},
		{Name: "selfemp", Title: "Self-employment registry", HTTP: "127.0.0.1:8112", Peer: "127.0.0.1:7462"},
		{Name: "public", Title: "Public-sector statistics office", HTTP: "127.0.0.1:8113", Peer: "127.0.0.1:7463"},
	},
	Coordinator: JobNode{Name: "lab", Title: "the research lab", HTTP: "127.0.0.1:8110", Peer: "127.0.0.1:7460"}}

// Demand demo's public domains.
var (
	DemandSKUs    = []string{"SKU-01", "SKU-02", "SKU-03", "SKU-04", "SKU-05", "SKU-06", "SKU-07", "SKU-08"}
	DemandRegions = []string{"north", "south", "east", "west"}
	DemandWeeks   = []string{"2026-W40", "2026-W41", "2026-W42", "2026-W43", "2026-W44", "2026-W45"}
)

//go:embed fl/adult.csv.gz
var adultGz []byte

// InitJob writes the demo under dir: every node's workspace (dir/<node>,
// keys created, each member and the coordinator in each other's peers
// files, the coordinator allowed to act for its analyst's org), each
// member's data, and the unapproved job file dir/<job>.yaml. rows scales
// the demand demo (stores per retailer and region); the FL demo uses all
// of Adult, its last fifth held out as dir/holdout.csv for the analyst.
func InitJob(dir string, d JobDemo, rows int) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, d.Coordinator.Name, "airlock.yaml")); err != nil {
			return fmt.Errorf("%s is not empty and is not a %s demo", dir, d.Kind)
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	keys := map[string]string{}
	all := append(slices.Clone(d.Members), d.Coordinator)
	for _, n := range all {
		ws := filepath.Join(dir, n.Name)
		if err := copyTree(federationFiles, "federation/hospital/policies", filepath.Join(ws, "policies")); err != nil {
			return err
		}
		vkey, err := writeNodeConfig(ws, d.Kind, n.Name, "eu", n.Peer, "0s")
		if err != nil {
			return err
		}
		keys[n.Name] = vkey
		principals := fmt.Sprintf("principals:\n  - {name: steward@%s, org: %s, roles: [steward], country: DE, region: eu, clearance: high}\n", n.Name, n.Name)
		if n == d.Coordinator {
			principals += fmt.Sprintf("  - {name: %s, org: %s, roles: [analyst], country: DE, region: eu, clearance: high}\n", d.Analyst, n.Name)
		}
		if err := writeText(filepath.Join(ws, "principals.yaml"), principals); err != nil {
			return err
		}
	}
	var job string
	var err error
	switch d.Kind {
	case "demand":
		job, err = writeDemand(dir, d, keys, rows)
	default:
		job, err = writeAdultSlices(dir, d, keys)
	}
	if err != nil {
		return err
	}
	for _, n := range all {
		var peers []*workspace.Peer
		for _, o := range all {
			if o.Name == n.Name {
				continue
			}
			p := &workspace.Peer{Name: o.Name, Org: o.Name, Region: "eu", URL: "https://" + o.Peer, Key: keys[o.Name]}
			if o == d.Coordinator {
				p.Represents = []string{o.Name}
			}
			peers = append(peers, p)
		}
		if err := workspace.WritePeers(filepath.Join(dir, n.Name), peers); err != nil {
			return err
		}
	}
	if err := writeText(filepath.Join(dir, d.Job+".yaml"), job); err != nil {
		return err
	}
	readme := demandREADME
	if d.Kind == "fl" {
		readme = flREADME
	}
	return writeText(filepath.Join(dir, "README.md"), readme)
}

func memberSection(d JobDemo, keys map[string]string, dataset, budget string) string {
	var b strings.Builder
	for _, m := range d.Members {
		fmt.Fprintf(&b, "  - org: %s\n    node: %s\n    key: %s\n    dataset: %s\n    budget: %s\n", m.Name, m.Name, keys[m.Name], dataset, budget)
	}
	return b.String()
}

func quoteList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func writeDemand(dir string, d JobDemo, keys map[string]string, stores int) (string, error) {
	for i, m := range d.Members {
		ws := filepath.Join(dir, m.Name)
		if err := writeText(filepath.Join(ws, "datasets", "sales.yaml"), fmt.Sprintf(`name: sales
description: %s's weekly units sold and distinct customers, per store and SKU.
owner: %s
tier: confidential
region: eu
lineage: Synthetic; generated by airlock demo demand.
source:
  file: data/sales.csv
privacy_unit: store
columns:
  - {name: week, type: text, class: attribute}
  - {name: region, type: text, class: attribute}
  - {name: store, type: text, class: identifier}
  - {name: sku, type: text, class: attribute}
  - {name: units, type: integer, class: sensitive, bounds: [0, 120]}
  - {name: customers, type: integer, class: sensitive, bounds: [0, 80]}
`, m.Title, m.Name)); err != nil {
			return "", err
		}
		r := mrand.New(mrand.NewPCG(uint64(i+1), 77))
		var b strings.Builder
		b.WriteString("week,region,store,sku,units,customers\n")
		share := 0.5 + r.Float64() // each retailer's size
		for _, region := range DemandRegions {
			for s := range stores {
				store := fmt.Sprintf("%s-%s-%02d", m.Name, region, s+1)
				for k, sku := range DemandSKUs {
					base := share * float64(10+5*k) * (1 + 0.3*r.Float64())
					for w, week := range DemandWeeks {
						units := int(math.Max(0, math.Round(base*(1+0.05*float64(w))+r.NormFloat64()*base*0.2)))
						fmt.Fprintf(&b, "%s,%s,%s,%s,%d,%d\n", week, region, store, sku, units, units*2/3)
					}
				}
			}
		}
		if err := writeText(filepath.Join(ws, "data", "sales.csv"), b.String()); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf(`# Network demand: weekly units and customers per SKU and region, summed
# over the retailers by secure aggregation with distributed DP. Every
# retailer approves this file's hash on its own node (airlock fl approve).
id: %s
purpose: demand_forecasting
kind: sum
coordinator: %s
results_to: [%s]
min_participants: 3
# One retailer may follow the exchange rather than the protocol: 2t > n + k
# still holds, and each retailer's noise share is sized for the t - k = 2
# honest survivors.
max_colluders: 1
members:
%ssum:
  dimensions:
    - {column: sku, domain: %s}
    - {column: region, domain: %s}
    - {column: week, domain: %s}
  measures:
    - {column: units, bounds: [0, 120]}
    - {column: customers, bounds: [0, 80]}
  epsilon: 1
`, d.Job, d.Coordinator.Name, d.Coordinator.Name, memberSection(d, keys, "sales", "{epsilon: 20, delta: 1e-6, period: 720h}"),
		quoteList(DemandSKUs), quoteList(DemandRegions), quoteList(DemandWeeks)), nil
}

// adultRows is the embedded Adult data (sex;age;race;…;salary-class),
// its columns renamed to SQL names.
func adultRows() ([]string, [][]string, error) {
	zr, err := gzip.NewReader(bytes.NewReader(adultGz))
	if err != nil {
		return nil, nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, nil, err
	}
	r := csv.NewReader(bytes.NewReader(raw))
	r.Comma = ';'
	recs, err := r.ReadAll()
	if err != nil {
		return nil, nil, err
	}
	head := make([]string, len(recs[0]))
	for i, h := range recs[0] {
		head[i] = strings.ReplaceAll(h, "-", "_")
	}
	return head, recs[1:], nil
}

// AdultSlice is which FL demo member holds an Adult row (by workclass).
func AdultSlice(workclass string) int {
	switch {
	case workclass == "Private":
		return 0
	case strings.HasPrefix(workclass, "Self-emp"):
		return 1
	}
	return 2
}

func writeAdultSlices(dir string, d JobDemo, keys map[string]string) (string, error) {
	head, rows, err := adultRows()
	if err != nil {
		return "", err
	}
	r := mrand.New(mrand.NewPCG(42, 42))
	r.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	cut := len(rows) * 4 / 5
	col := func(name string) int { return slices.Index(head, name) }
	slicesOf := make([][][]string, len(d.Members))
	values := map[string][]string{}
	var sum, sum2 float64
	for _, row := range rows[:cut] {
		k := AdultSlice(row[col("workclass")])
		slicesOf[k] = append(slicesOf[k], row)
	}
	for _, row := range rows {
		for i, h := range head {
			if h != "age" && h != "salary_class" && !slices.Contains(values[h], row[i]) {
				values[h] = append(values[h], row[i])
			}
		}
		var age float64
		fmt.Sscan(row[col("age")], &age)
		sum, sum2 = sum+age, sum2+age*age
	}
	// Each record gets an id, the privacy unit (a person).
	writeCSV := func(path string, rows [][]string, first int) error {
		var b bytes.Buffer
		w := csv.NewWriter(&b)
		w.Write(append([]string{"id"}, head...))
		for i, row := range rows {
			w.Write(append([]string{fmt.Sprint(first + i)}, row...))
		}
		w.Flush()
		return writeText(path, b.String())
	}
	var columns strings.Builder
	columns.WriteString("  - {name: id, type: integer, class: identifier}\n")
	for _, h := range head {
		if h == "age" {
			columns.WriteString("  - {name: age, type: integer, class: quasi_identifier, bounds: [17, 90]}\n")
		} else {
			fmt.Fprintf(&columns, "  - {name: %s, type: text, class: attribute}\n", h)
		}
	}
	for i, m := range d.Members {
		ws := filepath.Join(dir, m.Name)
		if err := writeText(filepath.Join(ws, "datasets", "census.yaml"), fmt.Sprintf(`name: census
description: %s's census records (the UCI Adult data, its %s slice).
owner: %s
tier: confidential
region: eu
lineage: UCI Adult census extract, split by workclass by airlock demo fl.
source:
  file: data/census.csv
privacy_unit: id
columns:
%s`, m.Title, m.Name, m.Name, columns.String())); err != nil {
			return "", err
		}
		if err := writeCSV(filepath.Join(ws, "data", "census.csv"), slicesOf[i], 1_000_000*(i+1)); err != nil {
			return "", err
		}
	}
	if err := writeCSV(filepath.Join(dir, "holdout.csv"), rows[cut:], 1); err != nil {
		return "", err
	}
	n := float64(len(rows))
	var cats strings.Builder
	for _, h := range head {
		if h == "age" || h == "salary_class" {
			continue
		}
		vs := values[h]
		slices.Sort(vs)
		fmt.Fprintf(&cats, "    - {column: %s, values: %s}\n", h, quoteList(vs))
	}
	return fmt.Sprintf(`# Salary class from the census, trained across three offices that keep
# their records: FedAvg rounds under secure aggregation, DP-SGD inside
# each office (record-level privacy). Every office approves this file's
# hash on its own node (airlock fl approve).
id: %s
purpose: research
kind: train
coordinator: %s
results_to: [%s]
min_participants: 2
members:
%strain:
  model: logistic
  numeric:
    - {name: age, mean: %.4f, std: %.4f}
  categorical:
%s  label: salary_class
  positive: ">50K"
  rounds: 10
  local_epochs: 1
  learning_rate: 0.5
  batch: 256
  privacy: record
  clip: 1
  noise_multiplier: 8
`, d.Job, d.Coordinator.Name, d.Coordinator.Name, memberSection(d, keys, "census", "{epsilon: 4, delta: 1e-5, period: 720h}"),
		sum/n, math.Sqrt(sum2/n-(sum/n)*(sum/n)), cats.String()), nil
}

const demandREADME = `# Airlock federated analytics demo: network demand

Four competing retailers (acme, bolt, corner, dash) each keep their weekly
units sold and customers per store and SKU on their own node. The demand
exchange (node exchange) coordinates: it learns the network's totals per
SKU × region × week, and nothing about any one retailer.

    make run-demand        # approves the job on every retailer and starts the five nodes

or by hand: on each retailer's node, approve the job file's hash,

    airlock fl approve --workspace DIR/acme DIR/demand-weekly.yaml

start every node (airlock serve --workspace DIR/<node> ...), then as the
exchange's analyst:

    T=$(airlock token create --workspace DIR/exchange --principal analyst@exchange)
    airlock fl run --server http://127.0.0.1:8100 --token $T DIR/demand-weekly.yaml

Each retailer clamps its rows, adds its share of discrete Gaussian noise
(σ²/t each, so any t = 3 survivors carry the full noise) and masks its
vector (Bonawitz et al. secure aggregation); the exchange unmasks only the
noised sum of at least 3 retailers. Each retailer's ledger (job:demand-weekly)
pays ε = 1 per run (ρ = 0.5) of its ε = 20 a month; its audit log shows every round that read its data
(airlock audit export --workspace DIR/acme, op secagg.contribute).

Things to try: stop one retailer and run again (the round completes with
the other three, naming it dropped); stop two (refused: fewer than 3, no sum
revealed); withdraw an approval (airlock fl withdraw).
`

const flREADME = `# Airlock federated learning demo: salary class on Adult

Three offices hold disjoint, non-IID slices of the Adult census data (split
by workclass: private, selfemp, public); the research lab (node lab)
coordinates a logistic-regression job. Each round, every office trains on
its own rows with DP-SGD (record-level privacy, its own ledger), masks its
update, and the lab unmasks only the sum.

    make run-fl            # approves the job on every office and starts the four nodes
    T=$(airlock token create --workspace DIR/lab --principal analyst@lab)
    airlock fl run --server http://127.0.0.1:8110 --token $T --out model.json DIR/salary-class.yaml
    airlock fl predict --model model.json --input DIR/holdout.csv

fl run prints each round (survivors, the incoming model's noisy accuracy
over the offices' rows) and the privacy spent per office; fl predict scores
the held-out fifth.
`
