// Package dp holds Airlock's differential-privacy mechanisms: exact
// discrete Laplace and discrete Gaussian samplers (Canonne, Kamath and
// Steinke 2020) in rational arithmetic over a cryptographic random source,
// their calibration, zCDP accounting and the partition-selection threshold.
//
// No floating-point number enters the sampling path: noise is an integer
// drawn from the exact distribution and added to integer statistics
// computed in fixed point by the engine. Floats appear only in reports
// (confidence intervals) and in choosing a scale, which is then rounded up
// to a rational, so rounding can only add noise.
package dp

import (
	"crypto/rand"
	"io"
	"math/big"
)

// Sampler draws exact samples from a random byte source.
type Sampler struct {
	src io.Reader
}

// NewSampler returns a sampler over src; nil means crypto/rand.
func NewSampler(src io.Reader) *Sampler {
	if src == nil {
		src = rand.Reader
	}
	return &Sampler{src: src}
}

var (
	one = big.NewInt(1)
	two = big.NewInt(2)
)

// uniform returns a uniform integer in [0, n).
func (s *Sampler) uniform(n *big.Int) *big.Int {
	v, err := rand.Int(s.src, n)
	if err != nil {
		panic("dp: random source failed: " + err.Error())
	}
	return v
}

// bernoulli returns true with probability num/den (0 <= num <= den).
func (s *Sampler) bernoulli(num, den *big.Int) bool {
	return s.uniform(den).Cmp(num) < 0
}

// bernoulliExp1 returns true with probability exp(-num/den), num/den in [0, 1]
// (CKS20 Algorithm 1, first part).
func (s *Sampler) bernoulliExp1(num, den *big.Int) bool {
	k := big.NewInt(1)
	d := new(big.Int)
	for {
		d.Mul(den, k)
		if !s.bernoulli(num, d) {
			return k.Bit(0) == 1
		}
		k.Add(k, one)
	}
}

// BernoulliExp returns true with probability exp(-num/den), num/den >= 0.
func (s *Sampler) BernoulliExp(num, den *big.Int) bool {
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	for i := new(big.Int); i.Cmp(q) < 0; i.Add(i, one) {
		if !s.bernoulliExp1(one, one) {
			return false
		}
	}
	return s.bernoulliExp1(r, den)
}

// DiscreteLaplace draws X with P(X = x) ∝ exp(-|x|·den/num), i.e. scale
// num/den (CKS20 Algorithm 2).
func (s *Sampler) DiscreteLaplace(num, den *big.Int) *big.Int {
	t, sc := num, den // scale t/s in the paper's notation
	x := new(big.Int)
	for {
		u := s.uniform(t)
		if !s.BernoulliExp(u, t) {
			continue
		}
		v := new(big.Int)
		for s.bernoulliExp1(one, one) {
			v.Add(v, one)
		}
		x.Mul(t, v)
		x.Add(x, u)
		y := new(big.Int).Quo(x, sc)
		neg := s.bernoulli(one, two)
		if neg && y.Sign() == 0 {
			continue
		}
		if neg {
			y.Neg(y)
		}
		return y
	}
}

// DiscreteGaussian draws X with P(X = x) ∝ exp(-x²/(2σ²)), σ² = num/den
// (CKS20 Algorithm 3).
func (s *Sampler) DiscreteGaussian(num, den *big.Int) *big.Int {
	// t = floor(σ) + 1, with floor(sqrt(num/den)) = floor(isqrt(num·den)/den).
	t := new(big.Int).Sqrt(new(big.Int).Mul(num, den))
	t.Quo(t, den)
	t.Add(t, one)
	// Acceptance exponent (|Y| - σ²/t)² / (2σ²) = (|Y|·den·t - num)² / (2·num·den·t²).
	gden := new(big.Int).Mul(num, den)
	gden.Mul(gden, t)
	gden.Mul(gden, t)
	gden.Mul(gden, two)
	for {
		y := s.DiscreteLaplace(t, one)
		g := new(big.Int).Abs(y)
		g.Mul(g, den)
		g.Mul(g, t)
		g.Sub(g, num)
		g.Mul(g, g)
		if s.BernoulliExp(g, gden) {
			return y
		}
	}
}
