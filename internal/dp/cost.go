package dp

import (
	"math"
	"math/big"
	"time"
)

// The defaults an agreement's DP rule and budget fall back to.
const (
	// DefaultEpsilon is a query's ε when the rule sets none.
	DefaultEpsilon = 1.0
	// DefaultDelta is a query's δ when the rule sets none (Gaussian noise,
	// or partition selection under Laplace noise).
	DefaultDelta = 1e-7
	// DefaultPeriod is how often a budget refreshes when it says nothing.
	DefaultPeriod = 24 * time.Hour
)

// Mechanism is the noise a rule adds.
type Mechanism int

const (
	// Gaussian is discrete Gaussian noise, accounted in zCDP.
	Gaussian Mechanism = iota
	// Laplace is discrete Laplace noise: pure ε (ρ = ε²/2 in the ledger).
	Laplace
)

// MechanismOf names a rule's noise ("laplace"; anything else is Gaussian).
func MechanismOf(name string) Mechanism {
	if name == "laplace" {
		return Laplace
	}
	return Gaussian
}

// Cost is what one DP query spends, and how it is split over its
// statistics.
type Cost struct {
	Mechanism Mechanism
	Epsilon   float64 // reported ε
	Delta     float64 // reported δ
	Rho       float64 // charged to the ledger
	// SelectionDelta is the δ of partition selection, charged to the
	// ledger's δ sum (0 when the groups are public or there are none).
	SelectionDelta float64
	RhoPerStat     float64 // Gaussian: ρ of each statistic
	EpsPerStat     float64 // Laplace: ε of each statistic
}

// CostOf is the cost of a query of stats statistics at (eps, delta) per
// query (0 = the defaults). Gaussian: the (ε, δ) query converts to ρ with
// half of δ when partitions are selected, the other half going to the
// selection. Laplace: ε splits evenly over the statistics; δ is spent by
// partition selection only.
func CostOf(m Mechanism, eps, delta float64, stats int, selection bool) Cost {
	if eps <= 0 {
		eps = DefaultEpsilon
	}
	if delta <= 0 {
		delta = DefaultDelta
	}
	if m == Laplace {
		c := Cost{Mechanism: m, Epsilon: eps, Rho: RhoOfPureEps(eps), EpsPerStat: eps / float64(stats)}
		if selection {
			c.Delta, c.SelectionDelta = delta, delta
		}
		return c
	}
	c := Cost{Mechanism: m, Epsilon: eps, Delta: delta}
	convDelta := delta
	if selection {
		c.SelectionDelta, convDelta = delta/2, delta/2
	}
	c.Rho = RhoForEpsDelta(eps, convDelta)
	c.RhoPerStat = c.Rho / float64(stats)
	return c
}

// QuantileEpsilon is the pure ε one quantile statistic may use.
func (c Cost) QuantileEpsilon() float64 {
	if c.Mechanism == Laplace {
		return c.EpsPerStat
	}
	return QuantileEpsilonOfRho(c.RhoPerStat)
}

// BudgetLimits converts an agreement's (ε, δ) budget to the ledger's
// limits: half of δ for the zCDP conversion of all noise, half for
// partition selections.
func BudgetLimits(eps, delta float64) (rho, deltaLimit float64) {
	return RhoForEpsDelta(eps, delta/2), delta / 2
}

// Spent is the ε a ledger's ρ amounts to under a budget's δ.
func Spent(rho, budgetDelta float64) float64 { return EpsilonForRho(rho, budgetDelta/2) }

// Period is a budget's refresh period (DefaultPeriod when unset).
func Period(p time.Duration) time.Duration {
	if p <= 0 {
		return DefaultPeriod
	}
	return p
}

// PeriodStart is the start of the period now falls in.
func PeriodStart(now time.Time, p time.Duration) time.Time { return now.UTC().Truncate(Period(p)) }

// Noise is the noise of each statistic of one query.
type Noise struct {
	Mechanism Mechanism
	// Scale is each statistic's discrete Laplace scale b, or discrete
	// Gaussian variance σ², in integer units.
	Scale []float64
}

// NewNoise calibrates the noise of statistics whose per-unit sensitivity
// is linf[i], when one unit reaches at most l0 groups.
func NewNoise(c Cost, l0 int, linf []float64) Noise {
	n := Noise{Mechanism: c.Mechanism, Scale: make([]float64, len(linf))}
	for i, s := range linf {
		if c.Mechanism == Laplace {
			n.Scale[i] = LaplaceScale(float64(l0)*s, c.EpsPerStat)
		} else {
			n.Scale[i] = GaussianSigma2(math.Sqrt(float64(l0))*s, c.RhoPerStat)
		}
	}
	return n
}

// Sample draws statistic i's noise.
func (n Noise) Sample(s *Sampler, i int) *big.Int {
	num, den := RatUp(n.Scale[i])
	if n.Mechanism == Laplace {
		return s.DiscreteLaplace(num, den)
	}
	return s.DiscreteGaussian(num, den)
}

// Name is the mechanism's name, as reports say it.
func (n Noise) Name() string {
	if n.Mechanism == Laplace {
		return "discrete Laplace"
	}
	return "discrete Gaussian"
}

// SD is statistic i's noise standard deviation, in integer units.
func (n Noise) SD(i int) float64 {
	if n.Mechanism == Laplace {
		b := n.Scale[i]
		return math.Sqrt(2*math.Exp(-1/b)) / (1 - math.Exp(-1/b)) // exact for the discrete Laplace
	}
	return math.Sqrt(n.Scale[i])
}

// CI95 is the exact 95% half-width of statistic i's noise.
func (n Noise) CI95(i int) float64 {
	if n.Mechanism == Laplace {
		return DiscreteLaplaceCI95(n.Scale[i])
	}
	return DiscreteGaussianCI95(n.Scale[i])
}

// Threshold is the partition-selection threshold on the noisy unit count
// (statistic 0) for groups reached by at most l0 per unit, at δ.
func (n Noise) Threshold(l0 int, delta float64) float64 {
	if n.Mechanism == Laplace {
		// P(X >= k) <= exp(-k/b) for the discrete Laplace; union over L0 groups.
		return 1 + n.Scale[0]*math.Log(float64(l0)/delta)
	}
	return SelectionThreshold(n.Scale[0], l0, delta)
}
