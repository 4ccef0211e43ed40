package federation

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/sqlop"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// DefaultMemberTimeout bounds a member's answer when the manifest does not.
const DefaultMemberTimeout = 30 * time.Second

// Federator is the coordinator's side: it plans a query over a federated
// dataset into one sub-query per member and combines what the members
// release. It implements sqlop.Federator.
type Federator struct {
	Client *Client
}

var _ sqlop.Federator = (*Federator)(nil)

// aggregate kinds a federated query may use: each combines exactly from
// the members' released partials.
const (
	outKey = iota
	outCount
	outSum
	outAvg
	outMin
	outMax
)

type outCol struct {
	name   string
	kind   int
	key    int   // outKey: index into keys
	member []int // member answer columns: avg = [sum, count]
	typ    string
	bounds []float64
}

type orderKey struct {
	col  int
	desc bool
}

// shape is a federated query after validation: the group keys, the
// member query's aggregates, and how the output is rebuilt.
type shape struct {
	m       *workspace.Manifest
	keys    []*workspace.Column
	aggs    []string // member select items after the keys: count(*), sum("cost"), ...
	out     []outCol
	order   []orderKey
	limit   *int64
	offset  *int64
	members string // member SQL
}

func shapeRefusal(format string, args ...any) error {
	return refusal.New(refusal.AnalysisRule, "federation.shape", format, args...)
}

// shapeOf accepts what combines exactly from released partials: one
// federated dataset, WHERE on its columns, GROUP BY columns, and count,
// sum, avg, min and max of columns; ORDER BY and LIMIT apply to the
// combined answer. HAVING, DISTINCT, joins and subqueries would need a
// member's unreleased values.
func shapeOf(q *query.Select) (*shape, error) {
	if len(q.With) > 0 || len(q.From) != 1 || q.From[0].Dataset == nil {
		return nil, shapeRefusal("a federated query reads one federated dataset, without joins, subqueries or WITH")
	}
	if q.Having != nil || q.Distinct {
		return nil, shapeRefusal("HAVING and DISTINCT need values the members do not release; filter with WHERE")
	}
	sub := false
	query.Walk(q.Where, func(e query.Expr) bool {
		if _, ok := e.(*query.InSub); ok {
			sub = true
		}
		return !sub
	})
	if sub || query.HasAggregate(q.Where) {
		return nil, shapeRefusal("a federated query's WHERE may not hold subqueries or aggregates")
	}
	s := &shape{m: q.From[0].Dataset, limit: q.Limit, offset: q.Offset}
	colOf := func(e query.Expr) (*workspace.Column, bool) {
		c, ok := e.(*query.Col)
		if !ok || c.Origin == nil || c.Origin.Column == nil {
			return nil, false
		}
		return c.Origin.Column, true
	}
	keyIndex := map[string]int{}
	for _, g := range q.GroupBy {
		c, ok := colOf(g)
		if !ok {
			return nil, shapeRefusal("a federated query groups by columns only")
		}
		if _, dup := keyIndex[c.Name]; !dup {
			keyIndex[c.Name] = len(s.keys)
			s.keys = append(s.keys, c)
		}
	}
	memberCol := map[string]int{}
	agg := func(text string) int {
		if i, ok := memberCol[text]; ok {
			return i
		}
		memberCol[text] = len(s.keys) + len(s.aggs)
		s.aggs = append(s.aggs, text)
		return memberCol[text]
	}
	itemKey := map[string]int{}
	for _, it := range q.Items {
		if it.Hidden {
			continue
		}
		o := outCol{name: it.Name}
		switch x := it.Expr.(type) {
		case *query.Col:
			c, ok := colOf(x)
			i, grouped := keyIndex[c.Name]
			if !ok || !grouped {
				return nil, shapeRefusal("column %s is neither grouped nor aggregated", it.Name)
			}
			o.kind, o.key, o.typ = outKey, i, c.Type
			itemKey["col:"+c.Name] = len(s.out)
		case *query.Func:
			if !x.Agg || x.Distinct {
				return nil, shapeRefusal("%s: a federated query combines count, sum, avg, min and max (without DISTINCT) only", it.Name)
			}
			var c *workspace.Column
			arg := "*"
			if !x.Star {
				var ok bool
				if len(x.Args) != 1 {
					return nil, shapeRefusal("%s: aggregates of a federated query take one column", it.Name)
				}
				if c, ok = colOf(x.Args[0]); !ok {
					return nil, shapeRefusal("%s: aggregates of a federated query take a column, not an expression", it.Name)
				}
				arg = query.QuoteIdent(c.Name)
				o.bounds = c.Bounds
			}
			switch x.Name {
			case "count":
				o.kind, o.typ, o.member = outCount, "integer", []int{agg("count(" + arg + ")")}
			case "sum":
				o.kind, o.typ, o.member = outSum, "double", []int{agg("sum(" + arg + ")")}
			case "avg":
				o.kind, o.typ, o.member = outAvg, "double", []int{agg("sum(" + arg + ")"), agg("count(" + arg + ")")}
			case "min", "max":
				o.kind, o.typ, o.member = outMin, c.Type, []int{agg(x.Name + "(" + arg + ")")}
				if x.Name == "max" {
					o.kind = outMax
				}
			default:
				return nil, shapeRefusal("%s: a federated query combines count, sum, avg, min and max only", it.Name)
			}
			if (x.Star && x.Name != "count") || (c != nil && x.Name != "count" && x.Name != "min" && x.Name != "max" && !numeric(c.Type)) {
				return nil, shapeRefusal("%s: %s needs a numeric column", it.Name, x.Name)
			}
			itemKey["agg:"+x.Name+"("+arg+")"] = len(s.out)
		default:
			return nil, shapeRefusal("%s: a federated query returns grouped columns and aggregates only", it.Name)
		}
		s.out = append(s.out, o)
	}
	for _, ob := range q.OrderBy {
		k := ""
		switch x := ob.Expr.(type) {
		case *query.Col:
			if c, ok := colOf(x); ok {
				k = "col:" + c.Name
			}
		case *query.Func:
			arg := "*"
			if !x.Star && len(x.Args) == 1 {
				if c, ok := colOf(x.Args[0]); ok {
					arg = query.QuoteIdent(c.Name)
				}
			}
			k = "agg:" + x.Name + "(" + arg + ")"
		}
		i, ok := itemKey[k]
		if !ok {
			return nil, shapeRefusal("a federated query orders by its output columns only")
		}
		s.order = append(s.order, orderKey{col: i, desc: ob.Desc})
	}
	return s, nil
}

