package fl

import (
	"math"

	"github.com/airlock-dev/airlock/internal/dp"
)

// DPSGD makes each step of local training differentially private for the
// records it reads (Abadi et al. 2016), with the project's exact discrete
// Gaussian: each example's gradient is clipped to L2 norm Clip and
// rounded onto the grid Clip/Grid, the batch's integer sum gets discrete
// Gaussian noise of standard deviation Noise·Grid per coordinate (σ =
// Noise × Clip in gradient units), and the step uses the noisy sum.
//
// Neighbouring datasets replace one record (the node's row count is its
// owner's, and public to the owner; batches are a fixed partition of a
// shuffle, so each record is in one step per epoch): one step's integer
// sum moves by at most Δ = 2·(Grid + √d/2) in L2, its zCDP cost is
// Δ²/(2σ²), and an epoch costs one step's (parallel composition), the
// epochs add up.
type DPSGD struct {
	Clip    float64
	Noise   float64 // the noise multiplier z
	Grid    float64 // grid points per Clip; default 1024
	Sampler *dp.Sampler
}

func (p DPSGD) grid() float64 {
	if p.Grid > 0 {
		return p.Grid
	}
	return 1024
}

// RhoPerEpoch is one epoch's zCDP cost for a model of size weights.
func (p DPSGD) RhoPerEpoch(size int) float64 {
	delta := 2 * (p.grid() + math.Sqrt(float64(size))/2)
	sigma := p.Noise * p.grid()
	return delta * delta / (2 * sigma * sigma)
}

// NoiseFor is the noise multiplier that makes epochs epochs cost rho.
func NoiseFor(rho float64, epochs, size int, grid float64) float64 {
	p := DPSGD{Grid: grid, Noise: 1}
	return math.Sqrt(p.RhoPerEpoch(size) * float64(epochs) / rho)
}

type noisySum struct {
	p    DPSGD
	s    float64 // grid points per gradient unit
	sum  []int64
	clip []float64
}

func (p DPSGD) sum(size int) *noisySum {
	return &noisySum{p: p, s: p.grid() / p.Clip, sum: make([]int64, size), clip: make([]float64, size)}
}

func (n *noisySum) add(g []float64) {
	copy(n.clip, g)
	Clip(n.clip, n.p.Clip)
	for k, v := range n.clip {
		n.sum[k] += int64(math.Round(v * n.s))
	}
}

// release writes the noisy sum, in gradient units, into out and resets.
func (n *noisySum) release(out []float64) {
	sd := n.p.Noise * n.p.grid()
	num, den := dp.RatUp(sd * sd)
	for k, v := range n.sum {
		out[k] = float64(v+n.p.Sampler.DiscreteGaussian(num, den).Int64()) / n.s
	}
	clear(n.sum)
}
