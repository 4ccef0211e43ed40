package dp

import (
	"math"
	"testing"
)

// The reported intervals are exact 95% intervals: the pmf mass inside
// [-h, h] is at least 95%, and inside [-(h-1), h-1] it is less.
func TestCI95IsExact(t *testing.T) {
	inside := func(pmf func(x float64) float64, h float64) float64 {
		var in, all float64
		for x := -5000.0; x <= 5000; x++ {
			p := pmf(x)
			all += p
			if math.Abs(x) <= h {
				in += p
			}
		}
		return in / all
	}
	for _, sigma := range []float64{0.5, 1, 3, 10, 45.94, 300} {
		pmf := func(x float64) float64 { return math.Exp(-x * x / (2 * sigma * sigma)) }
		h := DiscreteGaussianCI95(sigma * sigma)
		if got := inside(pmf, h); got < 0.95 {
			t.Errorf("gaussian σ=%g: h=%g covers %.4f, want >= 0.95", sigma, h, got)
		}
		if got := inside(pmf, h-1); h > 0 && got >= 0.95 {
			t.Errorf("gaussian σ=%g: h-1=%g already covers %.4f: h is not the smallest", sigma, h-1, got)
		}
		if sigma >= 10 && math.Abs(h/sigma-1.96) > 0.1 {
			t.Errorf("gaussian σ=%g: h=%g is %.3fσ, want about 1.96σ", sigma, h, h/sigma)
		}
	}
	for _, b := range []float64{0.3, 1, 4.5, 18, 200} {
		pmf := func(x float64) float64 { return math.Exp(-math.Abs(x) / b) }
		h := DiscreteLaplaceCI95(b)
		if got := inside(pmf, h); got < 0.95 {
			t.Errorf("laplace b=%g: h=%g covers %.4f, want >= 0.95", b, h, got)
		}
		if got := inside(pmf, h-1); h > 0 && got >= 0.95 {
			t.Errorf("laplace b=%g: h-1 covers %.4f: h is not the smallest", b, got)
		}
	}
	// Above σ = 1e4 the normal quantile is used; it must agree with the sum.
	if a, b := DiscreteGaussianCI95(1e4*1e4), DiscreteGaussianCI95(9999*9999); math.Abs(a-b) > 5 {
		t.Errorf("the switch to the normal quantile jumps: %g vs %g", a, b)
	}
}
