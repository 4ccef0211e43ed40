package synth

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"

	"github.com/airlock-dev/airlock/internal/anon"
	"github.com/airlock-dev/airlock/internal/dp"
)

// Config is one synthesis.
type Config struct {
	// Epsilon and Delta are the privacy budget spent.
	Epsilon, Delta float64
	// Rows is the number of rows to generate; 0 means the noisy row count.
	Rows int
	// Public names columns whose values are public knowledge (a
	// hierarchy's leaves, a code list). Any other column's values are
	// data: a value appears in the output only if its noisy count passes
	// a threshold a single record reaches with probability below δ, and
	// the rest come out as "*".
	Public map[string]bool
}

// Result is a synthetic table and what went into it.
type Result struct {
	Table *anon.Table
	// Rho is the zCDP spent, Sigma1 and Sigma2 the noise of the one- and
	// two-way marginals.
	Rho, Sigma1, Sigma2 float64
	// Edges are the attribute pairs of the spanning tree, by column name.
	Edges [][2]string
}

// MinEpsilon is the least ε a synthesis accepts. Below it the noise
// dwarfs any table (and the noisy row count, which sizes the output, can
// be astronomically large), so such a release has no use but to exhaust
// the machine.
const MinEpsilon = 0.001

// MaxRows caps the rows a synthesis generates: the noisy row count is the
// default, and noise must not decide how much memory is taken.
const MaxRows = 10_000_000

// ErrBudget means the budget is not a usable (ε, δ).
var ErrBudget = errors.New("synth: ε must be at least 0.001 and δ in (0, 1)")

