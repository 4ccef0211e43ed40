package anon

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Table is a columnar table of strings: per column a dictionary of distinct
// values and one code per row.
type Table struct {
	Columns []string
	// Dict[c][code] is the value a code of column c stands for.
	Dict [][]string
	// Codes[c][row] is the code of row's value in column c.
	Codes [][]int32
	// Delimiter is the field separator the table was read with.
	Delimiter rune
}

// Rows returns the number of rows.
func (t *Table) Rows() int {
	if len(t.Codes) == 0 {
		return 0
	}
	return len(t.Codes[0])
}

// Column returns the index of a column, or -1.
func (t *Table) Column(name string) int {
	return slices.Index(t.Columns, name)
}

// Value returns the string in row r of column c.
func (t *Table) Value(c, r int) string { return t.Dict[c][t.Codes[c][r]] }

// ErrInput marks malformed input files: the message names the file, line
// and column, never a value.
var ErrInput = errors.New("anon: malformed input")

// DetectDelimiter picks the separator of a CSV from its first line: the
// candidate (`;`, `,`, tab, `|`) occurring most often outside quotes. ARX's
// own files use `;`.
func DetectDelimiter(firstLine string) rune {
	best, bestN := ',', 0
	for _, d := range []rune{';', ',', '\t', '|'} {
		n, quoted := 0, false
		for _, r := range firstLine {
			switch {
			case r == '"':
				quoted = !quoted
			case r == d && !quoted:
				n++
			}
		}
		if n > bestN {
			best, bestN = d, n
		}
	}
	return best
}

// ReadTable reads a CSV with a header row, detecting its delimiter.
func ReadTable(r io.Reader) (*Table, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	head, err := br.Peek(4096)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	first, _, _ := bytes.Cut(head, []byte("\n"))
	delim := DetectDelimiter(string(first))
	cr := csv.NewReader(br)
	cr.Comma = delim
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrInput, err)
	}
	t := &Table{Columns: slices.Clone(header), Delimiter: delim}
	for i := range t.Columns {
		t.Columns[i] = strings.TrimSpace(strings.TrimPrefix(t.Columns[i], "\ufeff"))
	}
	index := make([]map[string]int32, len(header))
	t.Dict = make([][]string, len(header))
	t.Codes = make([][]int32, len(header))
	for c := range header {
		index[c] = map[string]int32{}
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("%w: line %d: %v", ErrInput, pe.Line, pe.Err)
			}
			return nil, err
		}
		if len(rec) != len(header) {
			return nil, fmt.Errorf("%w: line %d has %d fields, the header %d", ErrInput, line, len(rec), len(header))
		}
		for c, v := range rec {
			code, ok := index[c][v]
			if !ok {
				code = int32(len(t.Dict[c]))
				v = strings.Clone(v)
				index[c][v] = code
				t.Dict[c] = append(t.Dict[c], v)
			}
			t.Codes[c] = append(t.Codes[c], code)
		}
	}
	return t, nil
}

// ReadTableFile reads a CSV file.
func ReadTableFile(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := ReadTable(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Hierarchy is a generalisation hierarchy in ARX's layout: one row per
// original value, then its coarser generalisations, the most general last.
type Hierarchy struct {
	Column string
	// Rows[i][0] is an original value and Rows[i][l] its value at level l.
	Rows [][]string
}

// Height is the number of levels, the original one included.
func (h *Hierarchy) Height() int {
	if len(h.Rows) == 0 {
		return 0
	}
	return len(h.Rows[0])
}

// ReadHierarchy reads one hierarchy file (delimiter detected).
func ReadHierarchy(column string, r io.Reader) (*Hierarchy, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(4096)
	first, _, _ := bytes.Cut(head, []byte("\n"))
	cr := csv.NewReader(br)
	cr.Comma = DetectDelimiter(string(first))
	cr.FieldsPerRecord = -1
	h := &Hierarchy{Column: column}
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: hierarchy of %s: line %d: %v", ErrInput, column, line, err)
		}
		if len(h.Rows) > 0 && len(rec) != h.Height() {
			return nil, fmt.Errorf("%w: hierarchy of %s: line %d has %d levels, line 1 has %d", ErrInput, column, line, len(rec), h.Height())
		}
		h.Rows = append(h.Rows, slices.Clone(rec))
	}
	if len(h.Rows) == 0 {
		return nil, fmt.Errorf("%w: hierarchy of %s is empty", ErrInput, column)
	}
	return h, nil
}

// ReadHierarchies reads every hierarchy_<column>.csv in dir, keyed by column.
func ReadHierarchies(dir string) (map[string]*Hierarchy, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "hierarchy_*.csv"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: %s holds no hierarchy_<column>.csv", ErrInput, dir)
	}
	out := map[string]*Hierarchy{}
	for _, p := range paths {
		col := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "hierarchy_"), ".csv")
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		h, err := ReadHierarchy(col, f)
		f.Close()
		if err != nil {
			return nil, err
		}
		out[col] = h
	}
	return out, nil
}

// Subset returns the given rows (in that order) of the given columns,
// sharing the dictionaries.
func (t *Table) Subset(rows, cols []int) *Table {
	out := &Table{Delimiter: t.Delimiter}
	for _, c := range cols {
		codes := make([]int32, len(rows))
		for i, r := range rows {
			codes[i] = t.Codes[c][r]
		}
		out.Columns = append(out.Columns, t.Columns[c])
		out.Dict = append(out.Dict, t.Dict[c])
		out.Codes = append(out.Codes, codes)
	}
	return out
}

// OnePerUnit picks, for every distinct value of column unit, the first of
// its rows in the given order (a random permutation picks one uniformly):
// bounding each unit to one row bounds its influence on what is computed
// from the result.
func (t *Table) OnePerUnit(unit int, order []int) []int {
	seen := make([]bool, len(t.Dict[unit]))
	var rows []int
	for _, r := range order {
		if u := t.Codes[unit][r]; !seen[u] {
			seen[u] = true
			rows = append(rows, r)
		}
	}
	return rows
}
