package anon

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Metric names an information-loss measure.
type Metric string

// The quality metrics. Lower is better for all of them.
const (
	// MetricNUE is ARX's non-uniform entropy: per quasi-identifier and
	// record, −log2 of the share its original value has among the records
	// sharing its generalised value, summed. It depends on the
	// transformation only, not on suppression.
	MetricNUE Metric = "nue"
	// MetricLoss is Iyengar's loss metric: per cell, (leaves under the
	// generalised value − 1)/(domain − 1), a suppressed cell 1, averaged
	// over the cells of the quasi-identifiers.
	MetricLoss Metric = "loss"
	// MetricDM is the discernibility metric: Σ f² over kept classes plus
	// n per suppressed record.
	MetricDM Metric = "dm"
	// MetricDMStar is DM*: Σ f² over all classes, suppressed ones
	// included (ARX's monotonic discernibility).
	MetricDMStar Metric = "dmstar"
	// MetricAECS is the average equivalence class size: n over the number of
	// classes, the suppressed records counting as one class.
	MetricAECS Metric = "aecs"
)

// Config is one anonymisation problem.
type Config struct {
	// QI are the quasi-identifiers, in the order levels are reported.
	QI []string
	// Hierarchies per quasi-identifier.
	Hierarchies map[string]*Hierarchy
	Models      Models
	// MaxSuppression is the share of records that may be suppressed, in [0, 1].
	MaxSuppression float64
	Metric         Metric
}

// Node is one evaluated transformation.
type Node struct {
	// Levels per quasi-identifier, in Config.QI's order.
	Levels []int
	// Anonymous reports whether the models hold after suppression.
	Anonymous bool
	// Suppressed is the number of records in violating classes.
	Suppressed int
	// Classes is the number of kept equivalence classes.
	Classes int
	// Loss is the information loss under the configured metric.
	Loss float64
}

// Problem is a table compiled for search.
type Problem struct {
	cfg     Config
	table   *Table
	cols    []int
	gens    []*generaliser
	heights []int
	sens    *sensitiveModel
	sensCol int
	// unitCol is the privacy unit's column when k counts units, or -1.
	unitCol int
	limit   int
	// nue[a][l] is attribute a's non-uniform entropy at level l.
	nue [][]float64
	// base are the classes of the identity transformation.
	base *classes
	// shift and mask place each quasi-identifier's code in a class key.
	shift []uint
	mask  []uint64
}

// ErrNoSolution means no transformation satisfies the models within the
// suppression limit.
var ErrNoSolution = errors.New("anon: no transformation satisfies the privacy models within the suppression limit")

// NewProblem compiles a table for cfg.
func NewProblem(t *Table, cfg Config) (*Problem, error) {
	if err := cfg.Models.Check(); err != nil {
		return nil, err
	}
	if cfg.MaxSuppression < 0 || cfg.MaxSuppression > 1 {
		return nil, fmt.Errorf("anon: the suppression limit must lie in [0, 1]")
	}
	switch cfg.Metric {
	case "":
		cfg.Metric = MetricNUE
	case MetricNUE, MetricLoss, MetricDM, MetricDMStar, MetricAECS:
	default:
		return nil, fmt.Errorf("anon: unknown metric %q (nue, loss, dm, dmstar or aecs)", cfg.Metric)
	}
	if len(cfg.QI) == 0 {
		return nil, fmt.Errorf("anon: no quasi-identifiers")
	}
	if t.Rows() == 0 {
		return nil, fmt.Errorf("anon: the table has no rows")
	}
	p := &Problem{cfg: cfg, table: t, sensCol: -1, unitCol: -1}
	if u := cfg.Models.Unit; u != "" {
		if p.unitCol = t.Column(u); p.unitCol < 0 {
			return nil, fmt.Errorf("anon: no privacy unit column %s", u)
		}
		if slices.Contains(cfg.QI, u) {
			return nil, fmt.Errorf("anon: the privacy unit %s cannot be a quasi-identifier", u)
		}
	}
	for _, q := range cfg.QI {
		c := t.Column(q)
		if c < 0 {
			return nil, fmt.Errorf("anon: no column %s", q)
		}
		h := cfg.Hierarchies[q]
		if h == nil {
			return nil, fmt.Errorf("anon: no hierarchy for quasi-identifier %s", q)
		}
		g, err := newGeneraliser(h, t.Dict[c])
		if err != nil {
			return nil, err
		}
		p.cols = append(p.cols, c)
		p.gens = append(p.gens, g)
		p.heights = append(p.heights, g.height)
	}
	if s := cfg.Models.Sensitive; s != "" {
		p.sensCol = t.Column(s)
		if p.sensCol < 0 {
			return nil, fmt.Errorf("anon: no sensitive column %s", s)
		}
		if slices.Contains(cfg.QI, s) {
			return nil, fmt.Errorf("anon: %s cannot be both quasi-identifying and sensitive", s)
		}
		if cfg.Models.L > 0 || cfg.Models.T > 0 {
			sm, err := newSensitiveModel(cfg.Models, t, p.sensCol)
			if err != nil {
				return nil, err
			}
			p.sens = sm
		}
	}
	p.limit = int(math.Floor(cfg.MaxSuppression*float64(t.Rows()) + 1e-9))
	p.nue = make([][]float64, len(p.cols))
	for a, c := range p.cols {
		p.nue[a] = nueByLevel(t.Codes[c], p.gens[a])
	}
	if err := p.packing(); err != nil {
		return nil, err
	}
	p.base = p.fromRows(make([]int, len(p.cols)))
	return p, nil
}

