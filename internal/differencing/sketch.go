// Package differencing is the check that stops two aggregate answers from
// being subtracted to isolate a few privacy units: every released cell
// (output row) of an answer under an aggregation rule is remembered as a
// small linear sketch of the rows it covered, and a new cell whose rows
// differ from an earlier cell's (or another cell's of the same answer) in
// fewer than min_units units is refused.
//
// # The sketch
//
// Each row r of a governed dataset carries four field elements mod the
// Mersenne prime p = 2^31-1, computed by the engine from hashes of the
// row's content and of its unit u: w1(r), w2(r) (two row weights),
// w1(r)·x(u) and w1(r)·x(u)², where x(u) is the unit's field id. A cell's
// sketch is, per bucket b(u) of the unit (one of B, a power of two), the
// four sums over the cell's rows; which buckets hold rows at all is kept
// too. Sums are linear, so the sketch of the difference of two cells is
// the difference of their sketches, and a unit whose rows (as a multiset)
// are the same in both cells cancels out of it exactly.
//
// In the difference, a bucket holding exactly one differing unit u reads
// (S0, S1, S2, S3) = (W, W2, W·x, W·x²) with W the sum of its differing
// rows' weights, so S0·S3 = S2². With two or more units the same identity
// fails (for two: S0·S3 - S2² = W_a·W_b·(x_a - x_b)²) unless ids collide.
// A bucket therefore counts 0 (all zero), 1 (consistent with one unit) or
// 2 (provably two or more), and the sum over buckets is a lower bound on
// the number of differing units that holds for every input, not only with
// high probability: a difference of 1..min_units-1 units is always caught.
// The probabilistic part is the other way round: a difference that
// cancels in every sum reads as "the same rows" with probability about
// 2^-62 per differing unit, and a true difference of min_units units or
// slightly more is refused when three units share a bucket (measured in
// sketch_test.go; about 3% at exactly min_units with the default B).
package differencing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Prime is the field modulus of every sketch sum (2^31-1).
const Prime = 1<<31 - 1

// MaxBuckets bounds B; the engine keeps 16 bits of each unit's bucket
// hash, and a sketch's bucket is that hash mod B.
const MaxBuckets = 1 << 12

// Buckets is the bucket count of a dataset's sketches under a rule of
// minUnits: the smallest power of two (at least 64) at which minUnits
// differing units share a bucket three at a time rarely enough, C(m,3)/B²
// <= 3%, since that is when the lower bound falls short and a legitimate
// answer near the threshold is refused. Memory per cell grows with B.
func Buckets(minUnits int) int {
	m := float64(minUnits)
	triples := m * (m - 1) * (m - 2) / 6
	b := 64
	for float64(b)*float64(b)*0.03 < triples && b < MaxBuckets {
		b *= 2
	}
	return b
}

// Sums are one bucket's four sums mod Prime.
type Sums struct{ W1, W2, WX, WXX uint32 }

// Sketch is one released cell as the check remembers it.
type Sketch struct {
	// Units is the exact number of distinct units the cell covered.
	Units int64
	// B is the bucket count; Index lists the buckets that hold rows,
	// ascending, and Sums their sums.
	B     int
	Index []uint16
	Sums  []Sums
}

// Add accumulates one bucket's engine sums (already reduced mod Prime).
func (s *Sketch) Add(bucket int, w1, w2, wx, wxx int64) {
	i, found := slices.BinarySearch(s.Index, uint16(bucket))
	if !found {
		s.Index = slices.Insert(s.Index, i, uint16(bucket))
		s.Sums = slices.Insert(s.Sums, i, Sums{})
	}
	v := &s.Sums[i]
	v.W1, v.W2, v.WX, v.WXX = addMod(v.W1, w1), addMod(v.W2, w2), addMod(v.WX, wx), addMod(v.WXX, wxx)
}

func addMod(a uint32, b int64) uint32 {
	b %= Prime
	if b < 0 {
		b += Prime
	}
	return uint32((uint64(a) + uint64(b)) % Prime)
}

// subMod is a-b mod Prime for a, b < Prime, without a division (the
// comparison loop's cost is in these and mulMod).
func subMod(a, b uint32) uint64 {
	d := uint64(a) + Prime - uint64(b)
	if d >= Prime {
		d -= Prime
	}
	return d
}

