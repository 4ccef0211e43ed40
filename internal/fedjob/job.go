// Package fedjob runs secure aggregation across member nodes: federated
// analytics (a sum of every member's rows per cell of a public domain)
// and federated learning (FedAvg rounds of package fl). A job is a file
// the analyst writes and each data owner approves by signing its hash on
// its own node, with its own row filter. The coordinator node runs each
// round as one kernel operation and relays the participants' signed
// secagg messages (package secagg); each participant's node runs its side
// as its own kernel operation, charging its own ledger for the round and
// auditing which rounds read its data. The coordinator learns only the
// noised sum over at least min_participants members.
package fedjob

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"regexp"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/fl"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Kinds of jobs.
const (
	KindSum   = "sum"   // federated analytics: totals per cell
	KindTrain = "train" // federated learning
)

// Job is a job file.
type Job struct {
	ID      string `yaml:"id"`
	Purpose string `yaml:"purpose"`
	Kind    string `yaml:"kind"`
	// Coordinator is the node that runs the rounds and sees the sums.
	Coordinator string `yaml:"coordinator"`
	// ResultsTo are the orgs whose principals may run the job and receive
	// its results.
	ResultsTo []string `yaml:"results_to"`
	// MinParticipants is secure aggregation's threshold t: no sum of fewer
	// members is ever revealed.
	MinParticipants int `yaml:"min_participants"`
	// MaxColluders is k, how many members may follow the coordinator
	// rather than the protocol: 2t > n + k keeps any survivor set from
	// being told apart to two groups (secagg), and noise shares are sized
	// for the t − k honest survivors. Default 0: members are honest.
	MaxColluders int      `yaml:"max_colluders,omitempty"`
	Members      []Member `yaml:"members"`
	Sum          *Sum     `yaml:"sum,omitempty"`
	Train        *Train   `yaml:"train,omitempty"`

	raw  []byte
	hash string
	plan fl.Plan // a training job's, checked at parse
}

// Member is a data owner taking part with one dataset on its node.
type Member struct {
	Org     string           `yaml:"org"`
	Node    string           `yaml:"node"`
	Key     string           `yaml:"key"` // the node's key, which signs its secagg messages
	Dataset string           `yaml:"dataset"`
	Budget  workspace.Budget `yaml:"budget"`
}

// Sum is a federated aggregate: for every cell of the dimensions' public
// domains, the sum over every member's rows of each measure, each row's
// value clamped to the measure's bounds. The privacy unit is a row.
type Sum struct {
	Dimensions []Dimension `yaml:"dimensions"`
	Measures   []Measure   `yaml:"measures"`
	// Epsilon is each member's cost of one run (ρ = ε²/2, split evenly
	// over the measures).
	Epsilon float64 `yaml:"epsilon"`
}

// Dimension is a grouping column with its public domain.
type Dimension struct {
	Column string   `yaml:"column"`
	Domain []string `yaml:"domain"`
}

// Measure is a summed integer column and its per-row bounds.
type Measure struct {
	Column string   `yaml:"column"`
	Bounds [2]int64 `yaml:"bounds"`
}

// Train is a federated training job.
type Train struct {
	Model       string        `yaml:"model"` // logistic, linear, mlp
	Hidden      int           `yaml:"hidden,omitempty"`
	Numeric     []fl.Numeric  `yaml:"numeric,omitempty"`
	Categorical []Categorical `yaml:"categorical,omitempty"`
	Label       string        `yaml:"label"`
	// Positive is a classifier's positive label; a regression names the
	// label's public mean and standard deviation instead.
	Positive  string  `yaml:"positive,omitempty"`
	LabelMean float64 `yaml:"label_mean,omitempty"`
	LabelStd  float64 `yaml:"label_std,omitempty"`

	Rounds       int     `yaml:"rounds"`
	LocalEpochs  int     `yaml:"local_epochs"`
	LearningRate float64 `yaml:"learning_rate"`
	Batch        int     `yaml:"batch"`
	Mu           float64 `yaml:"mu,omitempty"` // FedProx (0: FedAvg)
	// Privacy is the unit protected: none, record (DP-SGD in each node) or
	// member (each node's update clipped, distributed noise).
	Privacy         string  `yaml:"privacy"`
	Clip            float64 `yaml:"clip,omitempty"`
	NoiseMultiplier float64 `yaml:"noise_multiplier,omitempty"`
	Seed            uint64  `yaml:"seed,omitempty"`
}

