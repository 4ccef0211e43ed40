package risk

import (
	"math"
	"slices"
)

// Histogram counts equivalence classes by size: Classes[i] classes have
// Sizes[i] records. Sizes ascend.
type Histogram struct {
	Sizes   []int
	Classes []int
}

// HistogramOf builds the histogram of a list of class sizes.
func HistogramOf(classSizes []int) Histogram {
	counts := map[int]int{}
	for _, s := range classSizes {
		if s > 0 {
			counts[s]++
		}
	}
	var h Histogram
	for _, s := range slices.Sorted(func(yield func(int) bool) {
		for s := range counts {
			if !yield(s) {
				return
			}
		}
	}) {
		h.Sizes = append(h.Sizes, s)
		h.Classes = append(h.Classes, counts[s])
	}
	return h
}

// Records is n, the number of records.
func (h Histogram) Records() int {
	n := 0
	for i, s := range h.Sizes {
		n += s * h.Classes[i]
	}
	return n
}

// NumClasses is u, the number of classes.
func (h Histogram) NumClasses() int {
	u := 0
	for _, c := range h.Classes {
		u += c
	}
	return u
}

// OfSize is the number of classes of a given size (c1, c2, …).
func (h Histogram) OfSize(size int) int {
	if i, ok := slices.BinarySearch(h.Sizes, size); ok {
		return h.Classes[i]
	}
	return 0
}

// Sample is the risk a prosecutor poses, who knows their target is in the
// data (El Emam): a record in a class of f records is re-identified with
// probability 1/f.
type Sample struct {
	// Highest is 1/min f; Lowest 1/max f.
	Highest, Lowest float64
	// Average is the expected share re-identified, u/n (ARX's
	// "success rate").
	Average float64
	// AtRisk is the share of records whose risk exceeds the threshold.
	AtRisk float64
	// Threshold is the per-record risk threshold AtRisk uses.
	Threshold float64
	// Uniques is the share of records unique in the sample, c1/n.
	Uniques float64
}

// SampleRisk computes the prosecutor's risks with a per-record threshold.
func SampleRisk(h Histogram, threshold float64) Sample {
	n := float64(h.Records())
	if n == 0 {
		return Sample{Threshold: threshold}
	}
	s := Sample{Threshold: threshold}
	s.Highest = 1 / float64(h.Sizes[0])
	s.Lowest = 1 / float64(h.Sizes[len(h.Sizes)-1])
	s.Average = float64(h.NumClasses()) / n
	atRisk := 0
	for i, f := range h.Sizes {
		if 1/float64(f) > threshold {
			atRisk += f * h.Classes[i]
		}
	}
	s.AtRisk = float64(atRisk) / n
	s.Uniques = float64(h.OfSize(1)) / n
	return s
}

// Model names a population-uniqueness estimator.
type Model string

// The estimators.
const (
	Zayatz Model = "zayatz"
	Pitman Model = "pitman"
	SNB    Model = "snb"
	// None means the sample has no unique records, so no model is needed.
	None Model = "none"
)

// Population is an estimate of the records unique in the population the
// sample was drawn from.
type Population struct {
	// SamplingFraction is π = n/N.
	SamplingFraction float64
	// PopulationSize is N.
	PopulationSize int64
	// Zayatz, Pitman and SNB are each model's estimated number of
	// population uniques, 0 when a model has no valid estimate.
	Zayatz, Pitman, SNB float64
	// Model is the one Dankar et al.'s rule picks and Uniques its share
	// of the population.
	Model   Model
	Uniques float64
}

// PopulationRisk estimates population uniqueness for a sample of
// h.Records() records drawn with the given sampling fraction; N =
// round(n/π).
func PopulationRisk(h Histogram, samplingFraction float64) Population {
	n := h.Records()
	bigN := int64(math.Floor(float64(n)/samplingFraction + 0.5))
	p := Population{PopulationSize: bigN, SamplingFraction: float64(n) / float64(bigN)}
	c1 := h.OfSize(1)
	if c1 == 0 || n == 0 {
		p.Model = None
		return p
	}
	pi := p.SamplingFraction
	N := float64(bigN)
	valid := func(x float64) bool { return !math.IsNaN(x) && x != 0 }
	sane := func(x float64) float64 {
		if valid(x) {
			return x
		}
		return 0
	}
	z := zayatz(h, N)
	p.Zayatz = sane(z)
	var result float64
	if pi <= 0.1 {
		pt := pitman(h, N)
		p.Pitman = sane(pt)
		if valid(pt) {
			result, p.Model = pt, Pitman
		} else {
			result, p.Model = z, Zayatz
		}
	} else {
		s := snb(h, pi)
		p.SNB = sane(s)
		switch {
		case valid(s) && z < s:
			result, p.Model = z, Zayatz
		case valid(s):
			result, p.Model = s, SNB
		default:
			result, p.Model = z, Zayatz
		}
	}
	p.Uniques = sane(result) / N
	return p
}

