package fedjob

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/secagg"
)

func nodeKey(t *testing.T, dir, name string) *federation.NodeKey {
	t.Helper()
	skey, vkey, err := audit.LoadOrCreateKey(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := federation.ParseSigner(skey, vkey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sumJob(keys ...string) string {
	var b strings.Builder
	b.WriteString("id: demand\npurpose: forecasting\nkind: sum\ncoordinator: hub\nresults_to: [hub]\nmin_participants: 2\nmembers:\n")
	for i, k := range keys {
		name := string(rune('a' + i))
		b.WriteString("  - {org: " + name + ", node: " + name + ", key: " + k + ", dataset: sales, budget: {epsilon: 10, delta: 1e-6}}\n")
	}
	b.WriteString("sum:\n  dimensions:\n    - {column: sku, domain: [x, y]}\n    - {column: week, domain: [w1, w2, w3]}\n  measures:\n    - {column: units, bounds: [0, 100]}\n    - {column: returns, bounds: [-5, 5]}\n  epsilon: 1\n")
	return b.String()
}

// TestParseRefusesBadJobs: each malformed job file is refused with what
// is wrong, before any node is asked.
func TestParseRefusesBadJobs(t *testing.T) {
	dir := t.TempDir()
	ka, kb := nodeKey(t, dir, "a").Verifier, nodeKey(t, dir, "b").Verifier
	good := sumJob(ka, kb)
	j, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if j.Sum.Length() != 12 || j.Rounds() != 1 || len(j.Hash()) != 64 {
		t.Errorf("length %d rounds %d hash %q", j.Sum.Length(), j.Rounds(), j.Hash())
	}
	if j2, _ := Parse([]byte(good + "\n")); j2.Hash() == j.Hash() {
		t.Error("two different files share a hash")
	}
	kc, kd := nodeKey(t, dir, "c").Verifier, nodeKey(t, dir, "d").Verifier
	if _, err := Parse([]byte(sumJob(ka, kb, kc, kd))); err == nil {
		t.Error("a job of four members with threshold 2 parsed (two disjoint pairs could each be told the other dropped)")
	}
	if _, err := Parse([]byte(strings.Replace(sumJob(ka, kb, kc, kd), "min_participants: 2", "min_participants: 3", 1))); err != nil {
		t.Errorf("four members, threshold 3: %v", err)
	}
	three := sumJob(ka, kb, kc)
	if _, err := Parse([]byte(strings.Replace(three, "min_participants: 2", "min_participants: 2\nmax_colluders: 1", 1))); err == nil {
		t.Error("three members, threshold 2, one colluder parsed (2t > n + k fails)")
	}
	if _, err := Parse([]byte(strings.Replace(three, "min_participants: 2", "min_participants: 3\nmax_colluders: 1", 1))); err != nil {
		t.Errorf("three members, threshold 3, one colluder: %v", err)
	}
	train := strings.Replace(good, "kind: sum", "kind: train", 1)
	cases := map[string]string{
		"unknown field":            good + "extra: 1\n",
		"bad id":                   strings.Replace(good, "id: demand", "id: Demand!", 1),
		"kind without its section": train,
		"one member":               strings.Split(good, "  - {org: b")[0] + "sum:" + strings.SplitN(good, "sum:", 2)[1],
		"threshold above n":        strings.Replace(good, "min_participants: 2", "min_participants: 3", 1),
		"threshold of one":         strings.Replace(good, "min_participants: 2", "min_participants: 1", 1),
		"coordinator member":       strings.Replace(good, "coordinator: hub", "coordinator: a", 1),
		"bad key":                  strings.Replace(good, ka, "nokey", 1),
		"no budget":                strings.Replace(good, "budget: {epsilon: 10, delta: 1e-6}", "budget: {}", 1),
		"repeated domain":          strings.Replace(good, "[x, y]", "[x, x]", 1),
		"inverted bounds":          strings.Replace(good, "[0, 100]", "[100, 0]", 1),
		"no epsilon":               strings.Replace(good, "  epsilon: 1\n", "", 1),
	}
	for name, text := range cases {
		if _, err := Parse([]byte(text)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// TestTrainJobsCheckTheirPlan: a training job names a model the plan can
// run, with the label its kind needs and a privacy unit with its clip and
// noise.
func TestTrainJobsCheckTheirPlan(t *testing.T) {
	dir := t.TempDir()
	ka, kb := nodeKey(t, dir, "a").Verifier, nodeKey(t, dir, "b").Verifier
	head := strings.SplitN(sumJob(ka, kb), "sum:", 2)[0]
	head = strings.Replace(head, "kind: sum", "kind: train", 1)
	base := head + "train:\n  model: logistic\n  numeric: [{name: age, mean: 40, std: 10}]\n  label: y\n  positive: \"1\"\n  rounds: 3\n  local_epochs: 1\n  learning_rate: 0.1\n  batch: 32\n  privacy: record\n  clip: 1\n  noise_multiplier: 2\n"
	j, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	plan := j.Plan()
	if j.Rounds() != 4 || !j.Evaluation(4) || j.Evaluation(3) || plan.Model.Size() != 2 || !(j.rho(1) > 0) {
		t.Errorf("rounds %d size %d ρ %g", j.Rounds(), plan.Model.Size(), j.rho(1))
	}
	for name, text := range map[string]string{
		"unknown model":        strings.Replace(base, "model: logistic", "model: forest", 1),
		"mlp without units":    strings.Replace(base, "model: logistic", "model: mlp", 1),
		"regression positive":  strings.Replace(base, "model: logistic", "model: linear", 1),
		"no noise":             strings.Replace(base, "  noise_multiplier: 2\n", "", 1),
		"unknown privacy unit": strings.Replace(base, "privacy: record", "privacy: user", 1),
		"no rounds":            strings.Replace(base, "rounds: 3", "rounds: 0", 1),
		"zero std":             strings.Replace(base, "std: 10", "std: 0", 1),
	} {
		if _, err := Parse([]byte(text)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if _, err := Parse([]byte(strings.Replace(base, "privacy: record", "privacy: none", 1))); err != nil {
		t.Errorf("an unnoised job over all (two of two) members: %v", err)
	}
	// Three members, threshold 2: an unnoised job would let two rounds
	// over different pairs tell one member's update.
	kc := nodeKey(t, dir, "c").Verifier
	three := strings.Replace(strings.SplitN(sumJob(ka, kb, kc), "sum:", 2)[0], "kind: sum", "kind: train", 1) + "train:" + strings.SplitN(base, "train:", 2)[1]
	if _, err := Parse([]byte(three)); err != nil {
		t.Fatalf("three members with DP-SGD: %v", err)
	}
	if _, err := Parse([]byte(strings.Replace(three, "privacy: record", "privacy: none", 1))); err == nil {
		t.Error("an unnoised job with a threshold below all members parsed")
	}
	if _, err := Parse([]byte(strings.Replace(base, "model: logistic", "model: mlp\n  hidden: 8", 1))); err != nil {
		t.Errorf("an MLP job: %v", err)
	}
}

// TestApprovalsSignTheHashAndTheFilter: an approval verifies with the
// node's key for exactly its job, hash, node and row filter; another
// node's key, an edited filter or a withdrawal do not verify.
func TestApprovalsSignTheHashAndTheFilter(t *testing.T) {
	dir := t.TempDir()
	ka, kb := nodeKey(t, filepath.Join(dir, "a"), "a"), nodeKey(t, filepath.Join(dir, "b"), "b")
	j, err := Parse([]byte(sumJob(ka.Verifier, kb.Verifier)))
	if err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(dir, "ws")
	if _, err := Approve(ws, j, "c", ka, "", time.Now()); err == nil {
		t.Error("a node that serves no member approved")
	}
	if _, err := Approve(ws, j, "a", ka, "week <> 'w3'", time.Now()); err != nil {
		t.Fatal(err)
	}
	a, err := ReadApproval(ws, j.ID, "a")
	if err != nil || !a.Verify(ka.Verifier) || a.Hash != j.Hash() {
		t.Fatalf("approval %+v: %v", a, err)
	}
	if a.Verify(kb.Verifier) {
		t.Error("an approval verified with another node's key")
	}
	edited := *a
	edited.RowFilter = "true"
	if edited.Verify(ka.Verifier) {
		t.Error("an approval with an edited row filter verified")
	}
	if err := Withdraw(ws, j.ID, "a", time.Now()); err != nil {
		t.Fatal(err)
	}
	if a, _ := ReadApproval(ws, j.ID, "a"); !a.Withdrawn || a.Verify(ka.Verifier) {
		t.Errorf("a withdrawn approval: %+v", a)
	}
	if _, err := ReadApproval(ws, "../etc", "a"); err == nil {
		t.Error("an approval read outside the jobs directory")
	}
}

// TestSumVectorClampsAndSkips: rows are clamped to the measures' bounds,
// rows outside the domains or with a missing value are skipped, and the
// table reads the cells back (negative sums included) in domain order.
func TestSumVectorClampsAndSkips(t *testing.T) {
	dir := t.TempDir()
	j, err := Parse([]byte(sumJob(nodeKey(t, dir, "a").Verifier, nodeKey(t, dir, "b").Verifier)))
	if err != nil {
		t.Fatal(err)
	}
	s := j.Sum
	rows := [][]any{
		{"x", "w1", int64(50), int64(-2)},
		{"x", "w1", int64(500), int64(-50)}, // clamped to 100 and -5
		{"y", "w3", 7.6, nil},               // 8; returns missing
		{"z", "w1", int64(99), int64(1)},    // not in the domain
		{"x", "w9", int64(99), int64(1)},    // not in the domain
	}
	// At this ε only the noise shares' floor is left: variance 4 each, two
	// shares, so each cell is within 15 (over 5σ) of its clamped sum.
	s.Epsilon = 1e6
	v := s.vector(rows, 2, 2, dp.NewSampler(nil))
	tb := s.table(v, 2, 2)
	want := map[string][2]int64{"x|w1": {150, -7}, "y|w3": {8, 0}}
	for _, row := range tb.Rows {
		k := row[0].(string) + "|" + row[1].(string)
		w := want[k]
		if abs64(row[2].(int64)-w[0]) > 15 || abs64(row[3].(int64)-w[1]) > 15 {
			t.Errorf("cell %s: %v, want %v", k, row[2:], w)
		}
	}
	if len(tb.Rows) != 6 || tb.Columns[2] != "sum_units" || len(tb.Notes) != 2 {
		t.Errorf("table %+v", tb)
	}
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// TestRoundsAreBoundToTheModel (found in the review): a member sent
// another model or another round number than the others derives another
// round id, so the others refuse its keys and no sum comes out — the
// coordinator cannot isolate one member in the difference of two sums.
func TestRoundsAreBoundToTheModel(t *testing.T) {
	dir := t.TempDir()
	ka, kb := nodeKey(t, filepath.Join(dir, "a"), "a"), nodeKey(t, filepath.Join(dir, "b"), "b")
	j, err := Parse([]byte(sumJob(ka.Verifier, kb.Verifier)))
	if err != nil {
		t.Fatal(err)
	}
	var session [16]byte
	same := j.params(session, 1, []float64{0, 1})
	if again := j.params(session, 1, []float64{0, 1}); again.Round != same.Round {
		t.Fatal("one round's id is not reproducible")
	}
	for name, other := range map[string]secagg.Params{
		"another model":        j.params(session, 1, []float64{0, 1.0000001}),
		"another round number": j.params(session, 2, []float64{0, 1}),
	} {
		if other.Round == same.Round {
			t.Errorf("%s: the same round id", name)
			continue
		}
		peers := j.peerKeys()
		a, _ := secagg.NewClient(same, 1, ka, federation.Verify, peers)
		b, _ := secagg.NewClient(other, 2, kb, federation.Verify, peers)
		if _, err := a.ShareKeys([]secagg.Keys{a.Advertise(), b.Advertise()}); !errors.Is(err, secagg.ErrProtocol) {
			t.Errorf("%s: member a took the keys of a member in another round: %v", name, err)
		}
	}
}
