package anon

import (
	"fmt"
	"math"
	"slices"
	"strconv"
)

// LKind names an l-diversity variant.
type LKind string

// The l-diversity variants (Machanavajjhala et al.; ARX's criteria).
const (
	LDistinct  LKind = "distinct"
	LEntropy   LKind = "entropy"
	LRecursive LKind = "recursive"
)

// TKind names a t-closeness ground distance.
type TKind string

// The t-closeness distances (Li et al.; ARX's criteria).
const (
	TEqual        TKind = "equal"
	TOrdered      TKind = "ordered"
	THierarchical TKind = "hierarchical"
)

// Models are the privacy models a transformation must satisfy; a class
// that violates any of them is suppressed.
type Models struct {
	// K is the minimum class size (k-anonymity); 0 or 1 means none.
	K int
	// Unit, when set, is the privacy unit's column (a patient, an account):
	// k then counts the distinct units of a class, not its rows, so that
	// one person's many rows do not make a class look crowded.
	Unit string
	// Sensitive is the sensitive attribute's column, required by L and T.
	Sensitive string
	// L is the l of l-diversity; 0 means none.
	L     int
	LKind LKind
	// C is recursive-(c,l) diversity's c.
	C float64
	// T is the t of t-closeness; 0 means none.
	T     float64
	TKind TKind
	// SensitiveHierarchy is the ground hierarchy of hierarchical t-closeness.
	SensitiveHierarchy *Hierarchy
}

// Check reports parameters that make no sense, naming the parameter.
func (m Models) Check() error {
	switch {
	case m.K < 0:
		return fmt.Errorf("anon: k must be at least 1")
	case (m.L > 0 || m.T > 0) && m.Sensitive == "":
		return fmt.Errorf("anon: l-diversity and t-closeness need a sensitive attribute")
	case m.L == 1 || m.L < 0:
		return fmt.Errorf("anon: l must be at least 2")
	case m.L > 0 && m.LKind == LRecursive && m.C <= 0:
		return fmt.Errorf("anon: recursive (c,l)-diversity needs c > 0")
	case m.T < 0 || m.T > 1:
		return fmt.Errorf("anon: t must lie in (0, 1]")
	case m.T > 0 && m.TKind == THierarchical && m.SensitiveHierarchy == nil:
		return fmt.Errorf("anon: hierarchical t-closeness needs the sensitive attribute's hierarchy")
	}
	switch m.LKind {
	case "", LDistinct, LEntropy, LRecursive:
	default:
		return fmt.Errorf("anon: unknown l-diversity kind %q (distinct, entropy or recursive)", m.LKind)
	}
	switch m.TKind {
	case "", TEqual, TOrdered, THierarchical:
	default:
		return fmt.Errorf("anon: unknown t-closeness kind %q (equal, ordered or hierarchical)", m.TKind)
	}
	return nil
}

// valueCount is one sensitive value's count in a class.
type valueCount struct {
	value int32
	count int32
}

// sensitiveModel checks a class's sensitive-value histogram.
type sensitiveModel struct {
	models Models
	// global[v] is the share of sensitive value v in the whole input.
	global []float64
	// rank[v] is v's position in the ordered distance's order.
	rank []int
	// tree is the hierarchical distance's ground tree.
	tree *groundTree
}

func newSensitiveModel(m Models, t *Table, col int) (*sensitiveModel, error) {
	s := &sensitiveModel{models: m}
	n := float64(t.Rows())
	s.global = make([]float64, len(t.Dict[col]))
	for _, c := range t.Codes[col] {
		s.global[c]++
	}
	for i := range s.global {
		s.global[i] /= n
	}
	if m.T > 0 && m.TKind == TOrdered {
		s.rank = orderRanks(t.Dict[col])
	}
	if m.T > 0 && m.TKind == THierarchical {
		tree, err := newGroundTree(m.SensitiveHierarchy, t.Dict[col])
		if err != nil {
			return nil, err
		}
		s.tree = tree
	}
	return s, nil
}