// zayatz is Zayatz's estimate: the share of sample uniques that are
// population uniques, from the hypergeometric probability that a
// population class of size s contributes exactly one record to the sample.
func zayatz(h Histogram, N float64) float64 {
	n := float64(h.Records())
	u := float64(h.NumClasses())
	c1 := float64(h.OfSize(1))
	pi := n / N
	temp := 0.0
	for i, s := range h.Sizes {
		temp += float64(h.Classes[i]) / u * hypergeometricOne(N, float64(s), n)
	}
	uniqueness := c1 / u * hypergeometricOne(N, 1, n) / temp
	return c1 * uniqueness / pi
}

// hypergeometricOne is P[X = 1] for X ~ Hypergeometric(population N, m
// successes, n draws) = m·C(N−m, n−1)/C(N, n).
func hypergeometricOne(N, m, n float64) float64 {
	if m > N-n+1 || n < 1 {
		return 0
	}
	return math.Exp(math.Log(m) + lnChoose(N-m, n-1) - lnChoose(N, n))
}

func lnChoose(a, b float64) float64 {
	return lgamma(a+1) - lgamma(b+1) - lgamma(a-b+1)
}

func lgamma(x float64) float64 {
	if x <= 0 {
		return math.NaN()
	}
	v, _ := math.Lgamma(x)
	return v
}

// pitman fits Pitman's two-parameter sampling model (Hoshino 2001) by
// maximum likelihood and returns its number of population uniques,
// Γ(θ+1)/Γ(θ+α)·N^α.
func pitman(h Histogram, N float64) float64 {
	n := float64(h.Records())
	u := float64(h.NumClasses())
	c1 := float64(h.OfSize(1))
	c2 := float64(h.OfSize(2))
	if c2 == 0 {
		c2 = 1
	}
	c := c1 * (c1 - 1) / c2
	t0 := (n*u*c - c1*(n-1)*(2*u+c)) / (2*c1*u + c1*c - n*c)
	a0 := (t0*(c1-n) + (n-1)*c1) / (n * u)
	eq := func(t, a float64) (f [2]float64, j [2][2]float64) {
		var o1, o2, o3, o4, d1, d2, d3, d4, d5 float64
		for i := 1.0; i < u; i++ {
			x := t + i*a
			o1 += 1 / x
			o3 += i / x
			d1 += 1 / (x * x)
			d5 += i / (x * x)
			d3 += i * i / (x * x)
		}
		for i := 1.0; i < n; i++ {
			o2 += 1 / (t + i)
			d2 += 1 / ((t + i) * (t + i))
		}
		for k, s := range h.Sizes {
			if s == 1 {
				continue
			}
			fk := float64(h.Classes[k])
			for i := 1.0; i < float64(s); i++ {
				o4 += fk / (i - a)
				d4 += fk / ((i - a) * (i - a))
			}
		}
		f = [2]float64{o1 - o2, o3 - o4}
		j = [2][2]float64{{d2 - d1, -d5}, {-d5, -d3 - d4}}
		return
	}
	t, a := newton(eq, [2]float64{t0, a0}, func(x [2]float64) bool { return x[0] >= 0 })
	if math.IsNaN(t) || math.IsNaN(a) || a == 0 {
		return math.NaN()
	}
	v := math.Exp(lgamma(t+1)-lgamma(t+a)) * math.Pow(N, a)
	if !(v >= 0 && v <= N) {
		return math.NaN()
	}
	return v
}

