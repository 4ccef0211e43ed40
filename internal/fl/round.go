package fl

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/secagg"
)

// Privacy units of a training job.
const (
	NoDP   = "none"   // no noise: secure aggregation hides each update, nothing bounds what the sum says
	Record = "record" // DP-SGD inside each node: each record is protected, on each node's ledger
	Member = "member" // each node's whole update clipped, distributed noise shares added before masking
)

// Plan is one FedAvg round's arithmetic, the same on every node: what a
// participant adds to the secure sum, how the coordinator reads the sum,
// and what a round costs each participant. The vector is the model's
// update, then three integer cells: the metric of the incoming model over
// the participant's rows (×1000), its row count, and its weight.
type Plan struct {
	Model Model
	Local Local // DP is set per participant from the fields below
	Unit  string
	// Clip bounds an example's gradient (record) or a node's update
	// (member); Noise is the noise multiplier z.
	Clip, Noise float64
	// MetricNoise is the metric cell's noise multiplier under record-level
	// privacy (default 30: σ = 30 × one example's largest metric).
	MetricNoise float64
	// T is the fewest honest survivors (the job's threshold less its
	// colluders), over whom member-level noise is shared.
	T int
}

const metricScale = 1000

// Length is the secure sum's vector length.
func (p Plan) Length() int { return p.Model.Size() + 3 }

// Check refuses a plan that cannot run or that the ring cannot hold for n
// participants.
func (p Plan) Check(n int) error {
	if err := p.Model.Check(); err != nil {
		return err
	}
	switch {
	case p.Local.Epochs < 1 || p.Local.Epochs > 100 || p.Local.Batch < 1 || !(p.Local.LR > 0) || p.Local.Mu < 0:
		return fmt.Errorf("fl: local training needs 1..100 epochs, a batch, a positive learning rate and μ ≥ 0")
	case p.Unit != NoDP && p.Unit != Record && p.Unit != Member:
		return fmt.Errorf("fl: privacy unit %q: want none, record or member", p.Unit)
	case p.Unit != NoDP && !(p.Clip > 0 && p.Noise > 0):
		return fmt.Errorf("fl: %s-level privacy needs a clipping norm and a noise multiplier", p.Unit)
	case p.Unit == Member && (p.T < 1 || p.T > n):
		return fmt.Errorf("fl: member-level noise is shared over 1 ≤ t ≤ %d honest survivors", n)
	}
	return p.quantizer().Check(n, p.memberSigma2()*float64(n)/float64(max(p.T, 1)))
}

func (p Plan) quantizer() secagg.Quantizer {
	switch p.Unit {
	case NoDP:
		return secagg.Quantizer{Clip: 1e5, Scale: 1e3} // row-weighted updates
	case Record:
		return secagg.Quantizer{Clip: 10, Scale: 1e5}
	}
	return secagg.Quantizer{Clip: p.Clip, Scale: 65536 / p.Clip}
}

func (p Plan) metricNoise() float64 {
	if p.MetricNoise > 0 {
		return p.MetricNoise
	}
	return 30
}

// memberSigma2 is the member-level noise's variance in ring units (0
// under other units).
func (p Plan) memberSigma2() float64 {
	if p.Unit != Member {
		return 0
	}
	sd := p.Noise * p.Clip * p.quantizer().Scale
	return sd * sd
}

// RhoPerRound is what one round costs each participant (zCDP).
func (p Plan) RhoPerRound() float64 {
	switch p.Unit {
	case Record:
		sgd := DPSGD{Clip: p.Clip, Noise: p.Noise}
		return float64(p.Local.Epochs)*sgd.RhoPerEpoch(p.Model.Size()) + p.MetricRho()
	case Member:
		// A member's quantized update moves the sum by at most its clip
		// plus the rounding of each coordinate.
		delta := p.Clip*p.quantizer().Scale + math.Sqrt(float64(p.Model.Size()))/2
		return delta * delta / (2 * p.memberSigma2())
	}
	return 0
}

// MetricRho is the metric cell's cost per round under record-level
// privacy: replacing one record moves the scaled sum by at most one
// example's largest metric, plus one for the sum's rounding.
func (p Plan) MetricRho() float64 {
	delta := p.Model.MetricBound()*metricScale + 1
	sd := p.metricNoise() * p.Model.MetricBound() * metricScale
	return delta * delta / (2 * sd * sd)
}

func randomSeed() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// Contribute is a participant's input to the round's secure sum: it
// trains from the global weights on its rows, scores the incoming model,
// and encodes (with its noise) for the ring.
func (p Plan) Contribute(global Weights, d Data, s *dp.Sampler) ([]uint32, error) {
	return p.contribute(global, d, s, true)
}

