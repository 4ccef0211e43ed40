package anon

import (
	"encoding/binary"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
)

// Applied is a table under one transformation: per row, the key of its
// class and whether it is suppressed (its class violates a model), and
// the sizes of the kept classes. Computed once, it serves writing the
// release, its risk estimate and the linkage check.
type Applied struct {
	p      *Problem
	levels []int
	// Keys and Suppressed are per row of the table.
	Keys       []uint64
	Suppressed []bool
	// Sizes are the kept classes' sizes, in rows.
	Sizes []int
}

// Apply computes a transformation over the rows.
func (p *Problem) Apply(levels []int) (*Applied, error) {
	if err := p.checkLevels(levels); err != nil {
		return nil, err
	}
	c := p.fromRows(levels)
	out := &Applied{p: p, levels: slices.Clone(levels), Keys: make([]uint64, p.table.Rows()), Suppressed: make([]bool, p.table.Rows())}
	bad := map[uint64]bool{}
	for i := range c.len() {
		if p.violates(c, i) {
			bad[c.keys[i]] = true
		} else {
			out.Sizes = append(out.Sizes, int(c.size[i]))
		}
	}
	for r := range out.Keys {
		k := p.rowKey(levels, r)
		out.Keys[r], out.Suppressed[r] = k, bad[k]
	}
	return out, nil
}

// Write writes the table under the transformation as CSV: quasi-identifiers
// generalised, suppressed rows' quasi-identifiers "*", the columns in
// drop left out, the rest as they are; rows in the given order (a
// permutation of the rows, so that a release's order says nothing of the
// source's), or the table's when order is nil.
func (ap *Applied) Write(w io.Writer, drop []string, order []int) (rows, suppressedRows int, err error) {
	p, levels, suppressed := ap.p, ap.levels, ap.Suppressed
	t := p.table
	qiOf := map[int]int{}
	for a, c := range p.cols {
		qiOf[c] = a
	}
	var keep []int
	var header []string
	for c, name := range t.Columns {
		if !slices.Contains(drop, name) {
			keep = append(keep, c)
			header = append(header, name)
		}
	}
	cw := csv.NewWriter(w)
	cw.Comma = t.Delimiter
	if cw.Comma == 0 {
		cw.Comma = ','
	}
	if err := cw.Write(header); err != nil {
		return 0, 0, err
	}
	rec := make([]string, len(keep))
	for i := range t.Rows() {
		r := i
		if order != nil {
			r = order[i]
		}
		for i, c := range keep {
			a, isQI := qiOf[c]
			switch {
			case isQI && suppressed[r]:
				rec[i] = "*"
			case isQI:
				g := p.gens[a]
				rec[i] = g.dict[levels[a]][g.gen[levels[a]][t.Codes[c][r]]]
			default:
				rec[i] = t.Value(c, r)
			}
		}
		if err := cw.Write(rec); err != nil {
			return 0, 0, err
		}
		if suppressed[r] {
			suppressedRows++
		}
	}
	cw.Flush()
	return t.Rows(), suppressedRows, cw.Error()
}

// WriteTable writes a table as CSV.
func WriteTable(w io.Writer, t *Table) error {
	cw := csv.NewWriter(w)
	cw.Comma = t.Delimiter
	if cw.Comma == 0 {
		cw.Comma = ','
	}
	if err := cw.Write(t.Columns); err != nil {
		return err
	}
	rec := make([]string, len(t.Columns))
	for r := range t.Rows() {
		for c := range t.Columns {
			rec[c] = t.Value(c, r)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ClassCounts groups a table's rows by the values of the given columns and
// counts each class, keyed by the values (each length-prefixed): the way
// to match a sample's classes with a population's.
func ClassCounts(t *Table, columns []string) (map[string]int, error) {
	cols := make([]int, len(columns))
	for i, c := range columns {
		if cols[i] = t.Column(c); cols[i] < 0 {
			return nil, fmt.Errorf("anon: no column %s", c)
		}
	}
	out := map[string]int{}
	var b []byte
	for r := range t.Rows() {
		b = b[:0]
		for _, c := range cols {
			// Length-prefixed, so no value can run into the next.
			v := t.Value(c, r)
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
		out[string(b)]++
	}
	return out, nil
}
