package synth

import (
	"math"

	"github.com/airlock-dev/airlock/internal/anon"
)

// Utility compares a synthetic table with the real one.
type Utility struct {
	// OneWay and TwoWay are the average total variation distance,
	// ½‖X/|X| − Y/|Y|‖₁, over all one-way and two-way marginals (private-
	// pgm's workload error).
	OneWay, TwoWay float64
	// Target is the column a naive Bayes classifier predicts from all the
	// others; TrainedOnReal and TrainedOnSynthetic are its accuracy on the
	// real rows when trained on each, Majority the share of the most
	// common class.
	Target                                      string
	TrainedOnReal, TrainedOnSynthetic, Majority float64
}

// Compare measures syn against real (the same columns and dictionaries).
func Compare(real, syn *anon.Table, target string) Utility {
	d := len(real.Columns)
	u := Utility{Target: target}
	for c := range d {
		u.OneWay += tvd(marginal(real, c, -1), marginal(syn, c, -1))
	}
	u.OneWay /= float64(d)
	pairs := 0
	for a := range d {
		for b := a + 1; b < d; b++ {
			u.TwoWay += tvd(marginal(real, a, b), marginal(syn, a, b))
			pairs++
		}
	}
	if pairs > 0 {
		u.TwoWay /= float64(pairs)
	}
	if tc := real.Column(target); tc >= 0 {
		u.TrainedOnReal = accuracy(train(real, tc), real, tc)
		u.TrainedOnSynthetic = accuracy(train(syn, tc), real, tc)
		counts := marginal(real, tc, -1)
		best := 0.0
		for _, c := range counts {
			best = math.Max(best, c)
		}
		u.Majority = best / float64(real.Rows())
	}
	return u
}

func marginal(t *anon.Table, a, b int) map[int]float64 {
	out := map[int]float64{}
	for r := range t.Rows() {
		k := int(t.Codes[a][r])
		if b >= 0 {
			k = k*len(t.Dict[b]) + int(t.Codes[b][r])
		}
		out[k]++
	}
	return out
}

func tvd(x, y map[int]float64) float64 {
	nx, ny := 0.0, 0.0
	for _, v := range x {
		nx += v
	}
	for _, v := range y {
		ny += v
	}
	sum := 0.0
	for k, v := range x {
		sum += math.Abs(v/nx - y[k]/ny)
	}
	for k, v := range y {
		if _, ok := x[k]; !ok {
			sum += v / ny
		}
	}
	return sum / 2
}

// naiveBayes is a categorical naive Bayes classifier with add-one smoothing.
type naiveBayes struct {
	target int
	prior  []float64
	// like[c][y][v] = log P(column c = v | target = y).
	like [][][]float64
}

func train(t *anon.Table, target int) *naiveBayes {
	ny := len(t.Dict[target])
	m := &naiveBayes{target: target, prior: make([]float64, ny), like: make([][][]float64, len(t.Columns))}
	for r := range t.Rows() {
		m.prior[t.Codes[target][r]]++
	}
	for c := range t.Columns {
		if c == target {
			continue
		}
		nv := len(t.Dict[c])
		counts := make([][]float64, ny)
		for y := range counts {
			counts[y] = make([]float64, nv)
		}
		for r := range t.Rows() {
			counts[t.Codes[target][r]][t.Codes[c][r]]++
		}
		m.like[c] = make([][]float64, ny)
		for y := range ny {
			m.like[c][y] = make([]float64, nv)
			for v := range nv {
				m.like[c][y][v] = math.Log((counts[y][v] + 1) / (m.prior[y] + float64(nv)))
			}
		}
	}
	total := float64(t.Rows())
	for y := range m.prior {
		m.prior[y] = math.Log((m.prior[y] + 1) / (total + float64(ny)))
	}
	return m
}

func accuracy(m *naiveBayes, t *anon.Table, target int) float64 {
	right := 0
	for r := range t.Rows() {
		best, by := math.Inf(-1), 0
		for y, p := range m.prior {
			s := p
			for c := range t.Columns {
				if c != target {
					s += m.like[c][y][t.Codes[c][r]]
				}
			}
			if s > best {
				best, by = s, y
			}
		}
		if int32(by) == t.Codes[target][r] {
			right++
		}
	}
	return float64(right) / float64(t.Rows())
}
