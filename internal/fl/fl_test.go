package fl

import (
	"encoding/csv"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/dp"
)

// adult reads the Adult census data (the anonymisation tests' copy).
func adult(t testing.TB) (Schema, []map[string]string) {
	f, err := os.Open("../anon/testdata/adult/adult.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = ';'
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	head := recs[0]
	var rows []map[string]string
	values := map[string][]string{}
	var sum, sum2 float64
	for _, rec := range recs[1:] {
		row := map[string]string{}
		for i, h := range head {
			row[h] = rec[i]
			if h != "age" && h != "salary-class" && !slices.Contains(values[h], rec[i]) {
				values[h] = append(values[h], rec[i])
			}
		}
		var age float64
		for _, c := range row["age"] {
			age = age*10 + float64(c-'0')
		}
		sum, sum2 = sum+age, sum2+age*age
		rows = append(rows, row)
	}
	n := float64(len(rows))
	s := Schema{Numeric: []Numeric{{Name: "age", Mean: sum / n, Std: math.Sqrt(sum2/n - (sum/n)*(sum/n))}}, Label: "salary-class", Positive: ">50K"}
	for _, h := range head {
		if h != "age" && h != "salary-class" {
			vs := values[h]
			slices.Sort(vs)
			s.Categorical = append(s.Categorical, Categorical{Name: h, Values: vs})
		}
	}
	return s, rows
}

func encode(t testing.TB, s Schema, rows []map[string]string) Data {
	var d Data
	for _, r := range rows {
		x, y := s.Encode(r)
		d.X, d.Y = append(d.X, x), append(d.Y, y)
	}
	return d
}

// TestFederatedMatchesCentralised: three nodes with disjoint, non-IID
// slices of Adult (split by workclass), trained by 20 FedAvg rounds whose
// aggregate is a secure sum, reach the accuracy of training on the union
// within 1 point, on the same held-out 20%.
func TestFederatedMatchesCentralised(t *testing.T) {
	s, train, test, parts := adultSplit(t)
	m := Model{Kind: Logistic, Dim: s.Dim()}
	central := Train(m, m.Init(0), train, Local{Epochs: 10, LR: 0.1, Batch: 64, Seed: 1})
	plan := Plan{Model: m, Local: Local{Epochs: 1, LR: 0.1, Batch: 64}, Unit: NoDP}
	if err := plan.Check(3); err != nil {
		t.Fatal(err)
	}
	global := m.Init(0)
	var pr Progress
	var err error
	for round := range 20 {
		plan.Local.Seed = uint64(round + 1)
		if global, pr, err = plan.RoundLocal(global, parts, nil); err != nil {
			t.Fatal(err)
		}
	}
	ca, fa := m.Score(central, test), m.Score(global, test)
	t.Logf("accuracy: centralised %.4f, federated %.4f (slices %d/%d/%d rows); the last round measured %.4f over %d rows", ca, fa, len(parts[0].X), len(parts[1].X), len(parts[2].X), pr.Score, pr.Rows)
	if ca < 0.8 {
		t.Errorf("centralised accuracy %.4f: the model did not learn", ca)
	}
	if math.Abs(ca-fa) > 0.01 {
		t.Errorf("federated %.4f vs centralised %.4f: more than 1 point apart", fa, ca)
	}
	if pr.Rows != int64(len(train.X)) || math.Abs(pr.Score-m.Score(global, train)) > 0.02 {
		t.Errorf("the round's measured score %.4f over %d rows, want about the training accuracy over %d", pr.Score, pr.Rows, len(train.X))
	}
}

// adultSplit is Adult shuffled (fixed seed), its last fifth held out, the
// rest split by workclass over three nodes (non-IID).
func adultSplit(t testing.TB) (Schema, Data, Data, []Data) {
	s, rows := adult(t)
	r := mrand.New(mrand.NewPCG(42, 42))
	r.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	cut := len(rows) * 4 / 5
	train, test := rows[:cut], encode(t, s, rows[cut:])
	var slices3 [3][]map[string]string
	for _, row := range train {
		switch w := row["workclass"]; {
		case w == "Private":
			slices3[0] = append(slices3[0], row)
		case strings.HasPrefix(w, "Self-emp"):
			slices3[1] = append(slices3[1], row)
		default:
			slices3[2] = append(slices3[2], row)
		}
	}
	parts := make([]Data, 3)
	for i := range parts {
		parts[i] = encode(t, s, slices3[i])
	}
	return s, encode(t, s, train), test, parts
}

// TestRecordLevelDPKeepsAccuracy: DP-SGD inside each node at ε = 1 in
// total (δ = 1e-5) over 10 rounds still learns the salary class, and the
// rounds' accounted cost stays within that ε.
func TestRecordLevelDPKeepsAccuracy(t *testing.T) {
	s, _, test, parts := adultSplit(t)
	m := Model{Kind: Logistic, Dim: s.Dim()}
	rounds, budget := 10, dp.RhoForEpsDelta(1, 1e-5)
	plan := Plan{Model: m, Local: Local{Epochs: 1, LR: 0.5, Batch: 256}, Unit: Record, Clip: 1}
	plan.Noise = NoiseFor(budget/float64(rounds)-plan.MetricRho(), 1, m.Size(), 0)
	if err := plan.Check(3); err != nil {
		t.Fatal(err)
	}
	global := m.Init(0)
	var err error
	for range rounds {
		if global, _, err = plan.RoundLocal(global, parts, dp.NewSampler(nil)); err != nil {
			t.Fatal(err)
		}
	}
	spent := plan.RhoPerRound() * float64(rounds)
	acc := m.Score(global, test)
	t.Logf("z %.2f, ρ spent %.5f of %.5f (ε %.3f), accuracy %.4f", plan.Noise, spent, budget, dp.EpsilonForRho(spent, 1e-5), acc)
	if spent > budget*(1+1e-9) {
		t.Errorf("the rounds cost ρ %.5f, more than the budget %.5f", spent, budget)
	}
	if acc < 0.78 {
		t.Errorf("accuracy %.4f at ε = 1: DP-SGD did not learn (the majority class alone scores about 0.76)", acc)
	}
}

// TestModelsLearn: the MLP classifies Adult at least as well as the
// logistic baseline's floor, and linear regression predicts age (the
// standardised label) better than its mean.
func TestModelsLearn(t *testing.T) {
	s, _, test, parts := adultSplit(t)
	mlp := Model{Kind: MLP, Dim: s.Dim(), Hidden: 16}
	plan := Plan{Model: mlp, Local: Local{Epochs: 1, LR: 0.1, Batch: 64}, Unit: NoDP}
	global := mlp.Init(3)
	var err error
	for round := range 10 {
		plan.Local.Seed = uint64(round + 1)
		if global, _, err = plan.RoundLocal(global, parts, nil); err != nil {
			t.Fatal(err)
		}
	}
	if acc := mlp.Score(global, test); acc < 0.81 {
		t.Errorf("the federated MLP's accuracy %.4f, want at least 0.81", acc)
	}
	// Age from the other columns: move age from the features to the label.
	rs := s
	rs.Numeric, rs.Label, rs.Positive, rs.LabelMean, rs.LabelStd = nil, "age", "", s.Numeric[0].Mean, s.Numeric[0].Std
	_, rows := adult(t)
	d := encode(t, rs, rows)
	lin := Model{Kind: Linear, Dim: rs.Dim()}
	w := Train(lin, lin.Init(0), d, Local{Epochs: 3, LR: 0.05, Batch: 64, Seed: 1})
	if mse := lin.Score(w, d); mse > 0.8 {
		t.Errorf("linear regression's mean squared error %.3f on the standardised age, want clearly below 1 (the mean's)", mse)
	}
}

// TestApplyRefusesAnInputOutsideTheRange: a sum that honest, clipped
// inputs cannot make — a coordinate too large, a weight that is not the
// survivors' count under DP — is refused, not applied.
func TestApplyRefusesAnInputOutsideTheRange(t *testing.T) {
	m := Model{Kind: Logistic, Dim: 3}
	plan := Plan{Model: m, Local: Local{Epochs: 1, LR: 0.1, Batch: 8}, Unit: Record, Clip: 1, Noise: 1}
	good := make([]uint32, plan.Length())
	good[m.Size()+2] = 3 // three participants' weights
	if _, _, err := plan.Apply(m.Init(0), good, 3); err != nil {
		t.Fatalf("an honest sum: %v", err)
	}
	huge := append([]uint32{}, good...)
	beyond := int32(-3*10*1e5 - 1)
	huge[0] = uint32(beyond)
	if _, _, err := plan.Apply(m.Init(0), huge, 3); err == nil {
		t.Error("a coordinate beyond three clipped inputs was applied")
	}
	heavy := append([]uint32{}, good...)
	heavy[m.Size()+2] = 4
	if _, _, err := plan.Apply(m.Init(0), heavy, 3); err == nil {
		t.Error("a weight of 4 from 3 participants was applied")
	}
}

// TestMemberLevelNoise: under member-level privacy each participant's
// update is clipped and carries a noise share of σ²/t; the sum over t
// survivors has the full variance σ² = (z·clip)² per coordinate, and one
// round costs ρ = Δ²/(2σ²) with Δ the clip plus rounding.
func TestMemberLevelNoise(t *testing.T) {
	m := Model{Kind: Logistic, Dim: 200}
	plan := Plan{Model: m, Local: Local{Epochs: 1, LR: 0.1, Batch: 8, Seed: 1}, Unit: Member, Clip: 0.5, Noise: 2, T: 3}
	if err := plan.Check(3); err != nil {
		t.Fatal(err)
	}
	// Participants with no rows: their updates are zero, so the sum is
	// the noise alone.
	parts := make([]Data, 3)
	next, pr, err := plan.RoundLocal(m.Init(0), parts, dp.NewSampler(nil))
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, w := range next {
		v += w * w * 9 // next = sum/3
	}
	v /= float64(len(next))
	want := (plan.Noise * plan.Clip) * (plan.Noise * plan.Clip)
	if math.Abs(v-want) > 0.25*want {
		t.Errorf("the noise's variance per coordinate %.4f, want %.4f", v, want)
	}
	if !math.IsNaN(pr.Score) {
		t.Errorf("member-level rounds measure no metric, got %v", pr.Score)
	}
	delta := plan.Clip*65536/plan.Clip + math.Sqrt(float64(m.Size()))/2
	sigma := plan.Noise * plan.Clip * 65536 / plan.Clip
	if rho := plan.RhoPerRound(); math.Abs(rho-delta*delta/(2*sigma*sigma)) > 1e-12 || rho > 1.01/(2*plan.Noise*plan.Noise) {
		t.Errorf("ρ per round %g", rho)
	}
}

// TestNonFiniteValuesCannotEscapeTheClip (found in the attack round): a
// value "NaN", "Inf", "1e400" or "abc" encodes as its column's mean, so
// no row is dropped (the row count stays the rows read); a vector with a
// NaN clips to zero and the quantizer maps NaN to 0 (NaN compares false
// with every clip, so it would otherwise pass through).
func TestNonFiniteValuesCannotEscapeTheClip(t *testing.T) {
	s := Schema{Numeric: []Numeric{{Name: "a", Mean: 1, Std: 2}}, Label: "y", Positive: "1"}
	for _, v := range []string{"NaN", "Inf", "-Inf", "1e400", "abc", ""} {
		if x, _ := s.Encode(map[string]string{"a": v}); x[0] != 0 {
			t.Errorf("%q encodes as %g", v, x[0])
		}
	}
	v := []float64{math.NaN(), 1}
	Clip(v, 1)
	if v[0] != 0 || v[1] != 0 {
		t.Errorf("a NaN vector clipped to %v", v)
	}
	m := Model{Kind: Logistic, Dim: 1}
	plan := Plan{Model: m, Local: Local{Epochs: 1, LR: 0.1, Batch: 50, Seed: 1}, Unit: Record, Clip: 1, Noise: 1}
	var d Data
	r := mrand.New(mrand.NewPCG(1, 2))
	for range 400 {
		x, y := s.Encode(map[string]string{"a": fmt.Sprint(r.NormFloat64()*2 + 1), "y": fmt.Sprint(r.IntN(2))})
		d.X, d.Y = append(d.X, x), append(d.Y, y)
	}
	x, y := s.Encode(map[string]string{"a": "NaN", "y": "1"})
	d.X, d.Y = append(d.X, x), append(d.Y, y)
	in, err := plan.Contribute(m.Init(0), d, dp.NewSampler(nil))
	if err != nil {
		t.Fatal(err)
	}
	if q := plan.quantizer().Encode([]float64{math.NaN(), math.Inf(1)}, nil); q[0] != 0 || int32(q[1]) != int32(math.Round(plan.quantizer().Clip*plan.quantizer().Scale)) {
		t.Errorf("the quantizer encodes NaN and +Inf as %d and %d", int32(q[0]), int32(q[1]))
	}
	if rows := int32(in[m.Size()+1]); rows != 401 {
		t.Errorf("rows cell %d, want all 401 rows", rows)
	}
	lin := Model{Kind: Linear, Dim: 1}
	if e := lin.Metric(Weights{math.Inf(1), math.Inf(-1)}, []float64{1}, 0); e != 4 {
		t.Errorf("a NaN squared error scores %g, want the bound 4", e)
	}
}
