package anon

import (
	"encoding/binary"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
)

// Assign returns, per row, the key of its class under a transformation
// and whether the row is suppressed (its class violates a model).
func (p *Problem) Assign(levels []int) (keys []uint64, suppressed []bool, err error) {
	if err := p.checkLevels(levels); err != nil {
		return nil, nil, err
	}
	c := p.fromRows(levels)
	bad := map[uint64]bool{}
	for i := range c.len() {
		if p.violates(c, i) {
			bad[c.keys[i]] = true
		}
	}
	keys = make([]uint64, p.table.Rows())
	suppressed = make([]bool, p.table.Rows())
	for r := range keys {
		k := uint64(0)
		for a, col := range p.cols {
			k |= uint64(p.gens[a].gen[levels[a]][p.table.Codes[col][r]]) << p.shift[a]
		}
		keys[r], suppressed[r] = k, bad[k]
	}
	return keys, suppressed, nil
}

// Write writes the table under a transformation as CSV: quasi-identifiers
// generalised, suppressed rows' quasi-identifiers "*", the columns in
// drop left out, the rest as they are; rows in the given order (a
// permutation of the rows, so that a release's order says nothing of the
// source's), or the table's when order is nil.
func (p *Problem) Write(w io.Writer, levels []int, drop []string, order []int) (rows, suppressedRows int, err error) {
	_, suppressed, err := p.Assign(levels)
	if err != nil {
		return 0, 0, err
	}
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

// ClassSizesOf returns the sizes of the kept classes under a
// transformation (the input of a risk estimate of the release).
func (p *Problem) ClassSizesOf(levels []int) []int {
	c := p.fromRows(levels)
	var out []int
	for i := range c.len() {
		if !p.violates(c, i) {
			out = append(out, int(c.size[i]))
		}
	}
	return out
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