// snb fits the slide negative binomial model (Chen and Keller-McNulty
// 1998), with ARX's estimate of the number of non-empty population classes
// and ARX's form of the second moment equation.
func snb(h Histogram, f float64) float64 {
	u := float64(h.NumClasses())
	c1 := float64(h.OfSize(1))
	c2 := float64(h.OfSize(2))
	var v1, v2, v3, v4 float64
	for i, s := range h.Sizes {
		c, fs := float64(h.Classes[i]), float64(s)
		v1 += fs * f * f * math.Pow(1-f*f, fs-1) * c
		// As ARX computes it: the −1 is once per histogram entry.
		v2 += math.Pow(1-f, fs)*c*math.Pow(1+f, fs) - 1
		v3 += math.Pow(1-f, fs) * c
		v4 += fs * f * math.Pow(1-f, fs-1) * c
	}
	K := u + c1*(v1/v2)*(v3/v4)*(v3/v4)
	eq := func(a, b float64) (F [2]float64, J [2][2]float64) {
		d := (1 - f) * (1 - b)
		F[0] = K*f*math.Pow(b/(1-d), a)*(a*d/(1-d)+1) - c1
		F[1] = K*a*math.Pow(b, a)*f*f*(1-b)/2*math.Pow(1-d, a+2)*(2-(1-a)*d) - c2
		w0 := (b - 1) * (f - 1)
		w1 := w0 - 1
		w2 := 1 - w0
		w3 := a*w0/w1 - 1
		w4 := math.Pow(-b/w1, a)
		w7 := math.Pow(b, a)
		w10 := 2 * math.Pow(w2, a+2)
		w11 := w1 * w1
		w13 := f * K
		w14 := f - 1
		w15 := a - 1
		w16 := b - 1
		w17 := w15 * w0
		w18 := f * f * K
		w19 := w17 + 2
		w20 := w18 * w19
		w9 := a * w7 * f * f * K
		J[0][0] = -w13*math.Log(-b/w1)*w3*w4 - w13*w4*w0/w1
		J[0][1] = a*w13*(1/w1-b*w14/w11)*w3*math.Pow(-b/w1, a-1) - w13*w4*(a*w14/w1-a*w16*w14*w14/w11)
		J[1][0] = (w9*math.Log(w2)*w19*w16 - w9*w16*w16*w14 - w7*w20*w16 - a*w7*w18*math.Log(b)*w19*w16) / w10
		J[1][1] = -w9*w19/w10 - a*a*math.Pow(b, a-1)*w20*w16/w10 - a*w7*w18*w17/w10 - a*w7*w20*(a+2)*w0/(2*math.Pow(w2, a+3))
		return
	}
	a, b := newton(eq, [2]float64{1, 1}, nil)
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.NaN()
	}
	return K * math.Pow(b, a)
}

// newton solves F(x) = 0 in two unknowns by Newton–Raphson: from start,
// then from the grid {0, .33, .66, .99}², each try up to 1000 steps, until
// both residuals are within 1e-6 (ARX's solver configuration). ok, when
// set, must hold after every step. It returns NaNs when every try fails.
func newton(eq func(x, y float64) ([2]float64, [2][2]float64), start [2]float64, ok func([2]float64) bool) (float64, float64) {
	const accuracy, perTry, total = 1e-6, 1000, 17000
	starts := [][2]float64{start}
	for d1 := 0.0; d1 < 1; d1 += 0.33 {
		for d2 := 0.0; d2 < 1; d2 += 0.33 {
			starts = append(starts, [2]float64{d1, d2})
		}
	}
	used := 0
	for _, s := range starts {
		if used > total {
			break
		}
		for it := 0; it < perTry; it++ {
			used++
			f, j := eq(s[0], s[1])
			if math.Abs(f[0]) <= accuracy && math.Abs(f[1]) <= accuracy {
				return s[0], s[1]
			}
			det := j[0][0]*j[1][1] - j[0][1]*j[1][0]
			dx := (j[1][1]*f[0] - j[0][1]*f[1]) / det
			dy := (-j[1][0]*f[0] + j[0][0]*f[1]) / det
			s = [2]float64{s[0] - dx, s[1] - dy}
			if (ok != nil && !ok(s)) || math.IsNaN(s[0]) || math.IsNaN(s[1]) {
				break
			}
		}
	}
	return math.NaN(), math.NaN()
}

// Linked is one sample class with its size in a known population (the
// table the sample was drawn from): the input of journalist and marketer
// risk.
type Linked struct {
	// Sample is f, the class's records in the sample; Population is F ≥ f.
	Sample, Population int
}

// Journalist is the risk an attacker poses who does not know whether
// their target is in the sample, only that it is in the population (El
// Emam): a sample record in a class of F population records is
// re-identified with probability 1/F. Marketer is the expected share of
// the sample re-identified by an attacker who links every record, (1/n)Σ
// f/F.
type Journalist struct {
	Highest, Average, AtRisk, Threshold float64
	Marketer                            float64
}

// JournalistRisk computes the journalist's and the marketer's risks.
func JournalistRisk(classes []Linked, threshold float64) Journalist {
	j := Journalist{Threshold: threshold}
	n, popTotal, atRisk, minF := 0, 0, 0, 0
	marketer := 0.0
	for _, c := range classes {
		n += c.Sample
		popTotal += c.Population
		if minF == 0 || c.Population < minF {
			minF = c.Population
		}
		if 1/float64(c.Population) > threshold {
			atRisk += c.Sample
		}
		marketer += float64(c.Sample) / float64(c.Population)
	}
	if n == 0 {
		return j
	}
	j.Highest = 1 / float64(minF)
	j.AtRisk = float64(atRisk) / float64(n)
	j.Marketer = marketer / float64(n)
	j.Average = math.Max(float64(len(classes))/float64(popTotal), j.Marketer)
	return j
}