// Size is the number of transformations in the lattice.
func (p *Problem) Size() int {
	n := 1
	for _, h := range p.heights {
		n *= h
	}
	return n
}

// Heights returns the number of levels per quasi-identifier.
func (p *Problem) Heights() []int { return slices.Clone(p.heights) }

func nueByLevel(codes []int32, g *generaliser) []float64 {
	out := make([]float64, g.height)
	leaf := make([]float64, len(g.dict[0]))
	for _, c := range codes {
		leaf[c]++
	}
	for l := 1; l < g.height; l++ {
		gen := make([]float64, len(g.dict[l]))
		for c, n := range leaf {
			if c < len(g.gen[l]) {
				gen[g.gen[l][c]] += n
			}
		}
		sum := 0.0
		for c, n := range leaf {
			if n > 0 {
				sum -= n * math.Log2(n/gen[g.gen[l][c]])
			}
		}
		out[l] = sum
	}
	return out
}

// classes are the equivalence classes of one transformation: each class's
// generalised quasi-identifiers bit-packed into a key, its size, and its
// sensitive values' histogram when a model needs one.
type classes struct {
	levels []int
	keys   []uint64
	size   []int32
	hist   [][]valueCount
	// units are each class's privacy units with their rows (a histogram
	// like hist, of the unit column), when k counts units rather than rows.
	units [][]valueCount
}

func (c *classes) len() int { return len(c.size) }

// ErrTooWide means the quasi-identifiers' codes do not fit a 64-bit class key.
var ErrTooWide = errors.New("anon: the quasi-identifiers' value codes need more than 64 bits together; use fewer quasi-identifiers or coarser original values")

// packing places each quasi-identifier's code in its own bits of a key;
// an attribute gets enough bits for its original (largest) level.
func (p *Problem) packing() error {
	bit := uint(0)
	for _, g := range p.gens {
		w := uint(bits.Len(uint(len(g.dict[0]) - 1)))
		if w == 0 {
			w = 1
		}
		p.shift = append(p.shift, bit)
		p.mask = append(p.mask, uint64(1)<<w-1)
		bit += w
	}
	if bit > 64 {
		return ErrTooWide
	}
	return nil
}

// rowKey is the key of row r's class under a transformation.
func (p *Problem) rowKey(levels []int, r int) uint64 {
	k := uint64(0)
	for a, c := range p.cols {
		k |= uint64(p.gens[a].gen[levels[a]][p.table.Codes[c][r]]) << p.shift[a]
	}
	return k
}

func (p *Problem) code(key uint64, a int) int32 {
	return int32(key >> p.shift[a] & p.mask[a])
}

