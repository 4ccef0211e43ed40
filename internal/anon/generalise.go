package anon

import "fmt"

// generaliser is a hierarchy compiled against one column's dictionary.
type generaliser struct {
	height int
	// dict[l] are the distinct values at level l; dict[0] is the column's.
	dict [][]string
	// gen[l][code] is an original code's code at level l.
	gen [][]int32
	// up[l][code] is a level-l code's code at level l+1.
	up [][]int32
	// leaves[l][code] is the number of original values (of the whole
	// hierarchy, not only those present) under a level-l code.
	leaves [][]int
	// domain is the number of original values in the hierarchy.
	domain int
}

// newGeneraliser compiles h for a column whose codes stand for values. Every
// value must have a row in h, and every level must map functionally onto
// the next (a tree), or roll-up would be wrong.
func newGeneraliser(h *Hierarchy, values []string) (*generaliser, error) {
	g := &generaliser{height: h.Height(), domain: len(h.Rows)}
	if g.height == 0 {
		return nil, fmt.Errorf("%w: hierarchy of %s is empty", ErrInput, h.Column)
	}
	rowOf := make(map[string]int, len(h.Rows))
	for i, r := range h.Rows {
		if _, dup := rowOf[r[0]]; dup {
			return nil, fmt.Errorf("%w: hierarchy of %s: line %d repeats an original value of an earlier line", ErrInput, h.Column, i+1)
		}
		rowOf[r[0]] = i
	}
	// Level codes over the hierarchy's rows; level 0 uses the column's codes
	// for present values and appends absent ones.
	levelCode := make([]map[string]int32, g.height)
	g.dict = make([][]string, g.height)
	for l := range levelCode {
		levelCode[l] = map[string]int32{}
	}
	for c, v := range values {
		if _, ok := rowOf[v]; !ok {
			return nil, fmt.Errorf("%w: column %s has a value (code %d) that its hierarchy does not list", ErrInput, h.Column, c)
		}
		levelCode[0][v] = int32(c)
		g.dict[0] = append(g.dict[0], v)
	}
	rowCodes := make([][]int32, len(h.Rows))
	for i, r := range h.Rows {
		rowCodes[i] = make([]int32, g.height)
		for l, v := range r {
			c, ok := levelCode[l][v]
			if !ok {
				c = int32(len(g.dict[l]))
				levelCode[l][v] = c
				g.dict[l] = append(g.dict[l], v)
			}
			rowCodes[i][l] = c
		}
	}
	g.up = make([][]int32, g.height-1)
	for l := 0; l < g.height-1; l++ {
		g.up[l] = make([]int32, len(g.dict[l]))
		for i := range g.up[l] {
			g.up[l][i] = -1
		}
		for i, rc := range rowCodes {
			if p := g.up[l][rc[l]]; p >= 0 && p != rc[l+1] {
				return nil, fmt.Errorf("%w: hierarchy of %s: line %d gives a level-%d value a second parent at level %d", ErrInput, h.Column, i+1, l, l+1)
			}
			g.up[l][rc[l]] = rc[l+1]
		}
	}
	g.gen = make([][]int32, g.height)
	g.leaves = make([][]int, g.height)
	for l := 0; l < g.height; l++ {
		g.gen[l] = make([]int32, len(values))
		for c, v := range values {
			g.gen[l][c] = rowCodes[rowOf[v]][l]
		}
		g.leaves[l] = make([]int, len(g.dict[l]))
		for _, rc := range rowCodes {
			g.leaves[l][rc[l]]++
		}
	}
	return g, nil
}
