package sqlop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// DPColumn reports how one released column was protected.
type DPColumn struct {
	Column    string  `json:"column"`
	Mechanism string  `json:"mechanism"`
	Sigma     float64 `json:"noise_sigma,omitempty"` // per contributing statistic, in the column's units
	CI95      float64 `json:"ci95_half_width,omitempty"`
	Note      string  `json:"note,omitempty"`
}

// DPReport is the privacy accounting of one DP answer.
type DPReport struct {
	Epsilon       float64    `json:"epsilon"`
	Delta         float64    `json:"delta"`
	Rho           float64    `json:"rho"`
	Columns       []DPColumn `json:"columns"`
	Threshold     float64    `json:"selection_threshold,omitempty"`
	Cached        bool       `json:"cached"`
	BudgetEpsilon float64    `json:"budget_epsilon"`
	SpentEpsilon  float64    `json:"spent_epsilon"`
	RemainingEps  float64    `json:"remaining_epsilon"`
	BudgetRefresh time.Time  `json:"budget_refresh"`
	ContribBounds string     `json:"contribution_bounds"`
	// BoundingBias says how contribution bounding moves answers; the
	// intervals above cover the noise only.
	BoundingBias string `json:"bounding_bias"`
}

// quantileHistograms runs each quantile pass: per group key, the bounded
// bin counts.
func quantileHistograms(ctx context.Context, eng engine.Engine, d *query.DPPlan) ([]map[string][]int64, error) {
	var out []map[string][]int64
	nk := len(d.GroupBy)
	for i, sql := range d.QuantileSQL {
		res, err := eng.Query(ctx, sql, d.QuantileArgs[i]...)
		if err != nil {
			return nil, engineRefusal(err)
		}
		h := map[string][]int64{}
		for _, row := range res.Rows {
			k := groupKey(row[:nk])
			if h[k] == nil {
				h[k] = make([]int64, query.QuantileBins)
			}
			bin := toBig(row[nk]).Int64()
			if bin >= 0 && bin < query.QuantileBins {
				h[k][bin] += toBig(row[nk+1]).Int64()
			}
		}
		out = append(out, h)
	}
	return out, nil
}

// costOf is the cost of a DP plan under its rule.
func costOf(r workspace.Rule, d *query.DPPlan) dp.Cost {
	return dp.CostOf(dp.MechanismOf(r.Noise), r.EpsilonPerQuery, r.DeltaPerQuery, len(d.Stats)+len(d.Quantiles), needsSelection(d))
}

// noiseOf calibrates a DP plan's statistics.
func noiseOf(c dp.Cost, d *query.DPPlan) dp.Noise {
	linf := make([]float64, len(d.Stats))
	for i, st := range d.Stats {
		linf[i] = st.Linf
	}
	return dp.NewNoise(c, d.L0, linf)
}

// noiseSpec is the noise of one query's statistics and the ε of each
// group's quantile mechanism (one unit reaches at most L0 groups, so the
// statistic's ε is divided by L0).
type noiseSpec struct {
	dp.Noise
	quantileEps float64
}

// dpPrepared is a planned DP query: its cost, noise and report are known
// before anything runs.
type dpPrepared struct {
	*prepared
	d      *query.DPPlan
	rule   workspace.Rule
	cost   dp.Cost
	key    store.BudgetKey
	report *DPReport
	noise  noiseSpec
	tau    float64
	pstart time.Time
}