// fromRows computes a transformation's classes straight from the rows: the
// identity's classes, and the reference the roll-up is tested against.
func (p *Problem) fromRows(levels []int) *classes {
	out := &classes{levels: slices.Clone(levels)}
	index := map[uint64]int32{}
	var hists, units []map[int32]int32
	for r := range p.table.Rows() {
		k := p.rowKey(levels, r)
		i, ok := index[k]
		if !ok {
			i = int32(out.len())
			index[k] = i
			out.keys = append(out.keys, k)
			out.size = append(out.size, 0)
			if p.sens != nil {
				hists = append(hists, map[int32]int32{})
			}
			if p.unitCol >= 0 {
				units = append(units, map[int32]int32{})
			}
		}
		out.size[i]++
		if p.sens != nil {
			hists[i][p.table.Codes[p.sensCol][r]]++
		}
		if p.unitCol >= 0 {
			units[i][p.table.Codes[p.unitCol][r]]++
		}
	}
	if p.sens != nil {
		out.hist = sortedHists(hists)
	}
	if p.unitCol >= 0 {
		out.units = sortedHists(units)
	}
	return out
}

// sortedHists turns counts by value into histograms sorted by value, the
// form mergeHist merges.
func sortedHists(counts []map[int32]int32) [][]valueCount {
	out := make([][]valueCount, len(counts))
	for i, h := range counts {
		for v, n := range h {
			out[i] = append(out[i], valueCount{v, n})
		}
		slices.SortFunc(out[i], func(a, b valueCount) int { return int(a.value - b.value) })
	}
	return out
}

// rollUp computes the classes of from's transformation with attribute a one
// level coarser. tab is the caller's scratch hash table, reused across calls.
func (p *Problem) rollUp(from *classes, a int, tab *table) *classes {
	levels := slices.Clone(from.levels)
	up := p.gens[a].up[levels[a]]
	levels[a]++
	shift, mask := p.shift[a], p.mask[a]
	clearA := ^(mask << shift)
	return p.regroup(from, levels, func(k uint64) uint64 { return k&clearA | uint64(up[k>>shift&mask])<<shift }, tab)
}

// regroup maps every class key of from by generalise and merges the
// classes that meet: sizes add, histograms (of sensitive values and of
// units) merge.
func (p *Problem) regroup(from *classes, levels []int, generalise func(uint64) uint64, tab *table) *classes {
	tab.reset(from.len())
	tab.keys, tab.sizes, tab.into = tab.keys[:0], tab.sizes[:0], tab.into[:0]
	track := from.hist != nil || from.units != nil
	for i, k := range from.keys {
		k = generalise(k)
		j, fresh := tab.slot(k, int32(len(tab.keys)))
		if fresh {
			tab.keys = append(tab.keys, k)
			tab.sizes = append(tab.sizes, 0)
		}
		tab.sizes[j] += from.size[i]
		if track {
			tab.into = append(tab.into, j)
		}
	}
	out := &classes{levels: levels, keys: slices.Clone(tab.keys), size: slices.Clone(tab.sizes)}
	if from.hist != nil {
		out.hist = make([][]valueCount, out.len())
		for i, j := range tab.into {
			out.hist[j] = mergeHist(out.hist[j], from.hist[i])
		}
	}
	if from.units != nil {
		out.units = make([][]valueCount, out.len())
		for i, j := range tab.into {
			out.units[j] = mergeHist(out.units[j], from.units[i])
		}
	}
	return out
}

// table is an open-addressing hash table from class keys to class
// indexes, cleared in O(1) by a generation stamp so that one allocation
// serves every node a worker evaluates.
type table struct {
	slots []slot
	gen   uint32
	mask  uint64
	// keys, sizes and into are rollUp's scratch: the merged classes' keys
	// and sizes, and each input class's merged class.
	keys  []uint64
	sizes []int32
	into  []int32
}

// slot keeps key, value and stamp in one cache line's worth.
type slot struct {
	key   uint64
	val   int32
	stamp uint32
}

func (t *table) reset(n int) {
	// A load factor of at most 2/3: the merged classes are fewer than n.
	size := 16
	for size < n+n/2 {
		size <<= 1
	}
	if size > len(t.slots) {
		t.slots = make([]slot, size)
		t.gen = 0
	}
	t.gen++
	if t.gen == 0 {
		clear(t.slots)
		t.gen = 1
	}
	t.mask = uint64(size - 1)
}