// Evaluate is a participant's input to the evaluation round after the
// last training round: the final model's metric over its rows, with the
// metric cell's noise, and no update (no training, no cost beyond
// MetricRho). Member-level jobs measure nothing and run no such round.
func (p Plan) Evaluate(global Weights, d Data, s *dp.Sampler) ([]uint32, error) {
	if p.Unit == Member {
		return nil, fmt.Errorf("fl: member-level privacy measures no metric")
	}
	return p.contribute(global, d, s, false)
}

// RhoOfEvaluation is what the evaluation round costs each participant.
func (p Plan) RhoOfEvaluation() float64 {
	if p.Unit == Record {
		return p.MetricRho()
	}
	return 0
}

func (p Plan) contribute(global Weights, d Data, s *dp.Sampler, train bool) ([]uint32, error) {
	if len(global) != p.Model.Size() {
		return nil, fmt.Errorf("fl: the global model has %d weights, the job's model %d", len(global), p.Model.Size())
	}
	upd := make([]float64, len(global))
	if train {
		local := p.Local
		if local.Seed == 0 {
			local.Seed = randomSeed() // nodes: a fresh shuffle each round
		}
		if p.Unit == Record {
			local.DP = &DPSGD{Clip: p.Clip, Noise: p.Noise, Sampler: s}
		}
		w := Train(p.Model, global, d, local)
		for k := range upd {
			upd[k] = w[k] - global[k]
		}
	}
	rows := int64(len(d.X))
	var metric float64
	for i, x := range d.X {
		metric += p.Model.Metric(global, x, d.Y[i])
	}
	cells := []int64{int64(math.Round(metric * metricScale)), rows, 1}
	var noise []int64
	switch p.Unit {
	case NoDP:
		for k := range upd {
			upd[k] *= float64(rows)
		}
		cells[2] = rows
	case Record:
		sd := p.metricNoise() * p.Model.MetricBound() * metricScale
		cells[0] += secagg.NoiseShare(s, sd*sd, 1, 1)[0]
	case Member:
		Clip(upd, p.Clip)
		noise = secagg.NoiseShare(s, p.memberSigma2(), p.T, len(upd))
		cells[0], cells[1] = 0, 0 // a member's metric would need its own budget
	}
	out := p.quantizer().Encode(upd, noise)
	for _, c := range cells {
		out = append(out, uint32(c))
	}
	return out, nil
}

// Progress is what a round's sum says about the incoming model.
type Progress struct {
	// Score is the incoming model's mean metric over the survivors' rows
	// (noisy under record-level privacy); NaN if not measured.
	Score float64
	Rows  int64
}

// Apply reads the secure sum of survivors participants and returns the
// next global weights. A sum no honest participants could have made (a
// coordinate beyond survivors × the clip plus the noise, a weight other
// than the survivors' under DP) is refused: some participant sent an
// input outside the quantisation range.
func (p Plan) Apply(global Weights, sum []uint32, survivors int) (Weights, Progress, error) {
	if len(sum) != p.Length() {
		return nil, Progress{}, fmt.Errorf("fl: a sum of length %d for a model of %d", len(sum), p.Model.Size())
	}
	n := p.Model.Size()
	q := p.quantizer()
	bound := float64(survivors)*math.Round(q.Clip*q.Scale) + 10*math.Sqrt(p.memberSigma2()*float64(survivors)/float64(max(p.T, 1)))
	for _, v := range sum[:n] {
		if math.Abs(float64(int32(v))) > bound {
			return nil, Progress{}, fmt.Errorf("fl: a coordinate of the sum is beyond what %d clipped inputs can reach", survivors)
		}
	}
	agg := q.Decode(sum[:n])
	metric, rows, weight := int32(sum[n]), int32(sum[n+1]), int32(sum[n+2])
	if weight < 1 || rows < 0 || (p.Unit != NoDP && int(weight) != survivors) {
		return nil, Progress{}, fmt.Errorf("fl: the sum's weight %d and rows %d do not fit %d participants", weight, rows, survivors)
	}
	out := slices.Clone(global)
	for k := range out {
		out[k] += agg[k] / float64(weight)
	}
	pr := Progress{Score: math.NaN(), Rows: int64(rows)}
	if rows > 0 {
		pr.Score = float64(metric) / metricScale / float64(rows)
	}
	return out, pr, nil
}

// RoundLocal is one round among in-process participants (tests, the
// accuracy-versus-ε runs, the benchmark): the nodes' arithmetic with
// secagg.Local in place of the network.
func (p Plan) RoundLocal(global Weights, parts []Data, s *dp.Sampler) (Weights, Progress, error) {
	inputs := make([][]uint32, len(parts))
	for i, d := range parts {
		var err error
		if inputs[i], err = p.Contribute(global, d, s); err != nil {
			return nil, Progress{}, err
		}
	}
	sp := secagg.Params{T: max(p.T, 2), Length: p.Length()}
	rand.Read(sp.Round[:])
	sum, err := secagg.Local(sp, inputs, nil, nil)
	if err != nil {
		return nil, Progress{}, err
	}
	return p.Apply(global, sum, len(parts))
}