func (g *Service) prepareDP(ctx context.Context, p *prepared) (govern.Prepared, error) {
	ag, d := p.ag, p.plan.DP
	rule := ag.Rules[d.Dataset]
	if ag.Budget == nil {
		return nil, refusal.New(refusal.Forbidden, "dp.budget", "agreement %s has a DP rule but no budget", ag.ID)
	}
	cost := costOf(rule, d)
	pstart := dp.PeriodStart(p.c.Now, ag.Budget.Period)
	key := store.BudgetKey{Agreement: ag.ID, PeriodStart: pstart}
	if ag.Budget.PerPrincipal {
		key.Principal = p.c.Caller.Principal
	}
	unit := p.c.Snap.WS.Datasets[d.Dataset].PrivacyUnit
	report := &DPReport{Epsilon: cost.Epsilon, Delta: cost.Delta, Rho: cost.Rho, BudgetEpsilon: ag.Budget.Epsilon,
		BudgetRefresh: pstart.Add(dp.Period(ag.Budget.Period)),
		ContribBounds: fmt.Sprintf("at most %d group(s) per %s, at most %d row(s) per group", d.L0, unit, d.Linf),
		BoundingBias: fmt.Sprintf("the 95%% intervals cover the noise only; bounding can only lower counts (a %s beyond %d group(s) or %d row(s) per group is not fully counted), "+
			"pulls sums toward zero where values fall outside the column bounds, and weighs averages by each %s's mean over at most %d row(s)", unit, d.L0, d.Linf, unit, d.Linf)}
	noise := noiseSpec{Noise: noiseOf(cost, d), quantileEps: cost.QuantileEpsilon() / float64(d.L0)}
	var tau float64
	if needsSelection(d) {
		tau = noise.Threshold(d.L0, cost.SelectionDelta)
		report.Threshold = tau
	}
	report.Columns = describeColumns(d, noise)
	spent, _ := g.Store.Budget(ctx, key)
	report.SpentEpsilon = dp.Spent(spent.Rho, ag.Budget.Delta)
	report.RemainingEps = math.Max(0, ag.Budget.Epsilon-report.SpentEpsilon)
	return &dpPrepared{prepared: p, d: d, rule: rule, cost: cost, key: key, report: report, noise: noise, tau: tau, pstart: pstart}, nil
}

func (p *dpPrepared) Preview(ctx context.Context, c *govern.Call) (any, error) {
	return &Response{Access: string(p.plan.Kind), Agreement: p.ag.ID, Columns: p.plan.Columns, Rows: [][]any{}, DP: p.report, Plan: p.planInfo()}, nil
}

// CacheKey: the answer is a function of the agreement, the budget holder,
// the rule and the bound statistics (see dpFingerprint), within a period.
func (p *dpPrepared) CacheKey() govern.CacheKey {
	return govern.CacheKey{Agreement: p.ag.ID, Fingerprint: dpFingerprint(p.ag, p.key, p.canonical), Period: p.pstart}
}

// Encode and Decode are the stored form of a DP answer; a decoded answer
// shares nothing with the one encoded.
func (p *dpPrepared) Encode(v any) []byte {
	body, _ := json.Marshal(v.(*Response))
	return body
}

func (p *dpPrepared) Decode(b []byte) (any, bool) {
	var out Response
	if json.Unmarshal(b, &out) != nil || out.DP == nil {
		return nil, false
	}
	return &out, true
}

func (p *dpPrepared) Reused(c *govern.Call, v any, concurrent bool) any {
	resp := v.(*Response)
	resp.DP.Cached = true
	if concurrent {
		resp.Notes = append(resp.Notes, "identical concurrent query answered once, at no new cost")
	} else {
		resp.DP.SpentEpsilon, resp.DP.RemainingEps = p.report.SpentEpsilon, p.report.RemainingEps
		resp.Notes = append(resp.Notes, "identical query answered from the stored noisy result at no new cost")
	}
	c.Entry.RowsReturned = int64(len(resp.Rows))
	return resp
}

// Cost is reserved before the engine runs: whatever happens next (an
// engine failure, a timeout, a crash) the charge stays spent, and a query
// refused for budget never reaches the data.
func (p *dpPrepared) Cost(c *govern.Call) []govern.Charge {
	ag, cost, refresh := p.ag, p.cost, p.report.BudgetRefresh
	limRho, limDelta := dp.BudgetLimits(ag.Budget.Epsilon, ag.Budget.Delta)
	return []govern.Charge{{
		Charge:   store.Charge{Key: p.key, Rho: cost.Rho, Epsilon: cost.Epsilon, Delta: cost.SelectionDelta, LimitRho: limRho, LimitDelta: limDelta},
		Announce: func(e *audit.Entry) { e.Epsilon, e.Delta, e.Rho = cost.Epsilon, cost.Delta, cost.Rho },
		Exhausted: func(st store.BudgetState) *refusal.Error {
			left := math.Max(0, ag.Budget.Epsilon-dp.Spent(st.Rho, ag.Budget.Delta))
			e := refusal.New(refusal.BudgetExhausted, "dp.budget_exhausted", "the privacy budget of agreement %s is exhausted for this period: this query needs ε=%.3g, %.3g is left; it refreshes at %s",
				ag.ID, cost.Epsilon, left, refresh.Format(time.RFC3339))
			if st.Delta+cost.SelectionDelta > limDelta {
				e = refusal.New(refusal.BudgetExhausted, "dp.budget_exhausted", "the privacy budget of agreement %s is exhausted for this period: its δ for partition selection is spent; it refreshes at %s",
					ag.ID, refresh.Format(time.RFC3339))
			}
			e.Details = map[string]any{"remaining_epsilon": left, "refresh": refresh}
			return e
		},
	}}
}