// Categorical is a one-hot feature over public values.
type Categorical struct {
	Column string   `yaml:"column"`
	Values []string `yaml:"values"`
}

var validID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Parse decodes and checks a job file; its hash is SHA-256 of the bytes.
func Parse(b []byte) (*Job, error) {
	var j Job
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("job file: %w", err)
	}
	sum := sha256.Sum256(b)
	j.raw, j.hash = slices.Clone(b), hex.EncodeToString(sum[:])
	if err := j.check(); err != nil {
		return nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	return &j, nil
}

// Hash is the SHA-256 of the file, hex.
func (j *Job) Hash() string { return j.hash }

// Bytes are the file as parsed.
func (j *Job) Bytes() []byte { return j.raw }

func (j *Job) check() error {
	switch {
	case !validID.MatchString(j.ID):
		return fmt.Errorf("id %q is not a lower-case name", j.ID)
	case j.Purpose == "" || j.Coordinator == "" || len(j.ResultsTo) == 0:
		return fmt.Errorf("a job names its purpose, coordinator and results_to")
	case len(j.Members) < 2 || len(j.Members) > 64:
		return fmt.Errorf("2 to 64 members, not %d", len(j.Members))
	case j.MaxColluders < 0 || j.MinParticipants < 2 || j.MinParticipants > len(j.Members) || 2*j.MinParticipants <= len(j.Members)+j.MaxColluders:
		// No two groups of t members sharing only colluders can each be
		// told the other group dropped (see secagg.Params).
		return fmt.Errorf("min_participants t must satisfy 2t > members + max_colluders and t ≤ members (%d members, %d colluders: t from %d to %d); it is secure aggregation's threshold",
			len(j.Members), j.MaxColluders, (len(j.Members)+j.MaxColluders)/2+1, len(j.Members))
	case (j.Kind == KindSum) != (j.Sum != nil) || (j.Kind == KindTrain) != (j.Train != nil) || (j.Sum == nil) == (j.Train == nil):
		return fmt.Errorf("kind %q needs exactly its own section (sum or train)", j.Kind)
	}
	seen := map[string]bool{}
	for _, m := range j.Members {
		if m.Org == "" || m.Node == "" || m.Dataset == "" || seen[m.Node] || m.Node == j.Coordinator {
			return fmt.Errorf("every member names an org, a node (once, not the coordinator's) and a dataset")
		}
		seen[m.Node] = true
		if _, _, err := federation.ParseVerifier(m.Key); err != nil {
			return fmt.Errorf("member %s's key: %w", m.Org, err)
		}
		if !(m.Budget.Epsilon > 0) {
			return fmt.Errorf("member %s needs a budget (epsilon)", m.Org)
		}
	}
	if j.Sum != nil {
		return j.Sum.check(len(j.Members), j.honest())
	}
	p, err := j.buildPlan()
	j.plan = p
	if err == nil && p.Unit == fl.NoDP && j.MinParticipants != len(j.Members) {
		// Every unnoised sum covers every member: otherwise two rounds
		// over different members (with the same model) would tell one
		// member's update.
		return fmt.Errorf("privacy none needs min_participants = all %d members", len(j.Members))
	}
	return err
}

// honest is t − k: the fewest honest survivors, whose noise shares must
// carry the full noise.
func (j *Job) honest() int { return j.MinParticipants - j.MaxColluders }

// MaxCells bounds a sum's cells times its measures (one vector).
const MaxCells = 1 << 20

