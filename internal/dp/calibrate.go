package dp

import (
	"math"
	"math/big"
)

// ratDen is the denominator scales are rounded up to (2^20).
const ratDen = 1 << 20

// RatUp returns num/den with den = 2^20 and num/den >= x: rounding only
// ever increases a noise scale.
func RatUp(x float64) (num, den *big.Int) {
	if x <= 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		panic("dp: scale must be positive and finite")
	}
	f := new(big.Float).SetFloat64(x)
	f.Mul(f, big.NewFloat(ratDen))
	n, acc := f.Int(nil)
	if acc == big.Below { // truncated: round up
		n.Add(n, one)
	}
	if n.Sign() == 0 {
		n.SetInt64(1)
	}
	return n, big.NewInt(ratDen)
}

// GaussianSigma2 is the variance of discrete Gaussian noise that gives
// rho-zCDP for L2 sensitivity delta2: ρ = Δ2²/(2σ²).
func GaussianSigma2(delta2, rho float64) float64 {
	return delta2 * delta2 / (2 * rho)
}

// LaplaceScale is the discrete Laplace scale that gives ε-DP for L1
// sensitivity delta1 (integer-valued statistic).
func LaplaceScale(delta1, eps float64) float64 { return delta1 / eps }

// RhoOfPureEps is the zCDP of an ε-DP mechanism: ρ = ε²/2.
func RhoOfPureEps(eps float64) float64 { return eps * eps / 2 }

// EpsilonForRho converts ρ-zCDP to (ε, δ)-DP with the tight bound of CKS20
// (Proposition 12): ε = min over α>1 of ρα + ln(1/(αδ))/(α−1) + ln(1−1/α).
// It never exceeds the classic ρ + 2√(ρ ln(1/δ)).
func EpsilonForRho(rho, delta float64) float64 {
	if rho <= 0 {
		return 0
	}
	classic := rho + 2*math.Sqrt(rho*math.Log(1/delta))
	f := func(a float64) float64 {
		return rho*a + math.Log(1/(a*delta))/(a-1) + math.Log(1-1/a)
	}
	// f is convex in α on (1, ∞); golden-section search on a wide bracket.
	lo, hi := 1.0+1e-9, 1.0+1e6
	g := (math.Sqrt(5) - 1) / 2
	for i := 0; i < 300; i++ {
		m1, m2 := hi-g*(hi-lo), lo+g*(hi-lo)
		if f(m1) < f(m2) {
			hi = m2
		} else {
			lo = m1
		}
	}
	return math.Min(classic, f((lo+hi)/2))
}

// RhoForEpsDelta is the largest ρ whose (ε, δ) conversion stays within eps.
func RhoForEpsDelta(eps, delta float64) float64 {
	lo, hi := 0.0, eps
	for i := 0; i < 200; i++ {
		mid := (lo + hi) / 2
		if EpsilonForRho(mid, delta) <= eps {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// SelectionThreshold is the noisy distinct-unit count a group must reach
// to be released when its key is not public. A unit reaches at most l0
// groups, adding 1 to each count; with discrete Gaussian noise of variance
// σ² (subgaussian, CKS20) a group that exists only because of one unit is
// released with probability at most exp(−(τ−1)²/(2σ²)) per group, so
// τ = 1 + σ·√(2 ln(l0/δ)) bounds the chance that any of them is at δ.
func SelectionThreshold(sigma2 float64, l0 int, delta float64) float64 {
	return 1 + math.Sqrt(sigma2)*math.Sqrt(2*math.Log(float64(l0)/delta))
}

// DiscreteGaussianCI95 is the exact 95% half-width of discrete Gaussian
// noise N_Z(0, σ²): the smallest integer h with P(|X| ≤ h) ≥ 0.95, summed
// from the pmf. (The subgaussian tail bound 2·exp(−h²/2σ²) ≤ 5% gives a
// width of 2.72σ, a 99% interval.) Above σ = 10⁴ the pmf is the continuous
// density to within 10⁻⁸ and the normal quantile 1.959964σ is used.
func DiscreteGaussianCI95(sigma2 float64) float64 {
	sigma := math.Sqrt(sigma2)
	if sigma > 1e4 {
		return math.Ceil(1.959963984540054 * sigma)
	}
	lim := int(40*sigma) + 40
	mass := make([]float64, lim+1)
	var z float64
	for x := 0; x <= lim; x++ {
		mass[x] = math.Exp(-float64(x) * float64(x) / (2 * sigma2))
		if x == 0 {
			z += mass[x]
		} else {
			z += 2 * mass[x]
		}
	}
	inside := mass[0] / z
	h := 0
	for inside < 0.95 && h < lim {
		h++
		inside += 2 * mass[h] / z
	}
	return float64(h)
}

// DiscreteLaplaceCI95 is the exact 95% half-width of discrete Laplace
// noise of scale b (pmf ∝ q^|x| with q = e^(−1/b)): the smallest integer h
// with P(|X| > h) = 2·q^(h+1)/(1+q) ≤ 5%.
func DiscreteLaplaceCI95(b float64) float64 {
	q := math.Exp(-1 / b)
	h := math.Ceil(math.Log(0.05*(1+q)/2)/math.Log(q)) - 1
	return math.Max(0, h)
}

// DiscreteGaussianVariance is the exact variance of N_Z(0, σ²), summed from
// its pmf (reports and tests).
func DiscreteGaussianVariance(sigma2 float64) float64 {
	var z, m float64
	lim := int(20*math.Sqrt(sigma2)) + 20
	for x := -lim; x <= lim; x++ {
		p := math.Exp(-float64(x*x) / (2 * sigma2))
		z += p
		m += float64(x*x) * p
	}
	return m / z
}
