package dp

import (
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// seeded is a deterministic byte source for reproducible statistical tests.
func seeded(seed uint64) *Sampler {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	return NewSampler(rand.NewChaCha8(key))
}

func draws() int {
	if os.Getenv("AIRLOCK_STRESS") != "" {
		return 5_000_000
	}
	return 1_000_000
}

// chiSquare compares observed counts to expected probabilities over the
// integers [-lim, lim], with both tails pooled into end buckets.
func chiSquare(t *testing.T, name string, sample func() int64, pmf func(x int64) float64, lim int64, n int) {
	t.Helper()
	obs := map[int64]int{}
	for i := 0; i < n; i++ {
		x := sample()
		if x < -lim {
			x = -lim - 1
		}
		if x > lim {
			x = lim + 1
		}
		obs[x]++
	}
	var z float64
	for x := -40 * lim; x <= 40*lim; x++ {
		z += pmf(x)
	}
	var stat float64
	cells := 0
	tail := 0.0
	for x := -40 * lim; x < -lim; x++ {
		tail += pmf(x) / z
	}
	expect := func(x int64) float64 {
		if x == -lim-1 || x == lim+1 {
			return tail
		}
		return pmf(x) / z
	}
	for x := -lim - 1; x <= lim+1; x++ {
		e := expect(x) * float64(n)
		if e < 5 {
			continue
		}
		d := float64(obs[x]) - e
		stat += d * d / e
		cells++
	}
	// Wilson–Hilferty: the 1e-4 upper quantile of chi-square with k dof.
	k := float64(cells - 1)
	crit := k * math.Pow(1-2/(9*k)+3.719*math.Sqrt(2/(9*k)), 3)
	if stat > crit {
		t.Fatalf("%s: chi-square %.1f over %d cells exceeds the 1e-4 critical value %.1f", name, stat, cells, crit)
	}
	t.Logf("%s: chi-square %.1f over %d cells (critical %.1f at 1e-4)", name, stat, cells, crit)
}

func TestDiscreteLaplacePMF(t *testing.T) {
	for _, scale := range []float64{0.5, 3, 25.7} {
		s := seeded(uint64(scale * 100))
		num, den := RatUp(scale)
		sc := float64(num.Int64()) / float64(den.Int64())
		chiSquare(t, "dlap", func() int64 { return s.DiscreteLaplace(num, den).Int64() },
			func(x int64) float64 { return math.Exp(-math.Abs(float64(x)) / sc) }, int64(6*sc)+3, draws()/3)
	}
}

func TestDiscreteGaussianPMF(t *testing.T) {
	for _, sigma2 := range []float64{0.25, 4, 400} {
		s := seeded(uint64(sigma2 * 7))
		num, den := RatUp(sigma2)
		v := float64(num.Int64()) / float64(den.Int64())
		chiSquare(t, "dgauss", func() int64 { return s.DiscreteGaussian(num, den).Int64() },
			func(x int64) float64 { return math.Exp(-float64(x*x) / (2 * v)) }, int64(4*math.Sqrt(v))+2, draws()/3)
	}
}

func TestDiscreteGaussianVarianceAndSymmetry(t *testing.T) {
	s := NewSampler(nil) // crypto/rand
	num, den := RatUp(100)
	const n = 100000
	var sum, sq float64
	pos, neg := 0, 0
	for i := 0; i < n; i++ {
		x := float64(s.DiscreteGaussian(num, den).Int64())
		sum += x
		sq += x * x
		if x > 0 {
			pos++
		} else if x < 0 {
			neg++
		}
	}
	want := DiscreteGaussianVariance(100)
	got := sq/n - (sum/n)*(sum/n)
	// Var of the sample variance ≈ 2σ⁴/n: allow 5 standard errors.
	if se := math.Sqrt(2*want*want/n) * 5; math.Abs(got-want) > se {
		t.Fatalf("variance %.2f, want %.2f ± %.2f", got, want, se)
	}
	if d := math.Abs(float64(pos-neg)) / math.Sqrt(float64(pos+neg)); d > 5 {
		t.Fatalf("asymmetric: %d positive, %d negative", pos, neg)
	}
}

func TestBernoulliExpEdgeCases(t *testing.T) {
	s := seeded(1)
	if !s.BernoulliExp(big.NewInt(0), big.NewInt(1)) {
		t.Fatal("exp(0) = 1 must always be true")
	}
	// exp(-50) is ~2e-22: never true in 10k draws.
	for i := 0; i < 10000; i++ {
		if s.BernoulliExp(big.NewInt(50), big.NewInt(1)) {
			t.Fatal("exp(-50) came up true")
		}
	}
	// A huge numerator and denominator with ratio 1/2 behaves like exp(-1/2).
	huge := new(big.Int).Lsh(big.NewInt(1), 200)
	hits := 0
	const n = 40000
	for i := 0; i < n; i++ {
		if s.BernoulliExp(huge, new(big.Int).Mul(huge, big.NewInt(2))) {
			hits++
		}
	}
	if p := float64(hits) / n; math.Abs(p-math.Exp(-0.5)) > 5*math.Sqrt(0.24/n) {
		t.Fatalf("P = %.4f, want %.4f", p, math.Exp(-0.5))
	}
	// Integer gamma: exp(-2).
	hits = 0
	for i := 0; i < n; i++ {
		if s.BernoulliExp(big.NewInt(2), big.NewInt(1)) {
			hits++
		}
	}
	if p := float64(hits) / n; math.Abs(p-math.Exp(-2)) > 5*math.Sqrt(0.12/n) {
		t.Fatalf("P = %.4f, want %.4f", p, math.Exp(-2))
	}
}

func TestAccounting(t *testing.T) {
	for _, c := range []struct{ rho, delta float64 }{{0.01, 1e-6}, {0.5, 1e-6}, {2, 1e-9}} {
		eps := EpsilonForRho(c.rho, c.delta)
		classic := c.rho + 2*math.Sqrt(c.rho*math.Log(1/c.delta))
		if eps > classic+1e-12 || eps <= c.rho {
			t.Fatalf("rho %v: eps %v not in (rho, classic %v]", c.rho, eps, classic)
		}
		back := RhoForEpsDelta(eps, c.delta)
		if math.Abs(back-c.rho)/c.rho > 1e-6 {
			t.Fatalf("round trip rho %v -> eps %v -> rho %v", c.rho, eps, back)
		}
	}
	if EpsilonForRho(0.1, 1e-6) >= EpsilonForRho(0.2, 1e-6) {
		t.Fatal("epsilon must grow with rho")
	}
	num, den := RatUp(0.1)
	if r := new(big.Rat).SetFrac(num, den); r.Cmp(new(big.Rat).SetFloat64(0.1)) < 0 {
		t.Fatal("RatUp rounded down")
	}
}

// TestEmpiricalPrivacyLoss runs the Gaussian-noised count on neighbouring
// inputs (x and x+Δ) and checks that the privacy loss estimated from
// threshold events, with a 99.99% Clopper–Pearson-style margin, stays within
// what ρ-zCDP allows at δ.
func TestEmpiricalPrivacyLoss(t *testing.T) {
	const rho, delta, sens = 0.5, 1e-3, 1.0
	sigma2 := GaussianSigma2(sens, rho)
	num, den := RatUp(sigma2)
	s := seeded(42)
	n := 200000
	eps := EpsilonForRho(rho, delta)
	for _, thr := range []int64{1, 2, 3} {
		a, b := 0, 0
		for i := 0; i < n; i++ {
			if s.DiscreteGaussian(num, den).Int64() >= thr { // dataset D: count 0
				a++
			}
			if 1+s.DiscreteGaussian(num, den).Int64() >= thr { // neighbour D': count 1
				b++
			}
		}
		// Lower confidence bound on ln(P_b - δ)/P_a) using normal margins at 4 sd.
		pa := (float64(a) + 4*math.Sqrt(float64(a))) / float64(n)
		pb := (float64(b) - 4*math.Sqrt(float64(b))) / float64(n)
		if pb-delta <= 0 || pa <= 0 {
			continue
		}
		lower := math.Log((pb - delta) / pa)
		if lower > eps {
			t.Fatalf("threshold %d: empirical loss lower bound %.3f exceeds the claimed ε %.3f", thr, lower, eps)
		}
		t.Logf("threshold %d: loss lower bound %.3f <= ε %.3f", thr, lower, eps)
	}
}

func TestSelectionThresholdBoundsRelease(t *testing.T) {
	// A group that exists only because of one unit (count 1) is released
	// with probability at most δ.
	const sigma2, delta = 4.0, 1e-3
	tau := SelectionThreshold(sigma2, 1, delta)
	num, den := RatUp(sigma2)
	s := seeded(9)
	released := 0
	const n = 200000
	for i := 0; i < n; i++ {
		if float64(1+s.DiscreteGaussian(num, den).Int64()) >= tau {
			released++
		}
	}
	if p := float64(released) / n; p > delta+4*math.Sqrt(delta/n) {
		t.Fatalf("single-unit group released with p=%.5f > δ=%g (τ=%.2f)", p, delta, tau)
	}
}

func BenchmarkDiscreteGaussian(b *testing.B) {
	s := NewSampler(nil)
	num, den := RatUp(1e6)
	for i := 0; i < b.N; i++ {
		s.DiscreteGaussian(num, den)
	}
}

// The cost of a query: the defaults, the split of δ between the
// conversion and partition selection, and the per-statistic shares.
func TestCostOf(t *testing.T) {
	g := CostOf(Gaussian, 0, 0, 4, true)
	if g.Epsilon != DefaultEpsilon || g.Delta != DefaultDelta || g.SelectionDelta != DefaultDelta/2 {
		t.Fatalf("Gaussian defaults: %+v", g)
	}
	if want := RhoForEpsDelta(DefaultEpsilon, DefaultDelta/2); g.Rho != want || g.RhoPerStat != want/4 {
		t.Fatalf("Gaussian ρ %v (per stat %v), want %v: half of δ converts", g.Rho, g.RhoPerStat, want)
	}
	if open := CostOf(Gaussian, 1, 1e-6, 2, false); open.SelectionDelta != 0 || open.Rho != RhoForEpsDelta(1, 1e-6) {
		t.Fatalf("public groups spend no selection δ: %+v", open)
	}
	l := CostOf(Laplace, 0.5, 0, 5, false)
	if l.Delta != 0 || l.Rho != 0.125 || l.EpsPerStat != 0.1 || l.QuantileEpsilon() != 0.1 {
		t.Fatalf("Laplace without selection is pure ε: %+v", l)
	}
	if s := CostOf(Laplace, 0.5, 1e-8, 5, true); s.Delta != 1e-8 || s.SelectionDelta != 1e-8 {
		t.Fatalf("Laplace selection δ: %+v", s)
	}
	rho, d := BudgetLimits(3, 1e-6)
	if rho != RhoForEpsDelta(3, 5e-7) || d != 5e-7 {
		t.Fatalf("budget limits %v %v", rho, d)
	}
	if Period(0) != DefaultPeriod || !PeriodStart(time.Date(2026, 5, 1, 13, 0, 0, 0, time.UTC), 0).Equal(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatal("a budget without a period refreshes daily, at UTC midnight")
	}
	n := NewNoise(l, 2, []float64{1, 10})
	if n.Scale[0] != LaplaceScale(2, 0.1) || n.Scale[1] != LaplaceScale(20, 0.1) || n.Name() != "discrete Laplace" {
		t.Fatalf("Laplace noise scales %v: L0 × L∞ / ε per stat", n.Scale)
	}
}