// Synthesize draws a synthetic table from t under cfg's budget. noise is
// the source of the measurements' randomness (crypto/rand in production).
func Synthesize(t *anon.Table, cfg Config, noise *dp.Sampler) (*Result, error) {
	if !(cfg.Epsilon >= MinEpsilon) || !(cfg.Delta > 0 && cfg.Delta < 1) {
		return nil, ErrBudget
	}
	d := len(t.Columns)
	if d < 2 {
		return nil, fmt.Errorf("synth: need at least two columns")
	}
	rho := dp.RhoForEpsDelta(cfg.Epsilon, cfg.Delta)
	third := rho / 3
	res := &Result{Rho: rho}
	// One-way marginals: d measurements, L2 sensitivity √d together.
	res.Sigma1 = math.Sqrt(dp.GaussianSigma2(math.Sqrt(float64(d)), third))
	res.Sigma2 = math.Sqrt(dp.GaussianSigma2(math.Sqrt(float64(d-1)), third))
	doms := make([]*domain, d)
	oneWay := make([][]float64, d)
	totals := 0.0
	for c := range d {
		counts := make([]float64, len(t.Dict[c]))
		for _, v := range t.Codes[c] {
			counts[v]++
		}
		noisy := addNoise(noise, counts, res.Sigma1)
		threshold := 3 * res.Sigma1
		if !cfg.Public[t.Columns[c]] {
			// One record is in d one-way marginals.
			threshold = math.Max(threshold, dp.SelectionThreshold(res.Sigma1*res.Sigma1, d, cfg.Delta))
		}
		doms[c] = compress(noisy, threshold, cfg.Public[t.Columns[c]])
		oneWay[c] = doms[c].fold(noisy)
		for _, y := range noisy {
			totals += y
		}
	}
	n := math.Max(totals/float64(d), 1)
	probs := make([]distribution, d)
	for c := range d {
		probs[c] = normalise(oneWay[c])
	}
	// Edge selection: Kruskal with exponential-mechanism choices scored by
	// how far the true two-way marginal is from independence under the
	// one-way estimates (sensitivity 1: one record moves one cell by one).
	epsRound := math.Sqrt(8 * third / float64(d-1))
	parent := make([]int, d)
	for i := range parent {
		parent[i] = i
	}
	find := func(x int) int {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	type pair struct{ a, b int }
	var candidates []pair
	var scores []float64
	for a := range d {
		for b := a + 1; b < d; b++ {
			truth := jointCounts(t, doms, a, b)
			score := 0.0
			for i, pa := range probs[a] {
				for j, pb := range probs[b] {
					score += math.Abs(truth[i*len(probs[b])+j] - n*pa*pb)
				}
			}
			candidates = append(candidates, pair{a, b})
			scores = append(scores, score)
		}
	}
	var tree []pair
	for len(tree) < d-1 {
		var open []int
		for i, c := range candidates {
			if find(c.a) != find(c.b) {
				open = append(open, i)
			}
		}
		pick := open[exponential(noise, scoresOf(scores, open), epsRound)]
		c := candidates[pick]
		parent[find(c.a)] = find(c.b)
		tree = append(tree, c)
		res.Edges = append(res.Edges, [2]string{t.Columns[c.a], t.Columns[c.b]})
	}
	// Two-way marginals on the tree, raked to the one-way estimates.
	cond := map[[2]int][][]float64{} // cond[{parent, child}][pv][cv]
	adj := make([][]int, d)
	for _, e := range tree {
		noisy := addNoise(noise, jointCounts(t, doms, e.a, e.b), res.Sigma2)
		table := rake(noisy, probs[e.a], probs[e.b], n)
		cond[[2]int{e.a, e.b}] = conditional(table, len(probs[e.a]), len(probs[e.b]), false, probs[e.b])
		cond[[2]int{e.b, e.a}] = conditional(table, len(probs[e.a]), len(probs[e.b]), true, probs[e.a])
		adj[e.a] = append(adj[e.a], e.b)
		adj[e.b] = append(adj[e.b], e.a)
	}
	// Sample along the tree from column 0, breadth first.
	rows := cfg.Rows
	if rows <= 0 {
		rows = int(math.Min(math.Round(n), MaxRows))
	}
	rows = min(rows, MaxRows)
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewChaCha8(seed))
	order, from := []int{0}, make([]int, d)
	seen := make([]bool, d)
	seen[0], from[0] = true, -1
	for i := 0; i < len(order); i++ {
		for _, nb := range adj[order[i]] {
			if !seen[nb] {
				seen[nb], from[nb] = true, order[i]
				order = append(order, nb)
			}
		}
	}
	out := &anon.Table{Columns: append([]string(nil), t.Columns...), Dict: make([][]string, d), Codes: make([][]int32, d), Delimiter: t.Delimiter}
	for c := range d {
		out.Dict[c] = t.Dict[c]
		if doms[c].hidden {
			doms[c].star = int32(len(t.Dict[c]))
			out.Dict[c] = append(slices.Clip(t.Dict[c]), "*")
		}
		out.Codes[c] = make([]int32, rows)
	}
	bucket := make([]int, d)
	for r := range rows {
		for _, c := range order {
			if from[c] < 0 {
				bucket[c] = draw(rng, probs[c])
			} else {
				bucket[c] = draw(rng, cond[[2]int{from[c], c}][bucket[from[c]]])
			}
			out.Codes[c][r] = doms[c].expand(rng, bucket[c])
		}
	}
	res.Table = out
	return res, nil
}

type distribution []float64

