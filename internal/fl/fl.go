// Package fl is federated learning's model side: a public feature schema,
// three models in pure Go (logistic regression, linear regression, a
// one-hidden-layer MLP), local training (minibatch SGD or DP-SGD with the
// exact discrete Gaussian, FedProx's proximal term), and the arithmetic of
// a FedAvg round whose aggregate is a secure sum (package secagg): what a
// participant encodes, how the coordinator reads the sum, and what a round
// costs each participant's privacy budget. Package fedjob runs the rounds
// across nodes.
package fl

import (
	"math"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Schema is the public feature encoding every participant applies to its
// rows: numeric columns standardised with public constants, categorical
// columns one-hot over public values (others encode as all zeros), and
// the label's positive value.
type Schema struct {
	Numeric     []Numeric
	Categorical []Categorical
	Label       string
	// Positive is a classifier label's positive value; empty, the label is
	// numeric and standardised with LabelMean and LabelStd (regression).
	Positive            string
	LabelMean, LabelStd float64
}

// Numeric is a standardised column.
type Numeric struct {
	Name      string
	Mean, Std float64
}

// Categorical is a one-hot column.
type Categorical struct {
	Name   string
	Values []string
}

// Dim is the feature vector's length (without the bias).
func (s Schema) Dim() int {
	d := len(s.Numeric)
	for _, c := range s.Categorical {
		d += len(c.Values)
	}
	return d
}

// Encode turns a row (column → text) into features and label. It is
// total: a numeric value that is missing, malformed or not finite encodes
// as the column's mean (0), a regression label likewise; a row is never
// dropped, so a node's row count does not depend on its values (DP-SGD's
// neighbours replace one record, keeping the count) and no value can
// carry NaN or infinity into training.
func (s Schema) Encode(row map[string]string) ([]float64, float64) {
	x := make([]float64, 0, s.Dim())
	for _, n := range s.Numeric {
		x = append(x, standard(row[n.Name], n.Mean, n.Std))
	}
	for _, c := range s.Categorical {
		for _, v := range c.Values {
			if row[c.Name] == v {
				x = append(x, 1)
			} else {
				x = append(x, 0)
			}
		}
	}
	if s.Positive == "" {
		return x, standard(row[s.Label], s.LabelMean, s.LabelStd)
	}
	y := 0.0
	if row[s.Label] == s.Positive {
		y = 1
	}
	return x, y
}

// standard is a numeric text standardised, 0 if it is not a finite number.
func standard(text string, mean, std float64) float64 {
	v, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
	z := (v - mean) / std
	if err != nil || math.IsNaN(z) || math.IsInf(z, 0) {
		return 0
	}
	return z
}

// Data are one participant's encoded rows.
type Data struct {
	X [][]float64
	Y []float64
}

// Weights are a model's parameters, flat (see Model for the layout).
type Weights []float64

// Clip scales v to L2 norm at most c; a vector whose norm is not finite
// (NaN compares false with c) becomes zero.
func Clip(v []float64, c float64) {
	n := norm(v)
	if math.IsNaN(n) || math.IsInf(n, 0) {
		clear(v)
		return
	}
	if n > c {
		for i := range v {
			v[i] *= c / n
		}
	}
}

func norm(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

// Local is a participant's training configuration.
type Local struct {
	Epochs int
	LR     float64
	Batch  int
	Mu     float64 // FedProx proximal term (0: FedAvg)
	// Seed fixes the shuffles (in-process runs and tests); 0 in a plan
	// draws a fresh one per participant and round.
	Seed uint64
	// DP, if set, makes every step a DP-SGD step (record-level privacy).
	DP *DPSGD
}

// Train runs local minibatch SGD (or DP-SGD) from w on the data and
// returns the new weights.
func Train(m Model, w Weights, d Data, cfg Local) Weights {
	out := slices.Clone(w)
	r := mrand.New(mrand.NewPCG(cfg.Seed, 1))
	order := make([]int, len(d.X))
	for i := range order {
		order[i] = i
	}
	grad := make([]float64, len(w))
	g := make([]float64, len(w))
	var noisy *noisySum
	if cfg.DP != nil {
		noisy = cfg.DP.sum(len(w))
	}
	for range cfg.Epochs {
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for lo := 0; lo < len(order); lo += cfg.Batch {
			hi := min(lo+cfg.Batch, len(order))
			clear(grad)
			for _, i := range order[lo:hi] {
				m.gradient(out, d.X[i], d.Y[i], g)
				if noisy != nil {
					noisy.add(g)
					continue
				}
				for k, v := range g {
					grad[k] += v
				}
			}
			if noisy != nil {
				noisy.release(grad)
			}
			n := float64(hi - lo)
			for k := range out {
				out[k] -= cfg.LR * (grad[k]/n + cfg.Mu*(out[k]-w[k]))
			}
		}
	}
	return out
}
