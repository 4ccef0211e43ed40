package collab

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"

	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/psi"
)

// SideQuery is the SQL a side runs at its own node over its dataset
// (rel, quoted by the caller's engine route): the key, its own grouping
// columns and, on the payload side, the summed columns, filtered by its
// own conjuncts.
func (p *Plan) SideQuery(side int, rel string) (string, []any) {
	s := p.Sides[side]
	cols := []string{quote(s.Key)}
	for _, d := range p.Dims {
		if d.Side == side {
			cols = append(cols, quote(d.Column))
		}
	}
	if side == p.PayloadSide {
		for _, v := range p.Sums {
			cols = append(cols, quote(v))
		}
	}
	sql := "SELECT " + strings.Join(cols, ", ") + " FROM " + rel + " WHERE " + quote(s.Key) + " IS NOT NULL"
	if s.Filter != "" {
		sql += " AND (" + s.Filter + ")"
	}
	return sql, s.Args
}

func quote(c string) string { return `"` + strings.ReplaceAll(c, `"`, `""`) + `"` }

// Items turns a side's rows (as SideQuery selects them) into the items of
// the private join: one per identifier, or on the payload side one per
// identifier and value combination of the other side's dimensions.
func (p *Plan) Items(side int, rows [][]any) ([]psi.Item, error) {
	own := []int{} // indexes into p.Dims of this side's dimensions
	for i, d := range p.Dims {
		if d.Side == side {
			own = append(own, i)
		}
	}
	type unit struct {
		groups [][]int              // distinct own-dimension tuples
		sums   map[string][]float64 // per tuple
	}
	units := map[string]*unit{}
	var order []string
	nd := len(own)
	for _, r := range rows {
		key := engine.Text(r[0])
		u := units[key]
		if u == nil {
			u = &unit{sums: map[string][]float64{}}
			units[key] = u
			order = append(order, key)
		}
		tuple := make([]int, nd)
		for k, di := range own {
			tuple[k] = domainIndex(p.Dims[di].Domain, engine.Text(r[1+k]))
		}
		tk := fmt.Sprint(tuple)
		sums, seen := u.sums[tk]
		if !seen {
			u.groups = append(u.groups, tuple)
			sums = make([]float64, len(p.Sums))
		}
		if side == p.PayloadSide {
			for j := range p.Sums {
				// NULL adds nothing; anything else must be a number.
				v, ok := engine.Number(r[1+nd+j])
				if !ok && r[1+nd+j] != nil {
					return nil, fmt.Errorf("value column %s: not a number", p.Sums[j])
				}
				sums[j] += v
			}
		}
		u.sums[tk] = sums
	}
	var items []psi.Item
	for _, key := range order {
		u := units[key]
		// bounded contribution: one group per identifier and side
		g := u.groups[0]
		if len(u.groups) > 1 {
			n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(u.groups))))
			g = u.groups[n.Int64()]
		}
		full := make([]int, len(p.Dims))
		for k, di := range own {
			full[di] = g[k]
		}
		if side != p.PayloadSide {
			items = append(items, psi.Item{Key: p.matchKey(key, full)})
			continue
		}
		sums := u.sums[fmt.Sprint(g)]
		clamped := make([]int64, len(sums))
		for j, v := range sums {
			b := p.Sides[side].Table.Values[p.Sums[j]]
			clamped[j] = min(max(int64(math.Round(v)), b.Min), b.Max)
		}
		p.expand(full, 0, func(full []int) {
			cells := make([]int64, p.Width())
			base := p.group(full) * (1 + len(p.Sums))
			cells[base] = 1
			copy(cells[base+1:], clamped)
			items = append(items, psi.Item{Key: p.matchKey(key, full), Cells: cells})
		})
	}
	return items, nil
}

// expand calls f for every value combination of the non-payload side's
// dimensions, the payload side's own values fixed.
func (p *Plan) expand(full []int, i int, f func([]int)) {
	if i == len(p.Dims) {
		f(slices.Clone(full))
		return
	}
	if p.Dims[i].Side == p.PayloadSide {
		p.expand(full, i+1, f)
		return
	}
	for v := range len(p.Dims[i].Domain) + 1 {
		full[i] = v
		p.expand(full, i+1, f)
	}
}