func numeric(t string) bool { return t == "integer" || t == "double" || t == "decimal" }

// memberSQL is what each member is asked: the keys and the partial
// aggregates, with the analyst's WHERE as the analyst wrote it (taken
// from the parse tree and deparsed, never spliced as text).
func (s *shape) memberSQL(original string) (string, error) {
	var items, groups []string
	for i, k := range s.keys {
		items = append(items, fmt.Sprintf("%s AS k%d", query.QuoteIdent(k.Name), i))
		groups = append(groups, query.QuoteIdent(k.Name))
	}
	for i, a := range s.aggs {
		items = append(items, fmt.Sprintf("%s AS m%d", a, i))
	}
	text := "SELECT " + strings.Join(items, ", ") + " FROM " + query.QuoteIdent(s.m.Name)
	if len(groups) > 0 {
		text += " GROUP BY " + strings.Join(groups, ", ")
	}
	orig, err := pg.Parse(original)
	if err != nil || len(orig.Stmts) != 1 || orig.Stmts[0].Stmt.GetSelectStmt() == nil {
		return "", shapeRefusal("a federated query is one SELECT")
	}
	tmpl, err := pg.Parse(text)
	if err != nil {
		return "", err
	}
	tmpl.Stmts[0].Stmt.GetSelectStmt().WhereClause = orig.Stmts[0].Stmt.GetSelectStmt().WhereClause
	return pg.Deparse(tmpl)
}

// Prepare implements sqlop.Federator.
func (f *Federator) Prepare(ctx context.Context, c *govern.Call, q *query.Select, sql string, params []any) (govern.Prepared, error) {
	s, err := shapeOf(q)
	if err != nil {
		return nil, err
	}
	if s.members, err = s.memberSQL(sql); err != nil {
		return nil, err
	}
	c.Entry.Columns = columnsOf(s)
	var peers []*workspace.Peer
	for _, name := range s.m.Source.Federation.Members {
		p := c.Snap.WS.Peers[name]
		if p == nil {
			return nil, refusal.New(refusal.Internal, "federation.member_unknown", "federation member %s is not a known peer", name)
		}
		peers = append(peers, p)
	}
	return &fedPrepared{f: f, c: c, s: s, peers: peers, params: params}, nil
}