// dpResult is the bounded statistics, before noise.
type dpResult struct {
	p     *dpPrepared
	res   *engine.Result
	hists []map[string][]int64
}

func (p *dpPrepared) Run(ctx context.Context, c *govern.Call) (govern.Unreleased, error) {
	qctx, cancel := context.WithTimeout(ctx, p.limits.QueryTimeout)
	defer cancel()
	res, err := p.eng.Query(qctx, p.plan.SQL, p.plan.Args...)
	if err != nil {
		return nil, engineRefusal(err)
	}
	hists, err := quantileHistograms(qctx, p.eng, p.d)
	if err != nil {
		return nil, err
	}
	return &dpResult{p: p, res: res, hists: hists}, nil
}

// Release adds the noise, selects partitions and post-processes.
func (r *dpResult) Release(ctx context.Context, c *govern.Call) (any, error) {
	p := r.p
	report := *p.report
	if len(c.Charged) > 0 {
		report.SpentEpsilon = dp.Spent(c.Charged[0].Rho, p.ag.Budget.Delta)
		report.RemainingEps = math.Max(0, p.ag.Budget.Epsilon-report.SpentEpsilon)
	}
	resp := release(p.d, r.res, p.noise, p.tau, p.svc.sampler, r.hists)
	if err := checkRowLimit(len(resp.Rows), p.limits.MaxResultRows); err != nil {
		return nil, err
	}
	resp.Columns, resp.Access, resp.Agreement, resp.DP = p.plan.Columns, string(p.plan.Kind), p.ag.ID, &report
	c.Entry.RowsReturned, c.Entry.RowsSuppressed = int64(len(resp.Rows)), resp.RowsSuppressed
	return resp, nil
}

func hasKeys(d *query.DPPlan) bool { return len(d.GroupBy) > 0 }

func needsSelection(d *query.DPPlan) bool { return hasKeys(d) && d.Public == nil }

