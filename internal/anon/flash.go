package anon

import "slices"

// The state of a transformation in searchTagged.
const (
	unknown int8 = iota
	anonymous
	notAnonymous
)

// searchTagged classifies the whole lattice while checking few
// transformations, in the manner of ARX's Flash (Kohlmayer et al. 2012):
// from each unclassified transformation, bottom-up, it builds a path of
// unclassified successors towards the top and binary-searches it; a
// transformation found anonymous makes all its generalisations anonymous
// and one found wanting makes all its specialisations wanting (predictive
// tagging, valid because anonymity is monotone here). The metric depends
// on the transformation alone, so the optimum is the anonymous one of
// least loss, computed without classes; only it is evaluated in full.
// Checked transformations are computed from the checked one below them
// with the fewest classes, or from the identity.
func (p *Problem) searchTagged() (Result, error) {
	size := p.Size()
	state := make([]int8, size)
	var res Result
	checked := map[int]*classes{0: p.base}
	var tab table
	check := func(levels []int) bool {
		var from *classes
		for i, c := range checked {
			if below(p.levelsOf(i), levels) && (from == nil || c.len() < from.len()) {
				from = c
			}
		}
		c := p.rollUpTo(from, levels, &tab)
		res.Evaluated++
		ok := p.evaluate(c).Anonymous
		if !ok {
			// Its classes may serve the checks of its generalisations.
			checked[p.index(levels)] = c
		}
		return ok
	}
	for sum := 0; sum <= p.maxSum(); sum++ {
		p.eachAtLevel(sum, func(start []int) {
			for state[p.index(start)] == unknown {
				path := p.pathUp(slices.Clone(start), state)
				lo, hi := 0, len(path)-1
				for lo <= hi {
					mid := (lo + hi) / 2
					if state[p.index(path[mid])] != unknown {
						break
					}
					if check(path[mid]) {
						p.tag(path[mid], state, anonymous)
						hi = mid - 1
					} else {
						p.tag(path[mid], state, notAnonymous)
						lo = mid + 1
					}
				}
			}
		})
	}
	found := false
	levels := make([]int, len(p.heights))
	for i := range size {
		if state[i] == anonymous {
			res.Anonymous++
			node := Node{Levels: slices.Clone(levels), Loss: p.nueOf(levels)}
			if !found || better(node, res.Optimum) {
				res.Optimum, found = node, true
			}
		}
		p.increment(levels)
	}
	if !found {
		return res, ErrNoSolution
	}
	res.Optimum = p.evaluate(p.rollUpTo(p.base, res.Optimum.Levels, &tab))
	return res, nil
}

// pathUp is a greedy path from start through unclassified successors (the
// first attribute that can rise) until none is left.
func (p *Problem) pathUp(start []int, state []int8) [][]int {
	path := [][]int{slices.Clone(start)}
	cur := start
	for {
		next := -1
		for a, l := range cur {
			if l+1 < p.heights[a] {
				cur[a]++
				if state[p.index(cur)] == unknown {
					next = a
				}
				cur[a]--
				if next >= 0 {
					break
				}
			}
		}
		if next < 0 {
			return path
		}
		cur[next]++
		path = append(path, slices.Clone(cur))
	}
}

// tag marks levels and, transitively, its generalisations (anonymous) or
// specialisations (not anonymous), stopping where they are marked already.
func (p *Problem) tag(levels []int, state []int8, s int8) {
	i := p.index(levels)
	if state[i] == s {
		return
	}
	state[i] = s
	for a := range levels {
		if s == anonymous && levels[a]+1 < p.heights[a] {
			levels[a]++
			p.tag(levels, state, s)
			levels[a]--
		}
		if s == notAnonymous && levels[a] > 0 {
			levels[a]--
			p.tag(levels, state, s)
			levels[a]++
		}
	}
}

// below reports whether a is a specialisation of (or equal to) b.
func below(a, b []int) bool {
	for i := range a {
		if a[i] > b[i] {
			return false
		}
	}
	return true
}

func (p *Problem) levelsOf(i int) []int {
	levels := make([]int, len(p.heights))
	for a := len(levels) - 1; a >= 0; a-- {
		levels[a] = i % p.heights[a]
		i /= p.heights[a]
	}
	return levels
}

func (p *Problem) maxSum() int {
	s := 0
	for _, h := range p.heights {
		s += h - 1
	}
	return s
}

// rollUpTo computes the classes of a generalisation of from's
// transformation in one pass, raising any number of attributes.
func (p *Problem) rollUpTo(from *classes, levels []int, tab *table) *classes {
	d := len(p.cols)
	maps := make([][]int32, d)
	for a := range d {
		if levels[a] == from.levels[a] {
			continue
		}
		g := p.gens[a]
		m := make([]int32, len(g.dict[from.levels[a]]))
		for c := range m {
			v := int32(c)
			for l := from.levels[a]; l < levels[a]; l++ {
				v = g.up[l][v]
			}
			m[c] = v
		}
		maps[a] = m
	}
	return p.regroup(from, slices.Clone(levels), func(k uint64) uint64 {
		for a, m := range maps {
			if m != nil {
				k = k&^(p.mask[a]<<p.shift[a]) | uint64(m[k>>p.shift[a]&p.mask[a]])<<p.shift[a]
			}
		}
		return k
	}, tab)
}