func columnsOf(s *shape) []string {
	var out []string
	for _, k := range s.keys {
		out = append(out, k.Name)
	}
	for _, o := range s.out {
		if o.kind != outKey {
			out = append(out, o.name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

type fedPrepared struct {
	f      *Federator
	c      *govern.Call
	s      *shape
	peers  []*workspace.Peer
	params []any
}

// Checks asks this node's own policy whether the principal may query the
// federated dataset at all; each member then decides for itself.
func (p *fedPrepared) Checks() []policy.Request {
	action := policy.ActionQuery
	if p.c.Mode == share.Plan {
		action = policy.ActionPlan
	}
	id := p.c.Caller.Identity
	m := p.s.m
	return []policy.Request{{
		Principal: policy.PrincipalOf(id),
		Action:    action,
		Resource:  policy.Resource{Name: m.Name, Owner: m.Owner, Tier: m.Tier, Region: m.Region},
		Context: policy.Context{Purpose: p.c.Purpose, ClientRegion: id.Region, DestinationRegion: id.Region, Channel: p.c.Caller.Channel,
			QueryKind: "federated", Now: p.c.Now, Columns: columnsOf(p.s)},
	}}
}

func (p *fedPrepared) Preview(ctx context.Context, c *govern.Call) (any, error) {
	var types, cols []string
	for _, o := range p.s.out {
		cols, types = append(cols, o.name), append(types, wireType(o.typ))
	}
	return &sqlop.Response{Access: "federated", Columns: cols, Rows: [][]any{},
		Plan:  &sqlop.PlanInfo{Access: "federated", Datasets: []string{p.s.m.Name}, Columns: columnsOf(p.s), Types: types, ParamTypes: make([]string, len(p.params))},
		Notes: []string{"members asked: " + strings.Join(p.s.m.Source.Federation.Members, ", ") + "; each decides under its own rules"}}, nil
}

func wireType(t string) string {
	if t == "decimal" {
		return "double"
	}
	return t
}

// memberResult is one member's outcome.
type memberResult struct {
	peer    *workspace.Peer
	answer  *memberAnswer
	decoded *sqlop.Response
	err     *PeerError
}

func (p *fedPrepared) Run(ctx context.Context, c *govern.Call) (govern.Unreleased, error) {
	timeout := p.s.m.Source.Federation.Timeout
	if timeout <= 0 {
		timeout = DefaultMemberTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	results := make([]memberResult, len(p.peers))
	var wg sync.WaitGroup
	for i, peer := range p.peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = p.ask(ctx, peer)
		}()
	}
	wg.Wait()
	return &fedResult{p: p, results: results}, nil
}

// ask sends one member its sub-query and checks the receipt.
func (p *fedPrepared) ask(ctx context.Context, peer *workspace.Peer) memberResult {
	r := memberResult{peer: peer}
	env := Envelope{Principal: PrincipalOf(p.c.Caller.Identity), Purpose: p.c.Purpose, Op: string(share.OpQuery),
		SQL: p.s.members, Params: p.params, RequestID: p.c.Caller.RequestID}
	var ans memberAnswer
	sent, envelope, err := p.f.Client.Post(ctx, peer, "/peer/v1/query", env, &ans)
	if err != nil {
		pe, ok := err.(*PeerError)
		if !ok {
			pe = &PeerError{Peer: peer.Name, Rule: "federation.member_invalid", Message: "could not be asked"}
		}
		r.err = pe
		return r
	}
	resp, err := CheckAnswer(peer, &ans)
	if err == nil {
		err = p.answers(sent, envelope, &ans, resp)
	}
	if err != nil {
		r.err = &PeerError{Peer: peer.Name, Rule: "federation.member_invalid", Message: err.Error()}
		return r
	}
	r.answer, r.decoded = &ans, resp
	return r
}

// answers checks that a verified answer is the answer to this request:
// the receipt names the envelope sent (its nonce and hash) and the
// columns are the ones asked, so a member cannot pass off an answer it
// gave to another question.
func (p *fedPrepared) answers(sent Envelope, envelope []byte, a *memberAnswer, resp *sqlop.Response) error {
	h := sha256.Sum256(envelope)
	if a.Receipt.Nonce != sent.Nonce || string(a.Receipt.EnvelopeHash) != string(h[:]) {
		return fmt.Errorf("its receipt answers another request")
	}
	want := make([]string, 0, len(p.s.keys)+len(p.s.aggs))
	for i := range p.s.keys {
		want = append(want, fmt.Sprintf("k%d", i))
	}
	for i := range p.s.aggs {
		want = append(want, fmt.Sprintf("m%d", i))
	}
	if !slices.Equal(resp.Columns, want) {
		return fmt.Errorf("it answered other columns than were asked")
	}
	return nil
}

type fedResult struct {
	p       *fedPrepared
	results []memberResult
}

func (r *fedResult) Release(ctx context.Context, c *govern.Call) (any, error) {
	p := r.p
	report := &sqlop.FederationReport{}
	var ok []memberResult
	for _, m := range r.results {
		if m.err != nil {
			report.Missing = append(report.Missing, sqlop.MemberFailure{Node: m.peer.Name, Rule: m.err.Rule, Message: m.err.Message})
			continue
		}
		ok = append(ok, m)
	}
	var indices []string
	for _, m := range ok {
		indices = append(indices, fmt.Sprintf("%s:%d", m.peer.Name, m.answer.Receipt.AuditIndex))
	}
	if c.Entry.Extra == nil {
		c.Entry.Extra = map[string]string{}
	}
	if len(indices) > 0 {
		c.Entry.Extra["federation_members"] = strings.Join(indices, ",")
	}
	if len(report.Missing) > 0 {
		var why []string
		for _, f := range report.Missing {
			why = append(why, f.Node+" "+f.Message)
		}
		c.Entry.Extra["federation_missing"] = strings.Join(why, "; ")
		if !p.s.m.Source.Federation.Partial || len(ok) == 0 {
			return nil, memberRefusal(report.Missing)
		}
		report.Partial = true
	}
	rows, rowMembers, err := combine(p.s, ok)
	if err != nil {
		return nil, err
	}
	for _, m := range ok {
		report.Members = append(report.Members, sqlop.MemberReport{Node: m.peer.Name, Region: m.peer.Region, Access: m.decoded.Access,
			Agreement: m.decoded.Agreement, Rows: len(m.decoded.Rows), DP: m.decoded.DP, Receipt: &m.answer.Receipt})
	}
	resp := &sqlop.Response{Access: "federated", Rows: rows, Federation: report}
	for _, o := range p.s.out {
		resp.Columns = append(resp.Columns, o.name)
	}
	resp.Notes = append(resp.Notes, combinedNotes(p.s, ok)...)
	if report.Partial {
		resp.Notes = append(resp.Notes, fmt.Sprintf("partial answer: %d of %d members answered", len(ok), len(r.results)))
	}
	report.Noise = combinedNoise(p.s, ok)
	report.RowMembers = rowMembers
	c.Entry.RowsReturned = int64(len(rows))
	return resp, nil
}

func memberRefusal(missing []sqlop.MemberFailure) error {
	var parts []string
	code := refusal.Unavailable
	for _, f := range missing {
		parts = append(parts, "member "+f.Node+" "+f.Message)
		if !strings.HasPrefix(f.Rule, "federation.member_") {
			code = refusal.Forbidden // a member's own refusal, not an outage
		}
	}
	e := refusal.New(code, "federation.member", "%s", strings.Join(parts, "; "))
	var nodes []any
	for _, f := range missing {
		nodes = append(nodes, map[string]any{"node": f.Node, "rule": f.Rule, "message": f.Message})
	}
	e.Details = map[string]any{"members": nodes}
	return e
}

// combine sums the members' released partials per group.
func combine(s *shape, ok []memberResult) ([][]any, [][]string, error) {
	type acc struct {
		keys    []any
		vals    []float64 // per member answer column (after the keys)
		seen    []bool
		members []string
	}
	groups := map[string]*acc{}
	var order []string
	width := len(s.keys) + len(s.aggs)
	for _, m := range ok {
		if len(m.decoded.Columns) != width {
			return nil, nil, refusal.New(refusal.Unavailable, "federation.member_invalid", "member %s answered %d columns, %d were asked", m.peer.Name, len(m.decoded.Columns), width)
		}
		for _, row := range m.decoded.Rows {
			if len(row) != width {
				return nil, nil, refusal.New(refusal.Unavailable, "federation.member_invalid", "member %s answered a malformed row", m.peer.Name)
			}
			keys := make([]any, len(s.keys))
			for i, k := range s.keys {
				keys[i] = keyValue(row[i], k.Type)
			}
			kb, _ := json.Marshal(keys)
			g := groups[string(kb)]
			if g == nil {
				g = &acc{keys: keys, vals: make([]float64, len(s.aggs)), seen: make([]bool, len(s.aggs))}
				groups[string(kb)] = g
				order = append(order, string(kb))
			}
			g.members = append(g.members, m.peer.Name)
			for j := range s.aggs {
				v, isNum := number(row[len(s.keys)+j])
				if !isNum {
					continue // NULL partial: nothing to add
				}
				a := s.aggs[j]
				switch {
				case !g.seen[j]:
					g.vals[j] = v
				case strings.HasPrefix(a, "min("):
					g.vals[j] = math.Min(g.vals[j], v)
				case strings.HasPrefix(a, "max("):
					g.vals[j] = math.Max(g.vals[j], v)
				default:
					g.vals[j] += v
				}
				g.seen[j] = true
			}
		}
	}
	var rows [][]any
	var members [][]string
	for _, k := range order {
		g := groups[k]
		row := make([]any, len(s.out))
		for i, o := range s.out {
			col := func(n int) (float64, bool) { j := n - len(s.keys); return g.vals[j], g.seen[j] }
			switch o.kind {
			case outKey:
				row[i] = g.keys[o.key]
			case outCount:
				v, _ := col(o.member[0])
				row[i] = int64(math.Round(v))
			case outSum:
				if v, seen := col(o.member[0]); seen {
					row[i] = v
				}
			case outAvg:
				sum, seen := col(o.member[0])
				n, _ := col(o.member[1])
				if seen && n >= 1 {
					avg := sum / n
					if len(o.bounds) == 2 { // noisy partials can overshoot the public bounds
						avg = math.Min(o.bounds[1], math.Max(o.bounds[0], avg))
					}
					row[i] = avg
				}
			case outMin, outMax:
				if v, seen := col(o.member[0]); seen {
					row[i] = keyValue(v, o.typ)
				}
			}
		}
		rows = append(rows, row)
		slices.Sort(g.members)
		members = append(members, g.members)
	}
	idx := make([]int, len(rows))
	for i := range idx {
		idx[i] = i
	}
	less := func(a, b int) bool {
		for _, o := range s.order {
			if c := compare(rows[a][o.col], rows[b][o.col]); c != 0 {
				return (c < 0) != o.desc
			}
		}
		for i := range s.keys { // a total order: by the keys
			for j, o := range s.out {
				if o.kind == outKey && o.key == i {
					if c := compare(rows[a][j], rows[b][j]); c != 0 {
						return c < 0
					}
				}
			}
		}
		return false
	}
	sort.SliceStable(idx, func(i, j int) bool { return less(idx[i], idx[j]) })
	sortedRows := make([][]any, 0, len(rows))
	sortedMembers := make([][]string, 0, len(rows))
	for _, i := range idx {
		sortedRows, sortedMembers = append(sortedRows, rows[i]), append(sortedMembers, members[i])
	}
	lo, hi := int64(0), int64(len(sortedRows))
	if s.offset != nil {
		lo = min(hi, max(0, *s.offset))
	}
	if s.limit != nil {
		hi = min(hi, lo+max(0, *s.limit))
	}
	return sortedRows[lo:hi], sortedMembers[lo:hi], nil
}

// keyValue turns a JSON-decoded value into the column type's Go value.
func keyValue(v any, typ string) any {
	switch typ {
	case "integer":
		if f, ok := number(v); ok {
			return int64(f)
		}
	case "double", "decimal":
		if f, ok := number(v); ok {
			if f == 0 {
				return 0.0 // one spelling of zero per group
			}
			return f
		}
	case "date", "timestamp":
		if s, ok := v.(string); ok {
			for _, layout := range []string{"2006-01-02", time.RFC3339Nano} {
				if t, err := time.Parse(layout, s); err == nil {
					return t.UTC()
				}
			}
		}
	}
	return v
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case int64:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}

func compare(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1 // NULLS LAST
	case b == nil:
		return -1
	}
	if x, ok := number(a); ok {
		if y, ok := number(b); ok {
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		}
	}
	if x, ok := a.(time.Time); ok {
		if y, ok := b.(time.Time); ok {
			return x.Compare(y)
		}
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

// combinedNoise is the noise of each combined statistic: independent
// noises add in variance, so σ = sqrt(Σ σ_i²) over the DP members whose
// partials it sums; the 95% interval is 1.96σ when every part is
// Gaussian (a normal approximation otherwise, said in the note).
func combinedNoise(s *shape, ok []memberResult) []sqlop.DPColumn {
	var out []sqlop.DPColumn
	for _, o := range s.out {
		if o.kind == outKey {
			continue
		}
		var variance float64
		var mechanisms []string
		gaussian := true
		for _, m := range ok {
			if m.decoded.DP == nil {
				continue
			}
			for _, dc := range m.decoded.DP.Columns {
				if dc.Column != fmt.Sprintf("m%d", o.member[0]-len(s.keys)) {
					continue
				}
				variance += dc.Sigma * dc.Sigma
				mechanisms = append(mechanisms, m.peer.Name+": "+dc.Mechanism)
				if !strings.Contains(strings.ToLower(dc.Mechanism), "gaussian") {
					gaussian = false
				}
			}
		}
		if len(mechanisms) == 0 {
			continue
		}
		col := sqlop.DPColumn{Column: o.name, Mechanism: "sum of members' noise (" + strings.Join(mechanisms, "; ") + ")", Sigma: math.Sqrt(variance), CI95: 1.96 * math.Sqrt(variance)}
		switch {
		case o.kind == outAvg:
			col.Mechanism = "ratio of the combined noisy sum and count"
			col.Note = fmt.Sprintf("the sum's noise σ=%.4g over the combined count; the interval narrows as the count grows", math.Sqrt(variance))
			col.CI95 = 0
		case o.kind == outMin || o.kind == outMax:
			col.Note = "min and max of the members' released values"
			col.Sigma, col.CI95 = 0, 0
		case !gaussian:
			col.Note = "interval is a normal approximation: not every member's noise is Gaussian"
		}
		out = append(out, col)
	}
	return out
}

func combinedNotes(s *shape, ok []memberResult) []string {
	var notes []string
	for _, m := range ok {
		notes = append(notes, fmt.Sprintf("%s (%s): %s, %d groups released, audit entry %d", m.peer.Name, m.peer.Region, m.decoded.Access, len(m.decoded.Rows), m.answer.Receipt.AuditIndex))
	}
	return notes
}

// memberAnswer is a member's reply: the answer as JSON bytes (hashed as
// sent) and the receipt that binds it to the member's audit log.
type memberAnswer struct {
	Answer  json.RawMessage `json:"answer"`
	Receipt sqlop.Receipt   `json:"receipt"`
}

const receiptLabel = "peer receipt"

func receiptBytes(r sqlop.Receipt) []byte {
	r.Signature = nil
	b, _ := json.Marshal(r)
	return b
}

// CheckAnswer verifies a member's answer against its pinned key: the
// receipt's signature, its checkpoint's signature, the entry's inclusion
// under that checkpoint, and that the answer is the one the receipt
// names. It returns the decoded answer.
func CheckAnswer(peer *workspace.Peer, a *memberAnswer) (*sqlop.Response, error) {
	if err := VerifyReceipt(peer, &a.Receipt); err != nil {
		return nil, err
	}
	h := sha256.Sum256(a.Answer)
	if string(h[:]) != string(a.Receipt.AnswerHash) {
		return nil, fmt.Errorf("its answer is not the one its receipt names")
	}
	var resp sqlop.Response
	dec := json.NewDecoder(strings.NewReader(string(a.Answer)))
	dec.UseNumber()
	if err := dec.Decode(&resp); err != nil {
		return nil, fmt.Errorf("its answer does not decode")
	}
	return &resp, nil
}

// VerifyReceipt checks a receipt offline against the member's pinned key.
func VerifyReceipt(peer *workspace.Peer, r *sqlop.Receipt) error {
	name, pub, err := ParseVerifier(peer.Key)
	if err != nil {
		return err
	}
	if r.Node != name {
		return fmt.Errorf("its receipt is for node %q", r.Node)
	}
	if !verify(pub, receiptLabel, receiptBytes(*r), r.Signature) {
		return fmt.Errorf("its receipt's signature does not verify with its pinned key")
	}
	cp, err := audit.ParseCheckpoint([]byte(r.Checkpoint), peer.Key)
	if err != nil {
		return fmt.Errorf("its receipt's checkpoint does not verify with its pinned key")
	}
	if r.AuditIndex >= cp.Size || len(r.LeafHash) != 32 {
		return fmt.Errorf("its receipt's checkpoint does not cover its audit entry")
	}
	if err := audit.VerifyLeafInclusion(audit.Hash(r.LeafHash), r.AuditIndex, cp, r.Inclusion); err != nil {
		return fmt.Errorf("its audit entry's inclusion proof does not verify")
	}
	return nil
}
