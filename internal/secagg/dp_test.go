package secagg

import (
	"math"
	"slices"
	"testing"

	"github.com/airlock-dev/airlock/internal/dp"
)

// TestDistributedNoiseAndQuantization: real inputs quantized, noised by
// each participant's share, securely summed and decoded equal the plain
// sum plus noise whose variance over T shares is the target (checked
// statistically: 4,000 cells, the sample variance within 10%).
func TestDistributedNoiseAndQuantization(t *testing.T) {
	q := Quantizer{Clip: 2, Scale: 1000}
	const n, th, length, sigma2 = 6, 4, 4000, 250000.0 // σ = 500 in the scale: 0.5 in the reals
	if err := q.Check(n, sigma2); err != nil {
		t.Fatal(err)
	}
	nt := newNet(t, n, th, length)
	s := dp.NewSampler(nil)
	plain := make([]float64, length)
	for i := 1; i <= n; i++ {
		x := make([]float64, length)
		for k := range x {
			x[k] = math.Sin(float64(i*k)) * 3 // some beyond the clip
			plain[k] += math.Max(-2, math.Min(2, x[k]))
		}
		nt.inputs[i] = q.Encode(x, NoiseShare(s, sigma2, th, length))
	}
	// two of six drop before their input: the sum is over 4 = T shares
	drop := []int{2, 6}
	for _, i := range drop {
		for k := range plain {
			plain[k] -= math.Max(-2, math.Min(2, math.Sin(float64(i*k))*3))
		}
	}
	sum, _, err := nt.run(t, drop, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := q.Decode(sum)
	var mean, m2 float64
	for k := range got {
		d := (got[k] - plain[k]) * q.Scale
		mean += d
		m2 += d * d
	}
	mean /= length
	variance := m2/length - mean*mean
	if math.Abs(variance/sigma2-1) > 0.1 || math.Abs(mean) > 5*math.Sqrt(sigma2/length)+1 {
		t.Errorf("noise over T shares: mean %.1f, variance %.0f, want 0 and %.0f", mean, variance, sigma2)
	}
	if slices.Equal(sum, q.Encode(plain, nil)) {
		t.Error("the sum carries no noise")
	}
	if err := (Quantizer{Clip: 1e6, Scale: 1e3}).Check(10, 0); err == nil {
		t.Error("an overflowing quantizer passed its check")
	}
}