// matchKey is the identifier with the non-payload side's dimension
// values: both sides build it alike, so an item matches only the payload
// side's expansion for the partner's own values.
func (p *Plan) matchKey(id string, full []int) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(id)))
	b = append(b, id...)
	for i, d := range p.Dims {
		if d.Side != p.PayloadSide {
			b = binary.BigEndian.AppendUint16(b, uint16(full[i]))
		}
	}
	return b
}

// group is the mixed-radix index of a dimension tuple.
func (p *Plan) group(full []int) int {
	g := 0
	for i, d := range p.Dims {
		g = g*(len(d.Domain)+1) + full[i]
	}
	return g
}

func domainIndex(domain []string, v string) int {
	if i := slices.Index(domain, v); i >= 0 {
		return i
	}
	return len(domain)
}

// Noise is one party's noise for a query, calibrated to its own ρ: the
// ρ is split evenly over the count, each sum and the two sizes the other
// party sees (its padded set and the dummy matches).
type Noise struct {
	Count, Size float64   // σ² of count cells and of the padding counts
	Sums        []float64 // σ² of each sum's cells
}

// NoiseFor calibrates a party's noise to ρ. One identifier moves one
// group's count by 1 and its sums by at most their bounds, whichever side
// it is removed from.
func (p *Plan) NoiseFor(rho float64) Noise {
	parts := float64(3 + len(p.Sums))
	part := rho / parts
	n := Noise{Count: dp.GaussianSigma2(1, part), Size: dp.GaussianSigma2(1, part)}
	for _, v := range p.Sums {
		b := p.Sides[p.PayloadSide].Table.Values[v]
		d := float64(max(abs(b.Min), abs(b.Max), 1))
		n.Sums = append(n.Sums, dp.GaussianSigma2(d, part))
	}
	return n
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// Draw samples the party's noise for every cell.
func (p *Plan) Draw(n Noise, s *dp.Sampler) []int64 {
	out := make([]int64, p.Width())
	for c := range out {
		sigma2 := n.Count
		if j := c % (1 + len(p.Sums)); j > 0 {
			sigma2 = n.Sums[j-1]
		}
		num, den := dp.RatUp(sigma2)
		out[c] = s.DiscreteGaussian(num, den).Int64()
	}
	return out
}

// Row is one released result row.
type Row []any

// Rows turns decrypted noisy cells into result rows: a group is released
// only if its noisy count reaches the threshold (a noisy threshold, so
// which groups appear depends on noise, not on exact counts). Counts
// below zero are shown as zero; avg is sum / count of the noisy values.
func (p *Plan) Rows(cells []int64, threshold int) ([]string, []Row) {
	var cols []string
	for _, o := range p.Outputs {
		cols = append(cols, o.Name)
	}
	var rows []Row
	stride := 1 + len(p.Sums)
	for g := range p.Groups() {
		count := cells[g*stride]
		if count < int64(threshold) {
			continue
		}
		tuple := p.tuple(g)
		row := make(Row, len(p.Outputs))
		for i, o := range p.Outputs {
			switch o.Kind {
			case "dim":
				d := p.Dims[o.Dim]
				if tuple[o.Dim] == len(d.Domain) {
					row[i] = Other
				} else {
					row[i] = d.Domain[tuple[o.Dim]]
				}
			case "count":
				row[i] = count
			case "sum":
				row[i] = cells[g*stride+1+o.Sum]
			case "avg":
				row[i] = float64(cells[g*stride+1+o.Sum]) / float64(count)
			}
		}
		rows = append(rows, row)
	}
	return cols, rows
}

func (p *Plan) tuple(g int) []int {
	t := make([]int, len(p.Dims))
	for i := len(p.Dims) - 1; i >= 0; i-- {
		r := len(p.Dims[i].Domain) + 1
		t[i] = g % r
		g /= r
	}
	return t
}
