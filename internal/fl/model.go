package fl

import (
	"fmt"
	"math"
	mrand "math/rand/v2"
)

// Model kinds.
const (
	Logistic = "logistic" // binary classifier, log loss
	Linear   = "linear"   // regression, squared loss
	MLP      = "mlp"      // one hidden tanh layer, sigmoid output, log loss
)

// Model is a model's shape. Weights are flat: for logistic and linear
// regression the coefficients then the bias; for the MLP the hidden
// layer's Hidden×(Dim+1) weights (bias last in each row), then the output
// layer's Hidden+1.
type Model struct {
	Kind   string
	Dim    int // features
	Hidden int // the MLP's hidden units
}

// Check refuses an unknown kind or a shapeless model.
func (m Model) Check() error {
	switch {
	case m.Dim < 1:
		return fmt.Errorf("fl: a model needs features")
	case m.Kind == Logistic || m.Kind == Linear:
		return nil
	case m.Kind == MLP && m.Hidden >= 1 && m.Hidden <= 256:
		return nil
	}
	return fmt.Errorf("fl: model %q (hidden %d): want logistic, linear or mlp with 1..256 hidden units", m.Kind, m.Hidden)
}

// Size is the number of weights.
func (m Model) Size() int {
	if m.Kind == MLP {
		return m.Hidden*(m.Dim+1) + m.Hidden + 1
	}
	return m.Dim + 1
}

// Classifier reports whether the model predicts a class.
func (m Model) Classifier() bool { return m.Kind != Linear }

// Init is the starting point of training: zeros, except the MLP's hidden
// layer, which needs asymmetric weights (drawn from the job's public seed).
func (m Model) Init(seed uint64) Weights {
	w := make(Weights, m.Size())
	if m.Kind == MLP {
		r := mrand.New(mrand.NewPCG(seed, 2))
		scale := 1 / math.Sqrt(float64(m.Dim))
		for i := range m.Hidden * (m.Dim + 1) {
			w[i] = (r.Float64()*2 - 1) * scale
		}
	}
	return w
}

func dot(w, x []float64) float64 {
	z := w[len(x)]
	for i, v := range x {
		z += w[i] * v
	}
	return z
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// Predict is the positive class's probability, or the regression's value.
func (m Model) Predict(w Weights, x []float64) float64 {
	switch m.Kind {
	case Linear:
		return dot(w, x)
	case MLP:
		h, out := m.hidden(w, x, nil), w[m.Hidden*(m.Dim+1):]
		return sigmoid(dot(out, h))
	}
	return sigmoid(dot(w, x))
}

func (m Model) hidden(w Weights, x, h []float64) []float64 {
	if h == nil {
		h = make([]float64, m.Hidden)
	}
	for j := range m.Hidden {
		h[j] = math.Tanh(dot(w[j*(m.Dim+1):(j+1)*(m.Dim+1)], x))
	}
	return h
}

// gradient writes one example's loss gradient into g.
func (m Model) gradient(w Weights, x []float64, y float64, g []float64) {
	clear(g)
	if m.Kind != MLP {
		e := m.Predict(w, x) - y // log loss and squared loss/2 share this form
		for k, v := range x {
			g[k] = e * v
		}
		g[m.Dim] = e
		return
	}
	h := m.hidden(w, x, nil)
	base := m.Hidden * (m.Dim + 1)
	out := w[base:]
	e := sigmoid(dot(out, h)) - y
	for j, v := range h {
		g[base+j] = e * v
		back := e * out[j] * (1 - v*v)
		row := g[j*(m.Dim+1) : (j+1)*(m.Dim+1)]
		for k, xv := range x {
			row[k] = back * xv
		}
		row[m.Dim] = back
	}
	g[base+m.Hidden] = e
}

// MetricBound bounds one example's metric: a classifier's is 1 if it is
// right, a regression's its squared error (in the label's standardised
// units), clamped to 4.
func (m Model) MetricBound() float64 {
	if m.Classifier() {
		return 1
	}
	return 4
}

// Metric is one example's metric (see MetricBound).
func (m Model) Metric(w Weights, x []float64, y float64) float64 {
	p := m.Predict(w, x)
	if m.Classifier() {
		if (p >= 0.5) == (y == 1) {
			return 1
		}
		return 0
	}
	e := (p - y) * (p - y)
	if math.IsNaN(e) {
		return 4
	}
	return math.Min(e, 4)
}

// Score is the mean metric on data: a classifier's accuracy, a
// regression's mean squared error (clamped per example).
func (m Model) Score(w Weights, d Data) float64 {
	var s float64
	for i, x := range d.X {
		s += m.Metric(w, x, d.Y[i])
	}
	return s / float64(len(d.X))
}
