package fedjob

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/fl"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/secagg"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// columns are what the job reads from a member's dataset.
func (j *Job) columns() []string {
	if j.Train != nil {
		return j.Train.Columns()
	}
	var out []string
	for _, d := range j.Sum.Dimensions {
		out = append(out, d.Column)
	}
	for _, m := range j.Sum.Measures {
		out = append(out, m.Column)
	}
	return out
}

var numericTypes = []string{"integer", "double", "decimal"}

// checkColumns refuses a job whose columns the dataset lacks, or whose
// numeric columns are not numeric, before any row is read.
func (j *Job) checkColumns(m *workspace.Manifest) error {
	types := map[string]string{}
	for _, c := range m.Columns {
		types[c.Name] = c.Type
	}
	need := map[string]bool{}
	if j.Train != nil {
		for _, n := range j.Train.Numeric {
			need[n.Name] = true
		}
		need[j.Train.Label] = j.Train.Positive == ""
	} else {
		for _, ms := range j.Sum.Measures {
			need[ms.Column] = true
		}
	}
	for _, c := range j.columns() {
		t, ok := types[c]
		if !ok {
			return refusal.New(refusal.AnalysisRule, "job.column", "dataset %s has no column %s", m.Name, c)
		}
		if need[c] && !slices.Contains(numericTypes, t) {
			return refusal.New(refusal.AnalysisRule, "job.column", "column %s of %s is %s, the job needs a number", c, m.Name, t)
		}
	}
	return nil
}

// checkFilter refuses a row filter that is not one predicate over the
// dataset's columns.
func checkFilter(filter string, m *workspace.Manifest) error {
	if filter == "" {
		return nil
	}
	if _, err := query.ParsePredicate(filter, m); err != nil {
		return refusal.New(refusal.Internal, "job.row_filter", "the owner's row filter for %s is not a predicate over its columns", m.Name)
	}
	return nil
}

// read runs the job's one query over this member's rows, the owner's
// filter applied.
func (j *Job) read(ctx context.Context, eng engine.Engine, rel, filter string) ([][]any, error) {
	cols := j.columns()
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = query.QuoteIdent(c)
	}
	sql := "SELECT " + strings.Join(quoted, ", ") + " FROM " + rel
	if filter != "" {
		sql += " WHERE (" + filter + ")"
	}
	out, err := eng.Query(ctx, sql)
	if err != nil {
		return nil, refusal.New(refusal.Engine, "engine", "the engine could not read the job's rows").WithCause(err)
	}
	return out.Rows, nil
}

// cells is the number of cells of a sum (per measure).
func (s *Sum) cells() int {
	n := 1
	for _, d := range s.Dimensions {
		n *= len(d.Domain)
	}
	return n
}

// Length is a sum's vector length: every cell's measures.
func (s *Sum) Length() int { return s.cells() * len(s.Measures) }

// sensitivity is how far one row moves a measure's cell.
func (m Measure) sensitivity() float64 {
	return math.Max(1, math.Max(math.Abs(float64(m.Bounds[0])), math.Abs(float64(m.Bounds[1]))))
}

// Sigma2 is the total noise variance of each measure's cells: the run's
// ρ = ε²/2 split evenly over the measures (a row is in one cell).
func (s *Sum) Sigma2() []float64 {
	rho := dp.RhoOfPureEps(s.Epsilon) / float64(len(s.Measures))
	out := make([]float64, len(s.Measures))
	for i, m := range s.Measures {
		out[i] = dp.GaussianSigma2(m.sensitivity(), rho)
	}
	return out
}

// cellLimit is the bound on one member's cell of measure k: n members'
// sums and the noise of n shares (to 10σ) stay below 2^30.
func (s *Sum) cellLimit(k, n, honest int) int64 {
	share := math.Max(s.Sigma2()[k]/float64(honest), 4)
	return int64(float64(1<<30)/float64(n) - 10*math.Sqrt(share*float64(n))/float64(n))
}

