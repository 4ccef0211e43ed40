package sqlop

import (
	"context"
	"fmt"
	"strconv"

	"github.com/airlock-dev/airlock/internal/differencing"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// runSketches runs the plan's sketch queries: per governed scan, the
// differencing sketch of every group's rows, keyed like the answer's rows.
//
// Each sketch also counts the group's rows, which must equal the answer's
// count for the group: keys are matched as canonical text (groupKey), and
// if an engine ever splits one group's rows between two spellings of its
// key (as -0.0 and 0.0, one group, once did), the group fails closed
// rather than being compared with half its rows.
func (p *prepared) runSketches(ctx context.Context) ([]map[string]*groupSketch, error) {
	nk := p.plan.KeyColumns
	out := make([]map[string]*groupSketch, len(p.plan.Sketches))
	for i, sq := range p.plan.Sketches {
		res, err := p.eng.Query(ctx, sq.SQL, sq.Args...)
		if err != nil {
			return nil, engineRefusal(err)
		}
		cells := map[string]*groupSketch{}
		for _, r := range res.Rows {
			if len(r) != nk+6 {
				return nil, refusal.As(fmt.Errorf("sketch row of %d columns, want %d", len(r), nk+6))
			}
			key := groupKey(r[:nk])
			g := cells[key]
			if g == nil {
				g = &groupSketch{Sketch: differencing.Sketch{B: sq.Buckets}}
				cells[key] = g
			}
			g.rows += toInt(r[nk+5])
			if r[nk] == nil {
				// Rows an outer join extended with NULLs for the scan: none
				// of its rows, no unit.
				continue
			}
			g.Add(int(toInt(r[nk])), toInt(r[nk+1]), toInt(r[nk+2]), toInt(r[nk+3]), toInt(r[nk+4]))
		}
		out[i] = cells
	}
	return out, nil
}

// groupSketch is a group's sketch with the rows it counted.
type groupSketch struct {
	differencing.Sketch
	rows int64
}

// checkDifferencing compares the released cells with the agreement's
// history (differencing.History.Check) and, if they pass, has the audit
// index of the releasing entry attached to them once it is durable.
func (r *listResult) checkDifferencing(ctx context.Context, c *govern.Call) error {
	p := r.p
	if len(r.sketches) == 0 || p.ag == nil || p.svc.History == nil {
		return nil
	}
	rel := differencing.Release{Agreement: p.ag.ID, RequestID: c.Caller.RequestID, At: c.Now}
	for i, sq := range p.plan.Sketches {
		rule := p.ag.Rules[sq.Dataset]
		d := differencing.Cells{Dataset: sq.Dataset, MinUnits: sq.MinUnits, Scheme: sq.Scheme,
			MaxAnswers: workspace.DefaultDifferencingAnswers, Period: workspace.DefaultDifferencingPeriod}
		if df := rule.Differencing; df != nil {
			if df.Answers > 0 {
				d.MaxAnswers = df.Answers
			}
			if df.Period > 0 {
				d.Period = df.Period
			}
		}
		units, keys := p.plan.UnitColumns[sq.Unit], p.plan.KeyColumn
		cellOf := func(row []any) (*differencing.Sketch, error) {
			g := r.sketches[i][groupKey(row[keys:keys+p.plan.KeyColumns])]
			if g == nil || g.rows != toInt(row[p.plan.RowsColumn]) {
				// A group that met the threshold has rows, all of them in
				// its sketch.
				return nil, refusal.As(fmt.Errorf("the sketch of a group of %s does not cover its rows", sq.Dataset))
			}
			cell := g.Sketch
			cell.Units = toInt(row[units])
			return &cell, nil
		}
		released := map[*any]bool{}
		for _, row := range r.released {
			released[&row[0]] = true
		}
		for _, row := range r.met {
			cell, err := cellOf(row)
			if err != nil {
				return err
			}
			if released[&row[0]] {
				d.Cells = append(d.Cells, cell)
			} else {
				d.Withheld = append(d.Withheld, cell)
			}
		}
		rel.Datasets = append(rel.Datasets, d)
	}
	conflict, recorded, err := p.svc.History.Check(ctx, rel)
	if err != nil {
		return refusal.StoreUnavailable(err)
	}
	if conflict != nil {
		return differencingRefusal(c, conflict)
	}
	c.OnSealed(func(ctx context.Context, index uint64) {
		if err := p.svc.History.Released(ctx, recorded, index); err != nil {
			c.Log.Warn("differencing: the audit index of a released answer was not recorded", "err", err)
		}
	})
	return nil
}

// differencingRefusal names the rule and the earlier answer, never a
// value or how many units differ; the audit entry records which answer
// it combined with, so the owner sees what each refusal protected.
func differencingRefusal(c *govern.Call, k *differencing.Conflict) error {
	if c.Entry.Extra == nil {
		c.Entry.Extra = map[string]string{}
	}
	c.Entry.Extra["differencing_dataset"] = k.Dataset
	if k.Full {
		return refusal.New(refusal.Limit, "aggregation.differencing_history",
			"the differencing history of this agreement for %s holds its limit of %d answers; new answers are refused until older ones pass its period, or the owner raises differencing.answers", k.Dataset, k.MaxAnswers)
	}
	if k.Earlier == nil {
		return refusal.New(refusal.AnalysisRule, "aggregation.differencing",
			"two rows of this answer cover rows of %s that differ in fewer than %d privacy units, so their difference would isolate them; group more coarsely", k.Dataset, k.MinUnits)
	}
	earlier := "the earlier answer of request " + k.Earlier.RequestID
	if k.Earlier.Audited {
		earlier = "the earlier answer at audit index " + strconv.FormatUint(k.Earlier.AuditIndex, 10)
		c.Entry.Extra["differencing_with"] = strconv.FormatUint(k.Earlier.AuditIndex, 10)
	} else {
		c.Entry.Extra["differencing_with_request"] = k.Earlier.RequestID
	}
	return refusal.New(refusal.AnalysisRule, "aggregation.differencing",
		"beside %s, this answer would isolate fewer than %d privacy units of %s: a row of it covers rows that differ from a row of that answer in too few units; ask about the same groups, or groups that differ by more", earlier, k.MinUnits, k.Dataset)
}
