package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/anon"
	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/exportop"
	"github.com/airlock-dev/airlock/internal/risk"
	"github.com/airlock-dev/airlock/internal/synth"
)

// riskReport is the risk of a table under some quasi-identifiers.
type riskReport struct {
	Sample     risk.Sample      `json:"prosecutor"`
	Population risk.Population  `json:"population"`
	Journalist *risk.Journalist `json:"journalist,omitempty"`
}

// journalist links a sample's classes with the population's.
func journalist(sample, pop *anon.Table, cols []string, threshold float64) (risk.Journalist, error) {
	sc, err := anon.ClassCounts(sample, cols)
	if err != nil {
		return risk.Journalist{}, err
	}
	pc, err := anon.ClassCounts(pop, cols)
	if err != nil {
		return risk.Journalist{}, fmt.Errorf("--population: %w", err)
	}
	var linked []risk.Linked
	for k, f := range sc {
		if pc[k] < f {
			return risk.Journalist{}, fmt.Errorf("--population is not a superset of the sample: a class has %d sample records and %d in the population", f, pc[k])
		}
		linked = append(linked, risk.Linked{Sample: f, Population: pc[k]})
	}
	return risk.JournalistRisk(linked, threshold), nil
}

func riskOf(sizes []int, threshold, samplingFraction float64) riskReport {
	h := risk.HistogramOf(sizes)
	return riskReport{Sample: risk.SampleRisk(h, threshold), Population: risk.PopulationRisk(h, samplingFraction)}
}

func printRisk(w io.Writer, label string, r riskReport) {
	s, p := r.Sample, r.Population
	fmt.Fprintf(w, "%s: prosecutor highest %.4f, average %.4f, records at risk (> %.2f) %.4f; sample uniqueness %.4f; population uniqueness %.4f (%s, π = %.3g)\n",
		label, s.Highest, s.Average, s.Threshold, s.AtRisk, s.Uniques, p.Uniques, p.Model, p.SamplingFraction)
}

