package dp

import (
	"math"
	"math/big"
)

// RatDown returns num/den with den = 2^20 and num/den <= x, for privacy
// parameters that must never be rounded up.
func RatDown(x float64) (num, den *big.Int) {
	f := new(big.Float).SetFloat64(x)
	f.Mul(f, big.NewFloat(ratDen))
	n, _ := f.Int(nil)
	return n, big.NewInt(ratDen)
}

// Perm returns a uniformly random permutation of [0, n).
func (s *Sampler) Perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := int(s.uniform(big.NewInt(int64(i + 1))).Int64())
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// QuantileBin picks the bin holding the fraction-quantile of a histogram
// (bin counts in order) with ε-DP, when one unit can change the counts by at
// most linf in total. It is the exponential mechanism with utility
// −(distance from the target rank fraction·n to the bin's rank interval),
// sampled exactly by permute-and-flip (McKenna and Sheldon 2020): bins are
// visited in random order and accepted with probability
// exp(ε·(u − u*)/(2Δu)), Δu = 2·linf, using BernoulliExp on rationals. ε is
// rounded down, never up.
func (s *Sampler) QuantileBin(counts []int64, fraction, eps float64, linf int) int {
	n := int64(0)
	for _, c := range counts {
		n += c
	}
	q := new(big.Rat).SetFloat64(fraction)
	target := new(big.Rat).Mul(q, new(big.Rat).SetInt64(n))
	utils := make([]*big.Rat, len(counts))
	best := (*big.Rat)(nil)
	below := int64(0)
	for j, c := range counts {
		lo, hi := new(big.Rat).SetInt64(below), new(big.Rat).SetInt64(below+c)
		d := new(big.Rat)
		switch {
		case target.Cmp(lo) < 0:
			d.Sub(lo, target)
		case target.Cmp(hi) > 0:
			d.Sub(target, hi)
		}
		utils[j] = d.Neg(d)
		if best == nil || utils[j].Cmp(best) > 0 {
			best = utils[j]
		}
		below += c
	}
	en, ed := RatDown(eps)
	if en.Sign() == 0 {
		return s.Perm(len(counts))[0] // no budget: uniform
	}
	// γ_j = (u* − u_j)·ε / (2·Δu), Δu = 2·linf.
	scale := new(big.Rat).SetFrac(en, new(big.Int).Mul(ed, big.NewInt(int64(4*linf))))
	for _, j := range s.Perm(len(counts)) {
		g := new(big.Rat).Sub(best, utils[j])
		g.Mul(g, scale)
		if s.BernoulliExp(g.Num(), g.Denom()) {
			return j
		}
	}
	return len(counts) - 1 // unreachable: the best bin is always accepted
}

// QuantileEpsilonOfRho is the ε of a pure-DP mechanism worth ρ of zCDP
// (ε-DP ⇒ ε²/2-zCDP).
func QuantileEpsilonOfRho(rho float64) float64 { return math.Sqrt(2 * rho) }
