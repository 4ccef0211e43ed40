package anon

import (
	"fmt"
	"slices"
	"strings"
)

// BuildHierarchy builds a hierarchy over a column's values by a named rule:
//   - "prefix": each level drops one more trailing character (12345 → 1234* → … → *);
//   - "date": YYYY-MM-DD → YYYY-MM → YYYY → decade (199*) → *;
//   - "suppress": the value, then *.
func BuildHierarchy(rule, column string, values []string) (*Hierarchy, error) {
	h := &Hierarchy{Column: column}
	vals := slices.Clone(values)
	slices.Sort(vals)
	switch rule {
	case "suppress":
		for _, v := range vals {
			h.Rows = append(h.Rows, []string{v, "*"})
		}
	case "prefix":
		width := 0
		for _, v := range vals {
			width = max(width, len([]rune(v)))
		}
		for _, v := range vals {
			r := []rune(v)
			row := []string{v}
			for cut := 1; cut < width; cut++ {
				keep := max(len(r)-cut, 0)
				row = append(row, string(r[:keep])+strings.Repeat("*", len(r)-keep))
			}
			row = append(row, "*")
			h.Rows = append(h.Rows, row)
		}
	case "date":
		for _, v := range vals {
			if len(v) < 10 || v[4] != '-' || v[7] != '-' {
				return nil, fmt.Errorf("%w: column %s is not YYYY-MM-DD dates, so the date rule cannot generalise it", ErrInput, column)
			}
			h.Rows = append(h.Rows, []string{v, v[:7], v[:4], v[:3] + "*", "*"})
		}
	default:
		return nil, fmt.Errorf("anon: unknown generalisation rule %q (prefix, date, suppress or a hierarchy file)", rule)
	}
	return h, nil
}