func normalise(x []float64) distribution {
	out := make(distribution, len(x))
	sum := 0.0
	for i, v := range x {
		out[i] = math.Max(v, 0)
		sum += out[i]
	}
	if sum == 0 {
		for i := range out {
			out[i] = 1 / float64(len(out))
		}
		return out
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

func draw(rng *rand.Rand, p []float64) int {
	u := rng.Float64()
	for i, v := range p {
		u -= v
		if u < 0 {
			return i
		}
	}
	return len(p) - 1
}

// addNoise adds discrete Gaussian noise of standard deviation sigma to
// integer counts.
func addNoise(s *dp.Sampler, counts []float64, sigma float64) []float64 {
	num, den := dp.RatUp(sigma * sigma)
	out := make([]float64, len(counts))
	for i, c := range counts {
		out[i] = c + float64(s.DiscreteGaussian(num, den).Int64())
	}
	return out
}

// exponential picks an index with probability ∝ exp(ε·score/2) (the
// exponential mechanism, sensitivity 1), exactly: a uniform proposal
// accepted with probability exp(−ε(best−score)/2).
func exponential(s *dp.Sampler, scores []float64, eps float64) int {
	best := math.Inf(-1)
	for _, v := range scores {
		best = math.Max(best, v)
	}
	for {
		i := s.Perm(len(scores))[0]
		gap := new(big.Rat).SetFloat64((best - scores[i]) * eps / 2)
		if s.BernoulliExp(gap.Num(), gap.Denom()) {
			return i
		}
	}
}

func scoresOf(all []float64, idx []int) []float64 {
	out := make([]float64, len(idx))
	for i, j := range idx {
		out[i] = all[j]
	}
	return out
}

// domain is a column's compressed domain: values whose noisy count fell
// below the threshold share one bucket (MST's compression).
type domain struct {
	// bucketOf[code] is a value's bucket; members[b] the codes in bucket b.
	bucketOf []int
	members  [][]int32
	// hidden marks a non-public domain: its rare bucket comes out as star.
	hidden bool
	star   int32
	// rare marks that the last bucket holds the values below threshold.
	rare bool
}

func compress(noisy []float64, threshold float64, public bool) *domain {
	d := &domain{bucketOf: make([]int, len(noisy)), hidden: !public}
	var rare []int32
	for v, y := range noisy {
		if y < threshold {
			rare = append(rare, int32(v))
			continue
		}
		d.bucketOf[v] = len(d.members)
		d.members = append(d.members, []int32{int32(v)})
	}
	if len(rare) > 0 {
		d.rare = true
		for _, v := range rare {
			d.bucketOf[v] = len(d.members)
		}
		d.members = append(d.members, rare)
	}
	return d
}

func (d *domain) fold(counts []float64) []float64 {
	out := make([]float64, len(d.members))
	for v, c := range counts {
		out[d.bucketOf[v]] += c
	}
	return out
}

func (d *domain) expand(rng *rand.Rand, bucket int) int32 {
	m := d.members[bucket]
	if len(m) == 1 && !(d.hidden && bucket == len(d.members)-1 && d.rare) {
		return m[0]
	}
	if d.hidden {
		return d.star
	}
	return m[rng.IntN(len(m))]
}

func jointCounts(t *anon.Table, doms []*domain, a, b int) []float64 {
	nb := len(doms[b].members)
	out := make([]float64, len(doms[a].members)*nb)
	for r := range t.Rows() {
		out[doms[a].bucketOf[t.Codes[a][r]]*nb+doms[b].bucketOf[t.Codes[b][r]]]++
	}
	return out
}

// rake clips a noisy two-way table at zero and fits it by iterative
// proportional fitting to the row and column distributions (scaled to n).
func rake(noisy []float64, rows, cols distribution, n float64) []float64 {
	nr, nc := len(rows), len(cols)
	t := make([]float64, len(noisy))
	for i, v := range noisy {
		t[i] = math.Max(v, 0) + 1e-9
	}
	for range 50 {
		for i := range nr {
			s := 0.0
			for j := range nc {
				s += t[i*nc+j]
			}
			if s > 0 {
				for j := range nc {
					t[i*nc+j] *= n * rows[i] / s
				}
			}
		}
		for j := range nc {
			s := 0.0
			for i := range nr {
				s += t[i*nc+j]
			}
			if s > 0 {
				for i := range nr {
					t[i*nc+j] *= n * cols[j] / s
				}
			}
		}
	}
	return t
}

// conditional turns a two-way table into P(child | parent): rows when
// transpose is false (parent = the table's rows), columns otherwise.
func conditional(t []float64, nr, nc int, transpose bool, fallback distribution) [][]float64 {
	np, nch := nr, nc
	at := func(p, c int) float64 { return t[p*nc+c] }
	if transpose {
		np, nch = nc, nr
		at = func(p, c int) float64 { return t[c*nc+p] }
	}
	out := make([][]float64, np)
	for p := range np {
		row := make([]float64, nch)
		s := 0.0
		for c := range nch {
			row[c] = at(p, c)
			s += row[c]
		}
		if s <= 0 {
			out[p] = fallback
			continue
		}
		for c := range row {
			row[c] /= s
		}
		out[p] = row
	}
	return out
}