// vector sums a member's rows into the cells, each row's values clamped
// to the bounds, rows outside the domains or with a missing value
// skipped; each cell is clamped so that n members' sums plus noise stay
// inside the ring (a bound, never a refusal: a refusal would tell whether
// some cell is large). The noise shares are sized for the honest
// survivors, t − k.
func (s *Sum) vector(rows [][]any, n, honest int, noise *dp.Sampler) []uint32 {
	idx := make([]map[string]int, len(s.Dimensions))
	for i, d := range s.Dimensions {
		idx[i] = map[string]int{}
		for k, v := range d.Domain {
			idx[i][v] = k
		}
	}
	nm := len(s.Measures)
	sums := make([]int64, s.Length())
rows:
	for _, row := range rows {
		cell := 0
		for i := range s.Dimensions {
			k, ok := idx[i][engine.Text(row[i])]
			if !ok {
				continue rows
			}
			cell = cell*len(s.Dimensions[i].Domain) + k
		}
		for k, m := range s.Measures {
			v, ok := engine.Number(row[len(s.Dimensions)+k])
			if !ok || math.IsNaN(v) {
				continue
			}
			// Clamp as a float first: a huge or infinite value converts to
			// an arbitrary int64.
			sums[cell*nm+k] += int64(math.Round(math.Min(math.Max(v, float64(m.Bounds[0])), float64(m.Bounds[1]))))
		}
	}
	sigma2 := s.Sigma2()
	out := make([]uint32, len(sums))
	for k := range nm {
		limit := s.cellLimit(k, n, honest)
		shares := secagg.NoiseShare(noise, sigma2[k], honest, s.cells())
		for c := range s.cells() {
			out[c*nm+k] = uint32(min(max(sums[c*nm+k], -limit), limit) + shares[c])
		}
	}
	return out
}

// Table is a released sum.
type Table struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	Notes   []string `json:"notes"`
}

// table reads the unmasked sum as one row per cell.
func (s *Sum) table(sum []uint32, survivors, honest int) *Table {
	tb := &Table{}
	for _, d := range s.Dimensions {
		tb.Columns = append(tb.Columns, d.Column)
	}
	for _, m := range s.Measures {
		tb.Columns = append(tb.Columns, "sum_"+m.Column)
	}
	nm := len(s.Measures)
	for c := range s.cells() {
		row := make([]any, 0, len(tb.Columns))
		rest := c
		vals := make([]any, len(s.Dimensions))
		for i := len(s.Dimensions) - 1; i >= 0; i-- {
			dom := s.Dimensions[i].Domain
			vals[i] = dom[rest%len(dom)]
			rest /= len(dom)
		}
		row = append(row, vals...)
		for k := range nm {
			row = append(row, int64(int32(sum[c*nm+k])))
		}
		tb.Rows = append(tb.Rows, row)
	}
	sigma2 := s.Sigma2()
	for k, m := range s.Measures {
		v := math.Max(sigma2[k]/float64(honest), 4) * float64(survivors) // NoiseShare's floor
		tb.Notes = append(tb.Notes, fmt.Sprintf("sum_%s: each member's rows clamped to [%d, %d]; discrete Gaussian noise of σ = %.1f from %d members' shares (95%% within ±%.0f)",
			m.Column, m.Bounds[0], m.Bounds[1], math.Sqrt(v), survivors, dp.DiscreteGaussianCI95(v)))
	}
	return tb
}

// trainData encodes every one of a member's rows with the job's schema
// (a missing or malformed value encodes as its column's mean).
func (t *Train) trainData(rows [][]any) fl.Data {
	s := t.Schema()
	cols := t.Columns()
	var d fl.Data
	rec := map[string]string{}
	for _, row := range rows {
		for i, c := range cols {
			rec[c] = engine.Text(row[i])
		}
		x, y := s.Encode(rec)
		d.X, d.Y = append(d.X, x), append(d.Y, y)
	}
	return d
}
