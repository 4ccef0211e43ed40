package secagg

import (
	"fmt"
	"math"

	"github.com/airlock-dev/airlock/internal/dp"
)

// Quantizer turns real vectors into the ring the masks live in: values
// clipped to [-Clip, Clip], scaled and rounded to integers, two's
// complement mod 2^32. A sum decodes correctly while its magnitude stays
// below 2^31, which Check guarantees for n inputs plus noise.
type Quantizer struct {
	Clip  float64
	Scale float64
}

// Check reports whether the sum of n clipped inputs plus noise of
// variance sigma2 (to 10 standard deviations) fits the ring.
func (q Quantizer) Check(n int, sigma2 float64) error {
	bound := float64(n)*math.Round(q.Clip*q.Scale) + 10*math.Sqrt(sigma2)
	if !(q.Clip > 0 && q.Scale > 0) || bound >= 1<<31 {
		return fmt.Errorf("secagg: %d inputs clipped at %g, scaled by %g, with noise σ² %g, can reach %g: beyond 2^31", n, q.Clip, q.Scale, sigma2, bound)
	}
	return nil
}

// Encode clips, scales and rounds x, and adds noise (already in the
// integer scale): an input outside the clip is clipped, never refused, so
// the clip is the sensitivity.
func (q Quantizer) Encode(x []float64, noise []int64) []uint32 {
	out := make([]uint32, len(x))
	for i, v := range x {
		if math.IsNaN(v) {
			v = 0 // NaN compares false with the clip: it would pass through
		}
		v = math.Max(-q.Clip, math.Min(q.Clip, v))
		n := int64(math.Round(v * q.Scale))
		if noise != nil {
			n += noise[i]
		}
		out[i] = uint32(n)
	}
	return out
}

// Decode reads a sum back as reals.
func (q Quantizer) Decode(sum []uint32) []float64 {
	out := make([]float64, len(sum))
	for i, v := range sum {
		out[i] = float64(int32(v)) / q.Scale
	}
	return out
}

// NoiseShare is one participant's share of distributed discrete Gaussian
// noise: each adds variance sigma2/t, so the sum over any t survivors
// carries at least the full sigma2 (more survivors, more noise) and the
// coordinator never sees a sum with less. A sum of n discrete Gaussians
// of variance s² is not exactly one: Kairouz, Liu and Steinke (2021)
// bound the extra privacy loss by τ = 10·Σ_{k<n} exp(−2π²s²·k/(k+1)); with
// each share's variance at least 4 (a floor: more noise, never less) τ is
// below 10⁻¹⁴ for up to 64 participants, which the accounting leaves out.
func NoiseShare(s *dp.Sampler, sigma2 float64, t, length int) []int64 {
	num, den := dp.RatUp(math.Max(sigma2/float64(t), 4))
	out := make([]int64, length)
	for i := range out {
		out[i] = s.DiscreteGaussian(num, den).Int64()
	}
	return out
}