// mulMod is a·b mod Prime for a, b < Prime: for a Mersenne prime,
// x mod (2^31-1) folds the high bits onto the low ones.
func mulMod(a, b uint64) uint64 {
	x := a * b
	x = (x & Prime) + (x >> 31)
	x = (x & Prime) + (x >> 31)
	if x >= Prime {
		x -= Prime
	}
	return x
}

// fold returns s with its buckets summed down to b (b divides s.B).
func (s *Sketch) fold(b int) *Sketch {
	if s.B == b {
		return s
	}
	out := &Sketch{Units: s.Units, B: b}
	for i, idx := range s.Index {
		v := s.Sums[i]
		out.Add(int(idx)%b, int64(v.W1), int64(v.W2), int64(v.WX), int64(v.WXX))
	}
	return out
}

// DifferingUnits returns a lower bound on the number of units whose rows
// differ between a and b, counting no further once it reaches need
// (need <= 0 counts everything). It is 0 only when the two sketches are
// identical, that is when the cells covered the same rows (up to a hash
// cancellation of probability about 2^-62 per differing unit).
func DifferingUnits(a, b *Sketch, need int) int {
	if d := a.Units - b.Units; need > 0 && (d >= int64(need) || -d >= int64(need)) {
		// Units in one cell and not the other all differ.
		return need
	}
	if a.B != b.B {
		nb := min(a.B, b.B)
		a, b = a.fold(nb), b.fold(nb)
	}
	return walk(a.Index, a.Sums, b.Index, b.Sums, math.MaxInt, need)
}

// walk sums bucketUnits over the buckets of two sketches with index at
// most limit, in step, stopping once the sum reaches need (if positive).
func walk(ai []uint16, as []Sums, bi []uint16, bs []Sums, limit, need int) int {
	lb := 0
	// Cells of many units hold rows in every bucket: walk them in step.
	n := min(len(ai), len(bi))
	i := 0
	for ; i < n && ai[i] == bi[i] && int(ai[i]) <= limit; i++ {
		va, vb := &as[i], &bs[i]
		lb += bucketUnits(subMod(va.W1, vb.W1), subMod(va.W2, vb.W2), subMod(va.WX, vb.WX), subMod(va.WXX, vb.WXX))
		if need > 0 && lb >= need {
			return lb
		}
	}
	j := i
	for i < len(ai) || j < len(bi) {
		var va, vb Sums
		var onlyOne bool
		switch {
		case j >= len(bi) || (i < len(ai) && ai[i] < bi[j]):
			if int(ai[i]) > limit {
				return lb
			}
			va, onlyOne = as[i], true
			i++
		case i >= len(ai) || bi[j] < ai[i]:
			if int(bi[j]) > limit {
				return lb
			}
			vb, onlyOne = bs[j], true
			j++
		default:
			if int(ai[i]) > limit {
				return lb
			}
			va, vb = as[i], bs[j]
			i++
			j++
		}
		f := bucketUnits(subMod(va.W1, vb.W1), subMod(va.W2, vb.W2), subMod(va.WX, vb.WX), subMod(va.WXX, vb.WXX))
		if onlyOne && f == 0 {
			// Rows in this bucket on one side only: some unit differs,
			// even if its sums happen to vanish.
			f = 1
		}
		lb += f
		if need > 0 && lb >= need {
			return lb
		}
	}
	return lb
}

// headBuckets is how many of a cell's first buckets its head keeps.
const headBuckets = 16

// head is the first buckets of a sketch, kept inline so that a history's
// candidates can be scanned in contiguous memory: most pairs of different
// cells already differ in enough units there, and the whole sketch (a
// cache miss per bucket) is read only for the rest.
type head struct {
	units int64
	// pres has bit i set when bucket i (< 64) holds rows: a bucket with
	// rows on one side only holds a differing unit, so the popcount of
	// two heads' XOR is a lower bound by itself.
	pres     uint64
	n        uint8
	complete bool // the sketch has no more buckets than these
	b        int
	idx      [headBuckets]uint16
	sums     [headBuckets]Sums
}

func headOf(s *Sketch) head {
	h := head{units: s.Units, b: s.B, complete: len(s.Index) <= headBuckets}
	h.n = uint8(copy(h.idx[:], s.Index))
	for _, i := range s.Index {
		if i >= 64 {
			break
		}
		h.pres |= 1 << i
	}
	copy(h.sums[:], s.Sums)
	return h
}