// dpFingerprint keys the answer cache by what decides the answer: the
// agreement and budget holder, the rule (noise, ε, bounds), and the bound
// query itself, rendered as engine SQL with a fixed sampling seed, so
// literals and parameters count exactly as written (two queries share an
// answer only if they compute the same statistics).
func dpFingerprint(ag *workspace.Agreement, key store.BudgetKey, canonical *query.Plan) string {
	h := sha256.New()
	rule, _ := json.Marshal(ag.Rules[canonical.DP.Dataset])
	part := func(s string) { fmt.Fprintf(h, "%d:%s", len(s), s) }
	part(ag.ID)
	part(key.Principal)
	part(string(rule))
	args := func(as []any) {
		for _, a := range as {
			part(fmt.Sprintf("%T:%v", a, a))
		}
	}
	// The statistics' SQL does not say what is made of them: which
	// outputs (median or p95, stddev or variance), in which order, names,
	// ORDER BY, LIMIT, OFFSET and public groups.
	shape, _ := json.Marshal(struct {
		Columns   []string
		Outputs   []query.DPOutput
		Quantiles []query.Quantile
		OrderBy   []query.DPOrder
		Limit     *int64
		Offset    *int64
		Public    [][]string
	}{canonical.Columns, canonical.DP.Outputs, canonical.DP.Quantiles, canonical.DP.OrderBy, canonical.DP.Limit, canonical.DP.Offset, canonical.DP.Public})
	part(string(shape))
	part(canonical.SQL)
	args(canonical.Args)
	for i, q := range canonical.DP.QuantileSQL {
		part(q)
		args(canonical.DP.QuantileArgs[i])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func describeColumns(d *query.DPPlan, noise noiseSpec) []DPColumn {
	var out []DPColumn
	for _, o := range d.Outputs {
		if o.Agg == "quantile" {
			qt := d.Quantiles[o.Quantile]
			out = append(out, DPColumn{Column: o.Name, Mechanism: "exponential mechanism (permute-and-flip)",
				Note: fmt.Sprintf("one of %d bins of width %.4g over [%g, %g]; the bin's midpoint is released", query.QuantileBins, (qt.Upper-qt.Lower)/query.QuantileBins, qt.Lower, qt.Upper)})
			continue
		}
		if o.Key >= 0 {
			mech := "partition selection (noisy distinct-unit count ≥ threshold)"
			if d.Public != nil {
				mech = "public group keys (all released)"
			}
			out = append(out, DPColumn{Column: o.Name, Mechanism: mech})
			continue
		}
		s := d.Stats[o.Stats[0]]
		c := DPColumn{Column: o.Name, Mechanism: noise.Name()}
		switch o.Agg {
		case "count", "count_distinct", "sum":
			c.Sigma = noise.SD(o.Stats[0]) * s.Scale
			c.CI95 = noise.CI95(o.Stats[0]) * s.Scale
		default:
			var parts []string
			for _, i := range o.Stats {
				parts = append(parts, fmt.Sprintf("%s σ=%.4g", d.Stats[i].Kind, noise.SD(i)*d.Stats[i].Scale))
			}
			c.Note = "post-processed from noisy " + strings.Join(parts, ", ") + "; its error shrinks with the group's size"
		}
		out = append(out, c)
	}
	return out
}

// release turns per-group bounded statistics into released rows.
func release(d *query.DPPlan, res *engine.Result, noise noiseSpec, tau float64, s *dp.Sampler, hists []map[string][]int64) *Response {
	nk := len(d.GroupBy)
	type group struct {
		keys  []any
		stats []*big.Int
	}
	var groups []group
	byKey := map[string]int{}
	for _, row := range res.Rows {
		gr := group{keys: row[:nk]}
		for i := range d.Stats {
			gr.stats = append(gr.stats, toBig(row[nk+i]))
		}
		byKey[groupKey(gr.keys)] = len(groups)
		groups = append(groups, gr)
	}
	if d.Public != nil {
		// Every public key combination, present in the data or not.
		var all []group
		var rec func(i int, prefix []any)
		rec = func(i int, prefix []any) {
			if i == nk {
				k := append([]any(nil), prefix...)
				if j, ok := byKey[groupKey(k)]; ok {
					all = append(all, groups[j])
				} else {
					z := make([]*big.Int, len(d.Stats))
					for x := range z {
						z[x] = new(big.Int)
					}
					all = append(all, group{keys: k, stats: z})
				}
				return
			}
			for _, v := range d.Public[i] {
				rec(i+1, append(prefix, v))
			}
		}
		rec(0, nil)
		groups = all
	} else if nk == 0 && len(groups) == 0 {
		z := make([]*big.Int, len(d.Stats))
		for x := range z {
			z[x] = new(big.Int)
		}
		groups = []group{{stats: z}}
	}
	out := &Response{Rows: [][]any{}}
	for _, gr := range groups {
		noisy := make([]float64, len(d.Stats))
		for i, v := range gr.stats {
			n := new(big.Int).Add(v, noise.Sample(s, i))
			f, _ := new(big.Float).SetInt(n).Float64()
			noisy[i] = f
		}
		if nk > 0 && d.Public == nil && noisy[0] < tau {
			out.RowsSuppressed++ // audit only: never in the response
			continue
		}
		row := make([]any, len(d.Outputs))
		for j, o := range d.Outputs {
			if o.Key >= 0 {
				row[j] = gr.keys[o.Key]
				continue
			}
			if o.Agg == "quantile" {
				counts := make([]int64, query.QuantileBins)
				if h := hists[o.Quantile][groupKey(gr.keys)]; h != nil {
					counts = h
				}
				qt := d.Quantiles[o.Quantile]
				bin := s.QuantileBin(counts, qt.Fraction, noise.quantileEps, d.Linf)
				width := (qt.Upper - qt.Lower) / query.QuantileBins
				row[j] = qt.Lower + (float64(bin)+0.5)*width
				continue
			}
			row[j] = value(o, d, noisy)
		}
		out.Rows = append(out.Rows, row)
	}
	// Rows come in the engine's group order, which depends on every row it
	// scanned; the keys order them first, so the analyst's ORDER BY (on
	// noisy values or keys) and LIMIT never see that order.
	sort.SliceStable(out.Rows, func(i, j int) bool {
		for k, o := range d.Outputs {
			if o.Key < 0 {
				continue
			}
			if c := compare(out.Rows[i][k], out.Rows[j][k]); c != 0 {
				return c < 0
			}
		}
		return false
	})
	orderRows(out.Rows, d)
	if d.Offset != nil {
		if int(*d.Offset) >= len(out.Rows) {
			out.Rows = [][]any{}
		} else {
			out.Rows = out.Rows[*d.Offset:]
		}
	}
	if d.Limit != nil && int(*d.Limit) < len(out.Rows) {
		out.Rows = out.Rows[:*d.Limit]
	}
	if nk > 0 && d.Public == nil {
		// Said of every such answer, whether or not a group was dropped:
		// how many were is a function of the hidden data.
		out.Notes = append(out.Notes, "groups with few distinct units may have been dropped by DP partition selection")
	}
	return out
}

// groupKey encodes a tuple of group-key values injectively: each value's
// text is quoted (so no separator can be forged) and NULL has its own
// token. Values of one column share one engine type, so text is enough, and
// public group keys (strings from the workspace) match the engine's values.
func groupKey(vals []any) string {
	var b strings.Builder
	for _, v := range vals {
		switch x := v.(type) {
		case nil:
			b.WriteString("N;")
			continue
		case time.Time:
			if x.Equal(x.Truncate(24 * time.Hour)) {
				v = x.Format("2006-01-02")
			} else {
				v = x.Format(time.RFC3339Nano)
			}
		case float64:
			// One group, one text: -0 and 0 are equal (and grouped
			// together), and so is every NaN.
			switch {
			case x == 0:
				x = 0
			case math.IsNaN(x):
				x = math.NaN()
			}
			v = strconv.FormatFloat(x, 'g', -1, 64)
		case float32:
			v = strconv.FormatFloat(float64(x)+0, 'g', -1, 32)
		}
		b.WriteString(strconv.Quote(fmt.Sprint(v)))
		b.WriteString(";")
	}
	return b.String()
}

func value(o query.DPOutput, d *query.DPPlan, noisy []float64) any {
	st := func(i int) float64 { return noisy[o.Stats[i]] * d.Stats[o.Stats[i]].Scale }
	switch o.Agg {
	case "count", "count_distinct":
		return int64(math.Max(0, math.Round(st(0))))
	case "sum":
		return st(0)
	case "avg":
		return clamp(st(0)/math.Max(1, st(1)), o.Lower, o.Upper)
	case "variance", "var_pop", "stddev", "stddev_pop":
		n := math.Max(1, st(2))
		mean := clamp(st(0)/n, o.Lower, o.Upper)
		v := clamp(st(1)/n-mean*mean, 0, math.Pow((o.Upper-o.Lower)/2, 2))
		if strings.HasPrefix(o.Agg, "stddev") {
			return math.Sqrt(v)
		}
		return v
	}
	return nil
}

func clamp(x, lo, hi float64) float64 { return math.Min(hi, math.Max(lo, x)) }

func toBig(v any) *big.Int {
	switch x := v.(type) {
	case int64:
		return big.NewInt(x)
	case *big.Int:
		return x
	case float64:
		b, _ := new(big.Float).SetFloat64(math.Round(x)).Int(nil)
		return b
	}
	return new(big.Int)
}

func orderRows(rows [][]any, d *query.DPPlan) {
	if len(d.OrderBy) == 0 {
		return
	}
	sort.SliceStable(rows, func(i, j int) bool {
		for _, o := range d.OrderBy {
			c := compare(rows[i][o.Output], rows[j][o.Output])
			if c != 0 {
				return (c < 0) != o.Desc
			}
		}
		return false
	})
}

func compare(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1 // NULL first, and never equal to a value
	case b == nil:
		return 1
	}
	switch x := a.(type) {
	case int64:
		if y, ok := b.(int64); ok {
			return cmpOrdered(x, y)
		}
	case float64:
		if y, ok := b.(float64); ok {
			return cmpOrdered(x, y)
		}
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y)
		}
	case time.Time:
		if y, ok := b.(time.Time); ok {
			return x.Compare(y)
		}
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