func (s *Sum) check(n, honest int) error {
	if len(s.Dimensions) == 0 || len(s.Measures) == 0 || !(s.Epsilon >= 1e-3 && s.Epsilon <= 100) {
		return fmt.Errorf("a sum needs dimensions, measures and an epsilon from 0.001 to 100")
	}
	cells := len(s.Measures)
	for _, d := range s.Dimensions {
		if d.Column == "" || len(d.Domain) == 0 || len(slices.Compact(slices.Sorted(slices.Values(d.Domain)))) != len(d.Domain) {
			return fmt.Errorf("dimension %q needs a domain of distinct values", d.Column)
		}
		cells *= len(d.Domain)
		if cells > MaxCells {
			return fmt.Errorf("more than %d cells", MaxCells)
		}
	}
	for k, m := range s.Measures {
		if m.Column == "" || m.Bounds[0] > m.Bounds[1] || m.Bounds[0] < -1<<20 || m.Bounds[1] > 1<<20 {
			return fmt.Errorf("measure %q needs bounds lo ≤ hi within ±2^20", m.Column)
		}
		// Each member's cells are clamped to what n of them plus the noise
		// keep inside the ring; that clamp must leave room for one row.
		if s.cellLimit(k, n, honest) < int64(m.sensitivity()) {
			return fmt.Errorf("measure %q: %d members' sums with noise of σ = %.0f do not fit the ring (lower ε or narrower bounds)", m.Column, n, math.Sqrt(s.Sigma2()[k]))
		}
	}
	return nil
}

// Member is the member served by a node, or nil.
func (j *Job) Member(node string) (int, *Member) {
	for i := range j.Members {
		if j.Members[i].Node == node {
			return i + 1, &j.Members[i]
		}
	}
	return 0, nil
}

// Rounds is how many secure sums the job runs: a sum's one, or a
// training job's rounds and, unless its privacy unit is the member (which
// measures nothing), one evaluation round of the final model.
func (j *Job) Rounds() int {
	if j.Train == nil {
		return 1
	}
	if j.Train.Privacy == fl.Member {
		return j.Train.Rounds
	}
	return j.Train.Rounds + 1
}

// Evaluation reports whether round r is a training job's evaluation round.
func (j *Job) Evaluation(r int) bool {
	return j.Train != nil && j.Train.Privacy != fl.Member && r == j.Train.Rounds+1
}

// Schema is a training job's feature encoding.
func (t *Train) Schema() fl.Schema {
	s := fl.Schema{Numeric: t.Numeric, Label: t.Label, Positive: t.Positive, LabelMean: t.LabelMean, LabelStd: t.LabelStd}
	for _, c := range t.Categorical {
		s.Categorical = append(s.Categorical, fl.Categorical{Name: c.Column, Values: c.Values})
	}
	return s
}

// Columns are the dataset columns a training job reads.
func (t *Train) Columns() []string {
	var out []string
	for _, n := range t.Numeric {
		out = append(out, n.Name)
	}
	for _, c := range t.Categorical {
		out = append(out, c.Column)
	}
	return append(out, t.Label)
}

// Plan is a training job's round arithmetic (checked when the file was
// parsed).
func (j *Job) Plan() fl.Plan { return j.plan }

func (j *Job) buildPlan() (fl.Plan, error) {
	t := j.Train
	s := t.Schema()
	p := fl.Plan{Model: fl.Model{Kind: t.Model, Dim: s.Dim(), Hidden: t.Hidden},
		Local: fl.Local{Epochs: t.LocalEpochs, LR: t.LearningRate, Batch: t.Batch, Mu: t.Mu},
		Unit:  t.Privacy, Clip: t.Clip, Noise: t.NoiseMultiplier, T: j.honest()}
	switch {
	case t.Rounds < 1 || t.Rounds > 1000:
		return p, fmt.Errorf("1 to 1000 rounds")
	case t.Label == "" || (t.Positive == "") != (t.Model == fl.Linear):
		return p, fmt.Errorf("a classifier names its label's positive value, a regression does not")
	case t.Model == fl.Linear && !(t.LabelStd > 0):
		return p, fmt.Errorf("a regression names its label's public mean and standard deviation")
	}
	for _, n := range t.Numeric {
		if n.Name == "" || !(n.Std > 0) {
			return p, fmt.Errorf("numeric feature %q needs a public mean and a positive standard deviation", n.Name)
		}
	}
	return p, p.Check(len(j.Members))
}
