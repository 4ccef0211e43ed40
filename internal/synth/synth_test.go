package synth

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/anon"
	"github.com/airlock-dev/airlock/internal/dp"
)

// TestBudgetMatchesPrivatePGM checks the (ε, δ) → ρ conversion and MST's
// noise scale against private-pgm's cdp2adp.py (σ = √(3/(2ρ)) per unit
// of weight).
func TestBudgetMatchesPrivatePGM(t *testing.T) {
	for _, tc := range []struct{ eps, delta, rho, sigma float64 }{
		{1, 1e-9, 0.0149730577, 10.008993},
		{1, 1e-5, 0.0305565952, 7.006371},
		{0.1, 1e-9, 0.0001771384, 92.021480},
		{10, 1e-9, 1.0907857044, 1.172670},
	} {
		rho := dp.RhoForEpsDelta(tc.eps, tc.delta)
		if math.Abs(rho-tc.rho) > 1e-6*tc.rho {
			t.Errorf("ε=%v δ=%v: ρ %v, private-pgm %v", tc.eps, tc.delta, rho, tc.rho)
		}
		if s := math.Sqrt(3 / (2 * rho)); math.Abs(s-tc.sigma) > 1e-4*tc.sigma {
			t.Errorf("ε=%v δ=%v: σ %v, private-pgm %v", tc.eps, tc.delta, s, tc.sigma)
		}
	}
}

// TestExponentialMechanismFrequencies: choices are ∝ exp(ε·score/2).
func TestExponentialMechanismFrequencies(t *testing.T) {
	s := seedFrom(7)
	scores := []float64{0, 1, 2}
	eps := 1.0
	const n = 30000
	got := make([]float64, 3)
	for range n {
		got[exponential(s, scores, eps)]++
	}
	z := 0.0
	for _, v := range scores {
		z += math.Exp(eps * v / 2)
	}
	chi := 0.0
	for i, v := range scores {
		want := n * math.Exp(eps*v/2) / z
		chi += (got[i] - want) * (got[i] - want) / want
	}
	// χ² with 2 degrees of freedom: P(χ² > 13.8) = 0.001.
	if chi > 13.8 {
		t.Fatalf("frequencies %v, χ² = %.1f", got, chi)
	}
}

func TestAdultSynthesisUtility(t *testing.T) {
	real, err := anon.ReadTableFile("../anon/testdata/adult/adult.csv")
	if err != nil {
		t.Fatal(err)
	}
	public := map[string]bool{}
	for _, c := range real.Columns {
		public[c] = true // ARX's hierarchies list every value
	}
	res, err := Synthesize(real, Config{Epsilon: 1, Delta: 1e-9, Public: public}, seedFrom(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Edges) != len(real.Columns)-1 {
		t.Fatalf("%d edges for %d columns", len(res.Edges), len(real.Columns))
	}
	if n := res.Table.Rows(); math.Abs(float64(n-real.Rows())) > 200 {
		t.Fatalf("%d synthetic rows for %d real", n, real.Rows())
	}
	u := Compare(real, res.Table, "salary-class")
	t.Logf("utility at ε=1: %+v, edges %v", u, res.Edges)
	if u.OneWay > 0.03 || u.TwoWay > 0.08 {
		t.Errorf("marginal errors %v / %v are too large", u.OneWay, u.TwoWay)
	}
	// A tree keeps one neighbour of the label (here marital status), so a
	// naive Bayes classifier trained on synthetic rows loses the other
	// features' signal: within ten points of one trained on real rows.
	if u.TrainedOnSynthetic < u.TrainedOnReal-0.10 {
		t.Errorf("classifier trained on synthetic rows: %v (real %v, majority %v)", u.TrainedOnSynthetic, u.TrainedOnReal, u.Majority)
	}
	if _, err := Synthesize(real, Config{Epsilon: 0, Delta: 1e-9}, seedFrom(1)); err != ErrBudget {
		t.Fatalf("ε = 0: got %v, want ErrBudget", err)
	}
}

// TestRareValuesOfPrivateColumnsDoNotAppear: a value held by one record of
// a column whose domain is not public never comes out; it becomes "*".
func TestRareValuesOfPrivateColumnsDoNotAppear(t *testing.T) {
	var b strings.Builder
	b.WriteString("kind,code\n")
	for i := range 3000 {
		b.WriteString([]string{"a", "b", "c"}[i%3] + ",common\n")
	}
	b.WriteString("a,secret-code-123\n")
	tab, err := anon.ReadTable(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(20) {
		res, err := Synthesize(tab, Config{Epsilon: 4, Delta: 1e-9}, seedFrom(seed))
		if err != nil {
			t.Fatal(err)
		}
		for r := range res.Table.Rows() {
			if res.Table.Value(1, r) == "secret-code-123" {
				t.Fatalf("seed %d: a one-record value was released", seed)
			}
		}
	}
}

// seedFrom derives a deterministic sampler for tests.
func seedFrom(x uint64) *dp.Sampler {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], x)
	return dp.NewSampler(rand.NewChaCha8(seed))
}
