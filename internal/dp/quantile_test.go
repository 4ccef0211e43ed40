package dp

import (
	"math"
	"testing"
)

func TestQuantileBinFindsTheBinAtLargeEpsilon(t *testing.T) {
	s := seeded(5)
	counts := make([]int64, 64)
	for i := range counts {
		counts[i] = 100 // uniform: the median is at the boundary of bins 31/32, p90 in bin 57
	}
	for i := 0; i < 50; i++ {
		if b := s.QuantileBin(counts, 0.5, 50, 1); b != 31 && b != 32 {
			t.Fatalf("median bin %d, want 31 or 32", b)
		}
		if b := s.QuantileBin(counts, 0.9, 50, 1); b != 57 {
			t.Fatalf("p90 bin %d, want 57", b)
		}
	}
}

// TestQuantileBinPrivacyLoss compares how often neighbouring histograms
// (one unit's linf rows moved) select each bin; the ratio must stay
// within e^ε (up to sampling error).
func TestQuantileBinPrivacyLoss(t *testing.T) {
	const eps, linf, n = 1.0, 3, 60000
	a := []int64{10, 10, 10, 10, 10, 10, 10, 10}
	b := append([]int64(nil), a...)
	b[0] += linf // the neighbour has one more unit with linf rows in bin 0
	s := seeded(11)
	ca, cb := make([]float64, len(a)), make([]float64, len(b))
	for i := 0; i < n; i++ {
		ca[s.QuantileBin(a, 0.5, eps, linf)]++
		cb[s.QuantileBin(b, 0.5, eps, linf)]++
	}
	for j := range ca {
		if ca[j] < 500 || cb[j] < 500 {
			continue
		}
		// 4-sigma margins on both counts.
		hi := (cb[j] + 4*math.Sqrt(cb[j])) / (ca[j] - 4*math.Sqrt(ca[j]))
		lo := (cb[j] - 4*math.Sqrt(cb[j])) / (ca[j] + 4*math.Sqrt(ca[j]))
		if lo > math.Exp(eps) || hi < math.Exp(-eps) {
			t.Fatalf("bin %d: selection ratio in [%.3f, %.3f] is outside e^±ε", j, lo, hi)
		}
	}
}