// orderRanks orders values numerically when every one is a number, else as
// strings (the order of ARX's ordered distance is the attribute's data type's).
func orderRanks(values []string) []int {
	idx := make([]int, len(values))
	nums := make([]float64, len(values))
	numeric := true
	for i, v := range values {
		idx[i] = i
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			numeric = false
		}
		nums[i] = f
	}
	slices.SortFunc(idx, func(a, b int) int {
		if numeric {
			if nums[a] != nums[b] {
				if nums[a] < nums[b] {
					return -1
				}
				return 1
			}
		}
		if values[a] < values[b] {
			return -1
		} else if values[a] > values[b] {
			return 1
		}
		return 0
	})
	rank := make([]int, len(values))
	for r, i := range idx {
		rank[i] = r
	}
	return rank
}

// ok reports whether a class with this histogram (any order) and size
// satisfies l-diversity and t-closeness.
func (s *sensitiveModel) ok(hist []valueCount, size int32) bool {
	m := s.models
	if m.L > 0 {
		switch m.LKind {
		case "", LDistinct:
			if len(hist) < m.L {
				return false
			}
		case LEntropy:
			f := float64(size)
			h := 0.0
			for _, vc := range hist {
				p := float64(vc.count) / f
				h -= p * math.Log(p)
			}
			if h < math.Log(float64(m.L)) {
				return false
			}
		case LRecursive:
			if len(hist) < m.L {
				return false
			}
			counts := make([]int32, len(hist))
			for i, vc := range hist {
				counts[i] = vc.count
			}
			slices.Sort(counts)
			slices.Reverse(counts)
			tail := 0.0
			for _, c := range counts[m.L-1:] {
				tail += float64(c)
			}
			if !(float64(counts[0]) < m.C*tail) {
				return false
			}
		}
	}
	if m.T > 0 && s.distance(hist, size) > m.T {
		return false
	}
	return true
}

// distance is the class's distance from the input's distribution under the
// chosen ground distance.
func (s *sensitiveModel) distance(hist []valueCount, size int32) float64 {
	f := float64(size)
	switch s.models.TKind {
	case TOrdered:
		m := len(s.global)
		if m < 2 {
			return 0
		}
		diff := make([]float64, m)
		for v, q := range s.global {
			diff[s.rank[v]] -= q
		}
		for _, vc := range hist {
			diff[s.rank[vc.value]] += float64(vc.count) / f
		}
		sum, cum := 0.0, 0.0
		for _, d := range diff {
			cum += d
			sum += math.Abs(cum)
		}
		return sum / float64(m-1)
	case THierarchical:
		return s.tree.emd(hist, f, s.global)
	default:
		// ½ Σ|p−q| = ½ (Σ_{v∈P} (|p_v−q_v| − q_v) + 1) over the values P present.
		sum := 1.0
		for _, vc := range hist {
			q := s.global[vc.value]
			sum += math.Abs(float64(vc.count)/f-q) - q
		}
		return sum / 2
	}
}

// groundTree is the hierarchy of the sensitive attribute as a tree for the
// hierarchical earth mover's distance (Li et al. 2007): moving mass between
// two leaves costs the height of their lowest common ancestor over the
// tree's height.
type groundTree struct {
	height int
	// parent[l][node] is a level-l node's parent at level l+1; leaves are
	// the table's codes.
	parent [][]int32
	size   []int // nodes per level
}

func newGroundTree(h *Hierarchy, values []string) (*groundTree, error) {
	g, err := newGeneraliser(h, values)
	if err != nil {
		return nil, err
	}
	t := &groundTree{height: g.height - 1}
	for l := 0; l < g.height-1; l++ {
		t.parent = append(t.parent, g.up[l])
		t.size = append(t.size, len(g.dict[l]))
	}
	t.size = append(t.size, len(g.dict[g.height-1]))
	return t, nil
}

func (t *groundTree) emd(hist []valueCount, f float64, global []float64) float64 {
	if t.height == 0 {
		return 0
	}
	extra := make([]float64, t.size[0])
	for v, q := range global {
		extra[v] = -q
	}
	for _, vc := range hist {
		extra[vc.value] += float64(vc.count) / f
	}
	cost := 0.0
	for l := 0; l < t.height; l++ {
		pos := make([]float64, t.size[l+1])
		neg := make([]float64, t.size[l+1])
		for node, e := range extra {
			p := t.parent[l][node]
			if e > 0 {
				pos[p] += e
			} else {
				neg[p] -= e
			}
		}
		next := make([]float64, t.size[l+1])
		for p := range next {
			cost += float64(l+1) / float64(t.height) * math.Min(pos[p], neg[p])
			next[p] = pos[p] - neg[p]
		}
		extra = next
	}
	return cost
}
