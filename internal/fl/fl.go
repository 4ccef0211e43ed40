// Package fl is federated learning's model side (issue 16, groundwork):
// a public feature schema, logistic regression in pure Go, local training
// (minibatch SGD, FedProx's proximal term), update clipping, and FedAvg
// rounds whose aggregate is computed by secure aggregation (package
// secagg), so the coordinator sees only the sum of the participants'
// weighted updates.
package fl

import (
	"crypto/rand"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"

	"github.com/airlock-dev/airlock/internal/secagg"
)

// Schema is the public feature encoding every participant applies to its
// rows: numeric columns standardised with public constants, categorical
// columns one-hot over public values (others encode as all zeros), and
// the label's positive value.
type Schema struct {
	Numeric     []Numeric
	Categorical []Categorical
	Label       string
	Positive    string
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

// Encode turns a row (column → text) into features and label.
func (s Schema) Encode(row map[string]string) ([]float64, float64, error) {
	x := make([]float64, 0, s.Dim())
	for _, n := range s.Numeric {
		var v float64
		if _, err := fmt.Sscan(row[n.Name], &v); err != nil {
			return nil, 0, fmt.Errorf("column %s is not numeric", n.Name)
		}
		x = append(x, (v-n.Mean)/n.Std)
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
	y := 0.0
	if row[s.Label] == s.Positive {
		y = 1
	}
	return x, y, nil
}

// Data are one participant's encoded rows.
type Data struct {
	X [][]float64
	Y []float64
}

// Weights are a logistic regression's coefficients, the bias last.
type Weights []float64

// Prob is the predicted probability of the positive class.
func (w Weights) Prob(x []float64) float64 {
	z := w[len(w)-1]
	for i, v := range x {
		z += w[i] * v
	}
	return 1 / (1 + math.Exp(-z))
}

// Accuracy on data at threshold 1/2.
func (w Weights) Accuracy(d Data) float64 {
	ok := 0
	for i, x := range d.X {
		if (w.Prob(x) >= 0.5) == (d.Y[i] == 1) {
			ok++
		}
	}
	return float64(ok) / float64(len(d.X))
}

// Local is a participant's training configuration.
type Local struct {
	Epochs int
	LR     float64
	Batch  int
	Mu     float64 // FedProx proximal term (0: FedAvg)
	Seed   uint64
}

// Train runs local minibatch SGD from w on the data and returns the new
// weights.
func Train(w Weights, d Data, cfg Local) Weights {
	out := slices.Clone(w)
	r := mrand.New(mrand.NewPCG(cfg.Seed, 1))
	order := make([]int, len(d.X))
	for i := range order {
		order[i] = i
	}
	grad := make([]float64, len(w))
	for range cfg.Epochs {
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for lo := 0; lo < len(order); lo += cfg.Batch {
			hi := min(lo+cfg.Batch, len(order))
			clear(grad)
			for _, i := range order[lo:hi] {
				e := out.Prob(d.X[i]) - d.Y[i]
				for k, v := range d.X[i] {
					grad[k] += e * v
				}
				grad[len(w)-1] += e
			}
			n := float64(hi - lo)
			for k := range out {
				out[k] -= cfg.LR * (grad[k]/n + cfg.Mu*(out[k]-w[k]))
			}
		}
	}
	return out
}

// Clip scales v to L2 norm at most c.
func Clip(v []float64, c float64) {
	var s float64
	for _, x := range v {
		s += x * x
	}
	if n := math.Sqrt(s); n > c {
		for i := range v {
			v[i] *= c / n
		}
	}
}

// Round is one FedAvg round over the participants by secure aggregation:
// each trains locally, sends its update weighted by its row count (and
// the count itself) through secagg, and the coordinator applies the
// weighted mean of the updates. Every participant here is in one process;
// the node wiring is not built yet.
func Round(global Weights, parts []Data, cfg Local, q secagg.Quantizer) (Weights, error) {
	inputs := make([][]uint32, len(parts))
	for i, d := range parts {
		local := cfg
		local.Seed = cfg.Seed + uint64(i)
		w := Train(global, d, local)
		rows := float64(len(d.X))
		upd := make([]float64, len(global)+1)
		for k := range global {
			upd[k] = (w[k] - global[k]) * rows
		}
		upd[len(global)] = rows
		inputs[i] = q.Encode(upd, nil)
	}
	p := secagg.Params{T: len(parts), Length: len(global) + 1}
	rand.Read(p.Round[:])
	sum, err := secagg.Local(p, inputs, nil, nil)
	if err != nil {
		return nil, err
	}
	agg := q.Decode(sum)
	total := agg[len(global)]
	out := slices.Clone(global)
	for k := range out {
		out[k] += agg[k] / total
	}
	return out, nil
}