func (t *table) slot(k uint64, next int32) (int32, bool) {
	h := (k * 0x9E3779B97F4A7C15) >> 17
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.stamp != t.gen {
			*s = slot{key: k, val: next, stamp: t.gen}
			return next, true
		}
		if s.key == k {
			return s.val, false
		}
	}
}

func mergeHist(a, b []valueCount) []valueCount {
	if len(a) == 0 {
		return slices.Clone(b)
	}
	out := make([]valueCount, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i].value < b[j].value:
			out = append(out, a[i])
			i++
		case a[i].value > b[j].value:
			out = append(out, b[j])
			j++
		default:
			out = append(out, valueCount{a[i].value, a[i].count + b[j].count})
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// violates reports whether class i breaks a privacy model.
func (p *Problem) violates(c *classes, i int) bool {
	n := int(c.size[i])
	if c.units != nil {
		n = len(c.units[i])
	}
	if n < p.cfg.Models.K {
		return true
	}
	return p.sens != nil && !p.sens.ok(c.hist[i], c.size[i])
}

// evaluate judges a transformation from its classes.
func (p *Problem) evaluate(c *classes) Node {
	n := p.table.Rows()
	node := Node{Levels: slices.Clone(c.levels)}
	d := len(p.cols)
	sum := 0.0
	for i, f := range c.size {
		if p.violates(c, i) {
			node.Suppressed += int(f)
			if p.cfg.Metric == MetricLoss {
				sum += float64(f) * float64(d)
			}
			if p.cfg.Metric == MetricDMStar {
				sum += float64(f) * float64(f)
			}
			continue
		}
		node.Classes++
		switch p.cfg.Metric {
		case MetricDM, MetricDMStar:
			sum += float64(f) * float64(f)
		case MetricLoss:
			for a := range d {
				g := p.gens[a]
				if g.domain > 1 {
					leaves := g.leaves[c.levels[a]][p.code(c.keys[i], a)]
					sum += float64(f) * float64(leaves-1) / float64(g.domain-1)
				}
			}
		}
	}
	node.Anonymous = node.Suppressed <= p.limit
	switch p.cfg.Metric {
	case MetricNUE:
		node.Loss = p.nueOf(c.levels)
	case MetricDM:
		node.Loss = sum + float64(node.Suppressed)*float64(n)
	case MetricDMStar:
		node.Loss = sum
	case MetricAECS:
		groups := node.Classes
		if node.Suppressed > 0 {
			groups++
		}
		node.Loss = float64(n) / float64(groups)
	case MetricLoss:
		node.Loss = sum / float64(n*d)
	}
	return node
}

func (p *Problem) nueOf(levels []int) float64 {
	sum := 0.0
	for a, l := range levels {
		sum += p.nue[a][l]
	}
	return sum
}

// Evaluate judges one transformation, computing its classes from the rows.
func (p *Problem) Evaluate(levels []int) (Node, error) {
	if err := p.checkLevels(levels); err != nil {
		return Node{}, err
	}
	return p.evaluate(p.fromRows(levels)), nil
}

func (p *Problem) checkLevels(levels []int) error {
	if len(levels) != len(p.cols) {
		return fmt.Errorf("anon: %d levels for %d quasi-identifiers", len(levels), len(p.cols))
	}
	for a, l := range levels {
		if l < 0 || l >= p.heights[a] {
			return fmt.Errorf("anon: level %d of %s is outside 0..%d", l, p.cfg.QI[a], p.heights[a]-1)
		}
	}
	return nil
}

// Result is the outcome of a search.
type Result struct {
	// Optimum is the anonymous transformation with the least loss; ties
	// go to the lower sum of levels, then the lexicographically smaller
	// levels.
	Optimum Node
	// Evaluated is the number of transformations whose classes were
	// computed; Anonymous of them satisfied the models.
	Evaluated, Anonymous int
}

// better orders candidate optima.
func better(a, b Node) bool {
	if a.Loss != b.Loss {
		return a.Loss < b.Loss
	}
	sa, sb := 0, 0
	for i := range a.Levels {
		sa += a.Levels[i]
		sb += b.Levels[i]
	}
	if sa != sb {
		return sa < sb
	}
	return slices.Compare(a.Levels, b.Levels) < 0
}

// Search returns the optimal transformation, by one of two exact
// strategies:
//
//   - with monotone anonymity, the transformation-only metric (non-uniform
//     entropy) and no suppression, predictive tagging (searchTagged): the
//     anonymous region is bounded by few transformations, so checking a
//     few hundred classifies all 12,960 of Adult's;
//   - otherwise a level-by-level walk of the whole lattice (searchAll),
//     computing each transformation's classes from the classes of its
//     predecessor with the fewest, on as many workers as there are CPUs,
//     keeping only the previous level in memory; with monotone anonymity
//     and metric, transformations above an anonymous one are counted
//     anonymous without being computed. With suppression the boundary of
//     the anonymous region is long (Adult, k = 5, 4%: 3,504 checks, each
//     from far below), and this walk is the faster (1.2 s against 2.0 s, docs/benchmarks.md).
func (p *Problem) Search() (Result, error) {
	if p.monotone() && p.cfg.Metric == MetricNUE && p.limit == 0 {
		return p.searchTagged()
	}
	return p.searchAll()
}

// monotone reports whether the privacy models are monotone under
// generalisation with this suppression limit: merging classes can only
// lower the records in violating classes. That holds for k-anonymity and
// distinct l-diversity with suppression, and for entropy and recursive
// l-diversity and t-closeness without it (Machanavajjhala et al.; Li et
// al.), but not for those with suppression: a valid class merged with an
// invalid one may be invalid.
func (p *Problem) monotone() bool {
	m := p.cfg.Models
	if m.T > 0 || (m.L > 0 && m.LKind != "" && m.LKind != LDistinct) {
		return p.limit == 0
	}
	return true
}

// searchAll evaluates every transformation of the lattice level by level
// (levels summed), each from the classes of a predecessor one level finer,
// keeping only the previous level's classes in memory, on as many workers
// as there are CPUs, and returns the optimum.
func (p *Problem) searchAll() (Result, error) {
	var res Result
	found := false
	consider := func(node Node) {
		res.Evaluated++
		if node.Anonymous {
			res.Anonymous++
			if !found || better(node, res.Optimum) {
				res.Optimum, found = node, true
			}
		}
	}
	consider(p.evaluate(p.base))
	prev := map[int]*classes{0: p.base}
	prune := p.monotone() && p.cfg.Metric == MetricNUE
	// settled marks transformations known anonymous whose generalisations
	// need no evaluation.
	settled := make([]bool, p.Size())
	if prune && res.Anonymous > 0 {
		settled[0] = true
	}
	workers := runtime.GOMAXPROCS(0)
	tables := make([]table, workers)
	for sum := 1; sum <= p.maxSum(); sum++ {
		var todo [][]int
		p.eachAtLevel(sum, func(levels []int) {
			if prune && p.anyPredecessor(levels, settled) {
				settled[p.index(levels)] = true
				res.Anonymous++
				return
			}
			todo = append(todo, slices.Clone(levels))
		})
		// Each transformation rolls up from its predecessor with the fewest
		// classes. The sources are chosen first, so that the previous
		// level's other classes are dropped before this level is computed
		// and each source as soon as its last dependant is.
		source := make([]int, len(todo))
		attr := make([]int, len(todo))
		uses := map[int]*atomic.Int32{}
		for i, levels := range todo {
			best := -1
			for b, l := range levels {
				if l == 0 {
					continue
				}
				levels[b]--
				j := p.index(levels)
				levels[b]++
				if c, ok := prev[j]; ok && (best < 0 || c.len() < prev[best].len()) {
					best, attr[i] = j, b
				}
			}
			// -1: every predecessor was dropped to stay within the memory
			// budget; the identity's classes serve instead.
			source[i] = best
			if uses[best] == nil {
				uses[best] = new(atomic.Int32)
			}
			uses[best].Add(1)
		}
		sources := make(map[int]*classes, len(uses))
		for j := range uses {
			if j >= 0 {
				sources[j] = prev[j]
			}
		}
		prev = nil
		var mu sync.Mutex
		done := make([]*classes, len(todo))
		// keep holds the level's class lists within the budget as they
		// are computed, dropping the largest first; a transformation whose
		// predecessors are all dropped starts from the identity's classes.
		var kept []int
		total := 0
		keep := func(i int) {
			kept = append(kept, i)
			total += done[i].len()
			for total > walkBudget && len(kept) > 1 {
				big := 0
				for k, j := range kept {
					if done[j].len() > done[kept[big]].len() {
						big = k
					}
				}
				total -= done[kept[big]].len()
				done[kept[big]] = nil
				kept = slices.Delete(kept, big, big+1)
			}
		}
		nodes := make([]Node, len(todo))
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= len(todo) {
						return
					}
					if source[i] < 0 {
						done[i] = p.rollUpTo(p.base, todo[i], &tables[w])
					} else {
						mu.Lock()
						from := sources[source[i]]
						mu.Unlock()
						done[i] = p.rollUp(from, attr[i], &tables[w])
					}
					nodes[i] = p.evaluate(done[i])
					if prune && nodes[i].Anonymous {
						done[i] = nil // its generalisations are settled: never a source
					} else {
						mu.Lock()
						keep(i)
						mu.Unlock()
					}
					if source[i] >= 0 && uses[source[i]].Add(-1) == 0 {
						mu.Lock()
						delete(sources, source[i])
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		cur := make(map[int]*classes, len(kept))
		for i, levels := range todo {
			consider(nodes[i])
			if prune && nodes[i].Anonymous {
				settled[p.index(levels)] = true
			}
			if done[i] != nil {
				cur[p.index(levels)] = done[i]
			}
		}
		prev = cur
	}
	if !found {
		return res, ErrNoSolution
	}
	return res, nil
}

// walkBudget bounds the classes (12 bytes each) the level walk keeps of a
// level for the next: about 200 MB, whatever the table's size.
const walkBudget = 16 << 20

// anyPredecessor reports whether a transformation one level finer than
// levels is marked.
func (p *Problem) anyPredecessor(levels []int, marked []bool) bool {
	for a, l := range levels {
		if l == 0 {
			continue
		}
		levels[a]--
		m := marked[p.index(levels)]
		levels[a]++
		if m {
			return true
		}
	}
	return false
}

// Exhaustive evaluates every transformation straight from the rows: slow,
// independent of the roll-up, and the reference Search is tested against.
func (p *Problem) Exhaustive() (Result, error) {
	var res Result
	found := false
	levels := make([]int, len(p.heights))
	for {
		node := p.evaluate(p.fromRows(levels))
		res.Evaluated++
		if node.Anonymous {
			res.Anonymous++
			if !found || better(node, res.Optimum) {
				res.Optimum, found = node, true
			}
		}
		if !p.increment(levels) {
			break
		}
	}
	if !found {
		return res, ErrNoSolution
	}
	return res, nil
}

func (p *Problem) increment(levels []int) bool {
	for a := len(levels) - 1; a >= 0; a-- {
		levels[a]++
		if levels[a] < p.heights[a] {
			return true
		}
		levels[a] = 0
	}
	return false
}

func (p *Problem) index(levels []int) int {
	i := 0
	for a, l := range levels {
		i = i*p.heights[a] + l
	}
	return i
}

// eachAtLevel calls fn with every transformation whose levels sum to sum.
func (p *Problem) eachAtLevel(sum int, fn func([]int)) {
	levels := make([]int, len(p.heights))
	var rec func(a, left int)
	rec = func(a, left int) {
		if a == len(levels)-1 {
			if left < p.heights[a] {
				levels[a] = left
				fn(levels)
			}
			return
		}
		for l := 0; l < p.heights[a] && l <= left; l++ {
			levels[a] = l
			rec(a+1, left-l)
		}
	}
	rec(0, sum)
}

// FormatLevels renders levels as "age=1 sex=0 …".
func (p *Problem) FormatLevels(levels []int) string {
	parts := make([]string, len(levels))
	for a, l := range levels {
		parts[a] = fmt.Sprintf("%s=%d", p.cfg.QI[a], l)
	}
	return strings.Join(parts, " ")
}

// ClassSizes groups a table's rows by the given columns and returns the
// size of every class: the input of a risk estimate. Columns need no
// hierarchy.
func ClassSizes(t *Table, columns []string) ([]int, error) {
	counts, err := ClassCounts(t, columns)
	if err != nil {
		return nil, err
	}
	return slices.Collect(maps.Values(counts)), nil
}

// Metric is the metric the problem minimises.
func (p *Problem) Metric() Metric { return p.cfg.Metric }