func anonymize(args []string, out, errw io.Writer) error {
	fs := flags("anonymize", errw)
	input := fs.String("input", "", "CSV file (delimiter detected)")
	hdir := fs.String("hierarchies", "", "directory of ARX hierarchies, hierarchy_<column>.csv")
	k := fs.Int("k", 2, "k of k-anonymity")
	l := fs.Int("l", 0, "l of l-diversity on --sensitive")
	sensitive := fs.String("sensitive", "", "sensitive column (for --l and --t)")
	lkind := fs.String("l-kind", "distinct", "distinct, entropy or recursive")
	c := fs.Float64("c", 0, "c of recursive (c,l)-diversity")
	t := fs.Float64("t", 0, "t of t-closeness on --sensitive")
	tkind := fs.String("t-kind", "equal", "equal, ordered or hierarchical (needs hierarchy_<sensitive>.csv)")
	supp := fs.Float64("max-suppression", 0, "share of records that may be suppressed")
	metric := fs.String("metric", "nue", "information loss: nue, loss, dm, dmstar or aecs")
	qi := fs.String("qi", "", "quasi-identifiers, comma-separated (default: every column with a hierarchy)")
	output := fs.String("output", "", "write the anonymized CSV here")
	pi := fs.Float64("sampling-fraction", 0.01, "share of the population the data is, for population uniqueness")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if _, err := parse(fs, args); err != nil || *input == "" || *hdir == "" {
		return errUsage
	}
	tab, err := anon.ReadTableFile(*input)
	if err != nil {
		return err
	}
	hs, err := anon.ReadHierarchies(*hdir)
	if err != nil {
		return err
	}
	cfg := anon.Config{Hierarchies: hs, MaxSuppression: *supp, Metric: anon.Metric(*metric),
		Models: anon.Models{K: *k, Sensitive: *sensitive, L: *l, LKind: anon.LKind(*lkind), C: *c, T: *t, TKind: anon.TKind(*tkind)}}
	if *t > 0 && cfg.Models.TKind == anon.THierarchical {
		cfg.Models.SensitiveHierarchy = hs[*sensitive]
	}
	if *qi != "" {
		cfg.QI = strings.Split(*qi, ",")
	} else {
		for _, col := range tab.Columns {
			if hs[col] != nil && col != *sensitive {
				cfg.QI = append(cfg.QI, col)
			}
		}
	}
	p, err := anon.NewProblem(tab, cfg)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := p.Search()
	took := time.Since(start)
	if err != nil {
		return err
	}
	before, _ := anon.ClassSizes(tab, cfg.QI)
	applied, err := p.Apply(res.Optimum.Levels)
	if err != nil {
		return err
	}
	report := map[string]any{
		"quasi_identifiers": cfg.QI, "levels": res.Optimum.Levels, "metric": p.Metric(), "loss": res.Optimum.Loss,
		"classes": res.Optimum.Classes, "suppressed": res.Optimum.Suppressed, "rows": tab.Rows(),
		"lattice": p.Size(), "evaluated": res.Evaluated, "seconds": took.Seconds(),
		"risk_before": riskOf(before, 0.2, *pi), "risk_after": riskOf(applied.Sizes, 0.2, *pi),
	}
	if *output != "" {
		f, err := os.Create(*output)
		if err != nil {
			return err
		}
		if _, _, err := applied.Write(f, nil, nil); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if *asJSON {
		return json.NewEncoder(out).Encode(report)
	}
	fmt.Fprintf(out, "optimum: %s\n", p.FormatLevels(res.Optimum.Levels))
	fmt.Fprintf(out, "information loss (%s): %v\n", p.Metric(), res.Optimum.Loss)
	fmt.Fprintf(out, "classes: %d; suppressed records: %d of %d\n", res.Optimum.Classes, res.Optimum.Suppressed, tab.Rows())
	fmt.Fprintf(out, "lattice: %d transformations, %d evaluated, %.3f s\n", p.Size(), res.Evaluated, took.Seconds())
	printRisk(out, "risk before", report["risk_before"].(riskReport))
	printRisk(out, "risk after", report["risk_after"].(riskReport))
	if *output != "" {
		fmt.Fprintf(out, "wrote %s\n", *output)
	}
	return nil
}

func riskCmd(args []string, out, errw io.Writer) error {
	fs := flags("risk", errw)
	input := fs.String("input", "", "CSV file (delimiter detected)")
	qi := fs.String("qi", "", "quasi-identifiers, comma-separated (default: every column)")
	pi := fs.Float64("sampling-fraction", 0.01, "share of the population the data is")
	threshold := fs.Float64("threshold", 0.2, "per-record risk above which a record is at risk")
	population := fs.String("population", "", "CSV of the population the sample was drawn from (same columns), for journalist and marketer risk")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil || *input == "" {
		return errUsage
	}
	tab, err := anon.ReadTableFile(*input)
	if err != nil {
		return err
	}
	cols := tab.Columns
	if *qi != "" {
		cols = strings.Split(*qi, ",")
	}
	sizes, err := anon.ClassSizes(tab, cols)
	if err != nil {
		return err
	}
	r := riskOf(sizes, *threshold, *pi)
	if *population != "" {
		pop, err := anon.ReadTableFile(*population)
		if err != nil {
			return err
		}
		j, err := journalist(tab, pop, cols, *threshold)
		if err != nil {
			return err
		}
		r.Journalist = &j
	}
	if *asJSON {
		return json.NewEncoder(out).Encode(r)
	}
	printRisk(out, "risk", r)
	if j := r.Journalist; j != nil {
		fmt.Fprintf(out, "journalist: highest %.4f, average %.4f, records at risk %.4f; marketer %.4f\n", j.Highest, j.Average, j.AtRisk, j.Marketer)
	}
	p := r.Population
	fmt.Fprintf(out, "population uniques by model: zayatz %.1f, pitman %.1f, snb %.1f of N = %d\n", p.Zayatz, p.Pitman, p.SNB, p.PopulationSize)
	return nil
}

func synthesize(args []string, out, errw io.Writer) error {
	fs := flags("synthesize", errw)
	input := fs.String("input", "", "CSV file (delimiter detected)")
	output := fs.String("output", "", "write the synthetic CSV here")
	eps := fs.Float64("epsilon", 1, "ε of the release")
	delta := fs.Float64("delta", 1e-9, "δ of the release")
	rows := fs.Int("rows", 0, "rows to generate (default: the noisy row count)")
	target := fs.String("target", "", "column a classifier predicts, for the utility report (default: the last)")
	hdir := fs.String("hierarchies", "", "directory of ARX hierarchies: their columns' values are public, so rare ones may appear")
	if _, err := parse(fs, args); err != nil || *input == "" || *output == "" {
		return errUsage
	}
	tab, err := anon.ReadTableFile(*input)
	if err != nil {
		return err
	}
	public := map[string]bool{}
	if *hdir != "" {
		hs, err := anon.ReadHierarchies(*hdir)
		if err != nil {
			return err
		}
		for col := range hs {
			public[col] = true
		}
	}
	start := time.Now()
	res, err := synth.Synthesize(tab, synth.Config{Epsilon: *eps, Delta: *delta, Rows: *rows, Public: public}, dp.NewSampler(nil))
	if err != nil {
		return err
	}
	took := time.Since(start)
	f, err := os.Create(*output)
	if err != nil {
		return err
	}
	if err := anon.WriteTable(f, res.Table); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if *target == "" {
		*target = tab.Columns[len(tab.Columns)-1]
	}
	u := synth.Compare(tab, res.Table, *target)
	fmt.Fprintf(out, "wrote %d synthetic rows to %s in %.2f s (ε = %g, δ = %g, ρ = %.5f)\n", res.Table.Rows(), *output, took.Seconds(), *eps, *delta, res.Rho)
	fmt.Fprintf(out, "tree: %v\n", res.Edges)
	fmt.Fprintf(out, "marginal error (total variation): 1-way %.4f, 2-way %.4f\n", u.OneWay, u.TwoWay)
	fmt.Fprintf(out, "naive Bayes for %s on the real rows: trained on real %.4f, on synthetic %.4f (majority %.4f)\n", u.Target, u.TrainedOnReal, u.TrainedOnSynthetic, u.Majority)
	return nil
}

func exportRequest(args []string, out, errw io.Writer) error {
	fs := flags("export", errw)
	srv := fs.String("server", "http://127.0.0.1:8080", "server URL")
	tok := fs.String("token", "", "bearer token (default: $AIRLOCK_TOKEN)")
	purpose := fs.String("purpose", "", "purpose of the release")
	ag := fs.String("agreement", "", "agreement to act under (recipients)")
	dataset := fs.String("dataset", "", "dataset to release")
	to := fs.String("to", "", "destination ORG@REGION, e.g. eu-institute@eu")
	method := fs.String("method", "kanonymity", "kanonymity or synthetic")
	k := fs.Int("k", 0, "k of k-anonymity")
	l := fs.Int("l", 0, "distinct l-diversity on the sensitive column")
	supp := fs.Float64("max-suppression", 0, "share of records that may be suppressed")
	eps := fs.Float64("epsilon", 0, "ε of a synthetic release")
	expires := fs.String("expires", "", "licence expiry, RFC 3339 or a duration such as 2160h")
	duo := fs.String("duo", "", "GA4GH DUO codes, comma-separated")
	output := fs.String("output", "", "write the released file here, and its signed record to FILE.record.json")
	pos, err := parse(fs, args)
	if *tok == "" {
		*tok = os.Getenv("AIRLOCK_TOKEN")
	}
	org, region, ok := strings.Cut(*to, "@")
	if err != nil || len(pos) != 0 || *tok == "" || *dataset == "" || !ok || *output == "" || *expires == "" {
		return errUsage
	}
	until, err := time.Parse(time.RFC3339, *expires)
	if err != nil {
		d, derr := time.ParseDuration(*expires)
		if derr != nil {
			return fmt.Errorf("--expires: want RFC 3339 or a duration")
		}
		until = time.Now().Add(d)
	}
	req := exportop.Request{Dataset: *dataset, Destination: exportop.Dest{Org: org, Region: region}, Method: *method, K: *k, L: *l,
		MaxSuppression: *supp, Epsilon: *eps, Licence: exportop.Licence{Expires: until}}
	if *duo != "" {
		req.Licence.DUO = strings.Split(*duo, ",")
	}
	body := exportop.Body{Request: req, Purpose: *purpose, Agreement: *ag}
	var res struct {
		Release    exportop.Released `json:"release"`
		AuditIndex uint64            `json:"audit_index"`
	}
	if err := call("POST", strings.TrimRight(*srv, "/")+"/v1/exports", *tok, body, &res); err != nil {
		return err
	}
	rec, err := json.Marshal(res.Release.Record)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*output, []byte(res.Release.CSV), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(*output+".record.json", rec, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(out, "release %s (audit entry %d): wrote %s and %s.record.json\n", res.Release.ID, res.AuditIndex, *output, *output)
	return nil
}

func exportVerify(args []string, out, errw io.Writer) error {
	fs := flags("export verify", errw)
	record := fs.String("record", "", "the signed record (default: FILE.record.json)")
	key := fs.String("key", "", "the releasing node's key: its node.pub, KEY or @FILE")
	pos, err := parse(fs, args)
	if err != nil || len(pos) != 1 || *key == "" {
		return errUsage
	}
	if *record == "" {
		*record = pos[0] + ".record.json"
	}
	file, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	rb, err := os.ReadFile(*record)
	if err != nil {
		return err
	}
	var s exportop.Signed
	if err := json.Unmarshal(rb, &s); err != nil {
		return fmt.Errorf("%s: not a signed release record", *record)
	}
	k, err := keyArg(*key)
	if err != nil {
		return err
	}
	r, err := exportop.Verify(file, s, k)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "ok: %s is release %s of %s by %s to %s (%s) on %s, method %s, sha256 %s\n", pos[0], r.ID, r.Dataset, r.Node, r.Destination.Org,
		r.Destination.Region, r.Issued.Format(time.RFC3339), r.Method, r.SHA256)
	var lic struct {
		Permission []struct {
			Constraint []struct {
				LeftOperand  string `json:"leftOperand"`
				RightOperand any    `json:"rightOperand"`
			} `json:"constraint"`
		} `json:"permission"`
	}
	if json.Unmarshal(r.Licence, &lic) == nil && len(lic.Permission) > 0 {
		for _, c := range lic.Permission[0].Constraint {
			if m, ok := c.RightOperand.(map[string]any); ok && c.LeftOperand == "dateTime" {
				if until, err := time.Parse(time.RFC3339, fmt.Sprint(m["@value"])); err == nil {
					state := "in force"
					if !time.Now().Before(until) {
						state = "EXPIRED"
					}
					fmt.Fprintf(out, "licence until %s: %s\n", until.Format(time.RFC3339), state)
				}
			}
		}
	}
	return nil
}