// headUnits is a lower bound on the units differing between the cells of
// two heads of one bucket count, over the buckets both heads hold whole.
func headUnits(a, b *head, need int) int {
	limit := math.MaxInt
	if !a.complete {
		limit = int(a.idx[a.n-1])
	}
	if !b.complete {
		limit = min(limit, int(b.idx[b.n-1]))
	}
	return walk(a.idx[:a.n], a.sums[:a.n], b.idx[:b.n], b.sums[:b.n], limit, need)
}

// bucketUnits is a lower bound on the differing units of one bucket of a
// difference: 0, 1, or 2 for "two or more".
func bucketUnits(s0, s1, s2, s3 uint64) int {
	switch {
	case s0 == 0 && s1 == 0 && s2 == 0 && s3 == 0:
		return 0
	case s0 != 0:
		if mulMod(s0, s3) == mulMod(s2, s2) {
			return 1
		}
		return 2
	case s2 == 0 && s3 == 0:
		return 1 // one unit whose first weights cancelled, seen in the second
	default:
		return 2 // one unit would give s2 = s3 = 0 when s0 = 0
	}
}

// Bytes is the sketch's memory and storage size (its Index and Sums).
func (s *Sketch) Bytes() int { return len(s.Index) * (2 + 16) }

const encodingVersion = 1

// AppendEncoding appends s's binary form.
func (s *Sketch) AppendEncoding(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(s.Units))
	b = binary.AppendUvarint(b, uint64(bits.TrailingZeros(uint(s.B))))
	b = binary.AppendUvarint(b, uint64(len(s.Index)))
	prev := -1
	for i, idx := range s.Index {
		b = binary.AppendUvarint(b, uint64(int(idx)-prev))
		prev = int(idx)
		v := s.Sums[i]
		b = binary.LittleEndian.AppendUint32(b, v.W1)
		b = binary.LittleEndian.AppendUint32(b, v.W2)
		b = binary.LittleEndian.AppendUint32(b, v.WX)
		b = binary.LittleEndian.AppendUint32(b, v.WXX)
	}
	return b
}

var errCorrupt = errors.New("differencing: corrupt sketch encoding")

func decodeSketch(b []byte) (*Sketch, []byte, error) {
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	units, ok1 := next()
	logB, ok2 := next()
	n, ok3 := next()
	if !ok1 || !ok2 || !ok3 || logB > 12 || n > 1<<logB {
		return nil, nil, errCorrupt
	}
	s := &Sketch{Units: int64(units), B: 1 << logB, Index: make([]uint16, n), Sums: make([]Sums, n)}
	prev := -1
	for i := range s.Index {
		d, ok := next()
		if !ok || d == 0 || prev+int(d) >= s.B || len(b) < 16 {
			return nil, nil, errCorrupt
		}
		prev += int(d)
		s.Index[i] = uint16(prev)
		s.Sums[i] = Sums{binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:]), binary.LittleEndian.Uint32(b[8:]), binary.LittleEndian.Uint32(b[12:])}
		b = b[16:]
	}
	return s, b, nil
}

// EncodeAnswer is the stored form of one answer's cells of one dataset,
// computed under scheme (the engine's hashing; see Scheme).
func EncodeAnswer(scheme string, cells []*Sketch) []byte {
	b := []byte{encodingVersion}
	b = binary.AppendUvarint(b, uint64(len(scheme)))
	b = append(b, scheme...)
	b = binary.AppendUvarint(b, uint64(len(cells)))
	for _, c := range cells {
		b = c.AppendEncoding(b)
	}
	return b
}

// DecodeAnswer reverses EncodeAnswer.
func DecodeAnswer(b []byte) (scheme string, cells []*Sketch, err error) {
	if len(b) == 0 || b[0] != encodingVersion {
		return "", nil, errCorrupt
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return "", nil, errCorrupt
	}
	scheme, b = string(b[k:k+int(n)]), b[k+int(n):]
	count, k := binary.Uvarint(b)
	if k <= 0 || count > uint64(len(b)) {
		return "", nil, errCorrupt
	}
	b = b[k:]
	for range count {
		var s *Sketch
		if s, b, err = decodeSketch(b); err != nil {
			return "", nil, err
		}
		cells = append(cells, s)
	}
	if len(b) != 0 {
		return "", nil, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(b))
	}
	return scheme, cells, nil
}
