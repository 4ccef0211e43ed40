package differencing

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/store/sqlite"
)

// row is a simulated dataset row: the engine's per-row values (see the
// package comment) computed from random hashes, as DuckDB computes them
// from hash(row) and hash(unit).
type row struct {
	unit       int
	w1, w2     uint64
	x, ub      uint64
	wx, wxx    uint64
	multiplied int
}

type world struct {
	rng   *rand.Rand
	units []struct{ x, ub uint64 }
}

func newWorld(seed uint64, units int) *world {
	w := &world{rng: rand.New(rand.NewPCG(seed, 1))}
	for range units {
		w.units = append(w.units, struct{ x, ub uint64 }{w.rng.Uint64() % Prime, w.rng.Uint64() & 0xffff})
	}
	return w
}

func (w *world) row(unit int) row {
	u := w.units[unit]
	r := row{unit: unit, w1: w.rng.Uint64() % Prime, w2: w.rng.Uint64() % Prime, x: u.x, ub: u.ub}
	r.wx = r.w1 * u.x % Prime
	r.wxx = r.w1 * (u.x * u.x % Prime) % Prime
	return r
}

// sketch sums rows as the engine's sketch query does.
func sketch(rows []row, b int) *Sketch {
	s := &Sketch{B: b}
	seen := map[int]bool{}
	for _, r := range rows {
		s.Add(int(r.ub)%b, int64(r.w1), int64(r.w2), int64(r.wx), int64(r.wxx))
		seen[r.unit] = true
	}
	s.Units = int64(len(seen))
	return s
}

// population is rowsPer rows for each of n units.
func (w *world) population(n, rowsPer int) []row {
	var out []row
	for u := range n {
		for range rowsPer {
			out = append(out, w.row(u))
		}
	}
	return out
}

// perturb changes the rows of k distinct units in one of the ways an
// analyst's filter can: drop one of a unit's rows, drop all of them, or
// (data appended later) add one.
func (w *world) perturb(rows []row, k int) []row {
	units := w.rng.Perm(len(w.units))[:k]
	out := append([]row(nil), rows...)
	for i, u := range units {
		switch i % 3 {
		case 0: // one row of a unit that has others
			for j, r := range out {
				if r.unit == u {
					out = append(out[:j], out[j+1:]...)
					break
				}
			}
		case 1: // the whole unit
			kept := out[:0]
			for _, r := range out {
				if r.unit != u {
					kept = append(kept, r)
				}
			}
			out = kept
		default: // a new row
			out = append(out, w.row(u))
		}
	}
	return out
}

// The lower bound never exceeds the true number of differing units, and
// any difference at all is seen: a difference of 1..m-1 units is always
// refused.
func TestDifferingUnitsIsALowerBoundThatSeesEveryDifference(t *testing.T) {
	for trial := range 300 {
		w := newWorld(uint64(trial), 200)
		base := w.population(200, 3)
		k := 1 + trial%25
		b := 64
		a, c := sketch(base, b), sketch(w.perturb(base, k), b)
		lb := DifferingUnits(a, c, 0)
		if lb > k || lb == 0 {
			t.Fatalf("trial %d: %d units differ, lower bound %d", trial, k, lb)
		}
		if got := DifferingUnits(a, sketch(base, b), 0); got != 0 {
			t.Fatalf("identical cells differ by %d", got)
		}
		// Whatever need is asked, a difference below it is below it.
		if k < 10 && DifferingUnits(a, c, 10) >= 10 {
			t.Fatalf("trial %d: %d units reported as >= 10", trial, k)
		}
	}
}

// A unit whose rows moved between two cells of the same size (one row
// swapped for another) is still a differing unit.
func TestSwappedRowOfOneUnitCounts(t *testing.T) {
	w := newWorld(7, 50)
	base := w.population(50, 4)
	swapped := append([]row(nil), base...)
	swapped[5] = w.row(base[5].unit)
	if n := DifferingUnits(sketch(base, 64), sketch(swapped, 64), 10); n != 1 {
		t.Fatalf("one swapped row: %d differing units, want 1", n)
	}
	// Duplicate rows are a multiset: removing one of two identical rows
	// differs too.
	dup := append(append([]row(nil), base...), base[0])
	if n := DifferingUnits(sketch(base, 64), sketch(dup, 64), 10); n != 1 {
		t.Fatalf("one duplicated row: %d differing units, want 1", n)
	}
}

// How often a legitimate difference of m or more units is refused (the
// lower bound falls short when three units share a bucket). Figures for
// docs/privacy.md: go test -run FalseRefusal -v ./internal/differencing.
func TestFalseRefusalRateNearTheThreshold(t *testing.T) {
	for _, m := range []int{5, 10, 25} {
		b := Buckets(m)
		for _, k := range []int{m, m + 2, 2 * m} {
			refused := 0
			const trials = 2000
			for trial := range trials {
				w := newWorld(uint64(trial*1000+k), 4*m)
				base := w.population(4*m, 2)
				if DifferingUnits(sketch(base, b), sketch(w.perturb(base, k), b), m) < m {
					refused++
				}
			}
			rate := float64(refused) / trials
			t.Logf("min_units %d, B %d: %d differing units refused in %.2f%% of trials", m, b, k, 100*rate)
			limit := map[bool]float64{true: 0.06, false: 0.01}[k == m]
			if rate > limit {
				t.Errorf("min_units %d, %d differing units: refused %.2f%% > %.0f%%", m, k, 100*rate, 100*limit)
			}
		}
	}
}

// Sketches at different bucket counts (a rule's min_units changed) are
// compared at the smaller one.
func TestFoldedComparison(t *testing.T) {
	w := newWorld(3, 300)
	base := w.population(300, 2)
	other := w.perturb(base, 4)
	small, big := sketch(base, 64), sketch(other, 256)
	if n := DifferingUnits(small, big, 0); n < 1 || n > 4 {
		t.Fatalf("folded: %d", n)
	}
	if n := DifferingUnits(sketch(base, 256), small, 0); n != 0 {
		t.Fatalf("same rows at two bucket counts differ by %d", n)
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	w := newWorld(1, 100)
	cells := []*Sketch{sketch(w.population(100, 2), 64), sketch(w.population(3, 1), 128), {B: 64}}
	b := EncodeAnswer("duckdb/1", cells)
	scheme, got, err := DecodeAnswer(b)
	if err != nil || scheme != "duckdb/1" || len(got) != 3 {
		t.Fatal(scheme, len(got), err)
	}
	for i := range cells {
		if DifferingUnits(cells[i], got[i], 0) != 0 || cells[i].Units != got[i].Units || cells[i].B != got[i].B {
			t.Fatalf("cell %d changed in encoding", i)
		}
	}
	for cut := range b {
		if _, _, err := DecodeAnswer(b[:cut]); err == nil {
			t.Fatalf("a truncation at %d decoded", cut)
		}
	}
	t.Logf("a full 64-bucket cell: %d bytes in memory, %d encoded", cells[0].Bytes(), len(cells[0].AppendEncoding(nil)))
}

func TestHistoryRefusesDifferencesAndSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHistory(st, nil)
	w := newWorld(11, 400)
	all := w.population(400, 3)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rel := func(id string, cells ...[]row) Release {
		c := Cells{Dataset: "tx", MinUnits: 10, Scheme: "s"}
		for _, r := range cells {
			c.Cells = append(c.Cells, sketch(r, 64))
		}
		at = at.Add(time.Minute)
		return Release{Agreement: "ag", RequestID: id, At: at, Datasets: []Cells{c}}
	}
	without := func(rows []row, units ...int) []row {
		var out []row
		for _, r := range rows {
			drop := false
			for _, u := range units {
				drop = drop || r.unit == u
			}
			if !drop {
				out = append(out, r)
			}
		}
		return out
	}
	conflict, rec, err := h.Check(ctx, rel("total", all))
	if conflict != nil || err != nil || len(rec) != 1 {
		t.Fatal(conflict, rec, err)
	}
	if err := h.Released(ctx, rec, 42); err != nil {
		t.Fatal(err)
	}
	// The total again: same rows, allowed, and a repeat takes no place.
	c, rec, _ := h.Check(ctx, rel("again", all))
	if c != nil || len(rec) != 0 {
		t.Fatalf("the same total: %+v, recorded %d", c, len(rec))
	}
	// The total without one unit: refused, naming the total's entry.
	c, _, _ = h.Check(ctx, rel("minus-one", without(all, 7)))
	if c == nil || c.Earlier == nil || c.Earlier.AuditIndex != 42 || c.Earlier.RequestID != "total" {
		t.Fatalf("total minus one unit: %+v", c)
	}
	// Twelve units fewer is allowed; then six of them back is within six
	// of both earlier answers and refused (three answers, each pair below
	// the threshold but one).
	twelve := without(all, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13)
	if c, _, _ := h.Check(ctx, rel("minus-twelve", twelve)); c != nil {
		t.Fatalf("twelve units fewer: %+v", c)
	}
	if c, _, _ := h.Check(ctx, rel("minus-six", without(all, 1, 2, 3, 4, 5, 6))); c == nil {
		t.Fatal("a cell six units from two earlier answers was allowed")
	}
	// Two cells of one answer that differ by a unit.
	if c, _, _ := h.Check(ctx, rel("split", without(all, 200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219), without(all, 200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220))); c == nil || c.Earlier != nil {
		t.Fatalf("two near cells of one answer: %+v", c)
	}
	st.Close()

	// A restart: a new process reads the history from the store.
	st2, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	h2 := NewHistory(st2, nil)
	c, _, _ = h2.Check(ctx, rel("after-restart", without(all, 9)))
	if c == nil || c.Earlier == nil || c.Earlier.RequestID != "total" || c.Earlier.AuditIndex != 42 {
		t.Fatalf("after a restart: %+v", c)
	}
	if s := h2.Stats(); s.Answers != 2 || s.Cells != 2 {
		t.Fatalf("stats after restart: %+v", s)
	}
	// A full history refuses what would add to it, instead of forgetting
	// the oldest: asking other questions cannot push the total out.
	other := func(id string, cells Cells, when time.Time) *Conflict {
		c, _, err := h2.Check(ctx, Release{Agreement: "ag", RequestID: id, At: when, Datasets: []Cells{cells}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	far := without(all, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 322, 323, 324, 325, 326, 327, 328, 329, 330, 331, 332, 333, 334, 335, 336, 337, 338, 339)
	capped := Cells{Dataset: "tx", MinUnits: 10, Scheme: "s", MaxAnswers: 2, Cells: []*Sketch{sketch(far, 64)}}
	if c := other("full", capped, at.Add(time.Hour)); c == nil || !c.Full {
		t.Fatalf("an answer beyond a full history: %+v", c)
	}
	capped.Cells = []*Sketch{sketch(all, 64)}
	if c := other("repeat", capped, at.Add(time.Hour)); c != nil {
		t.Fatalf("a repeat into a full history: %+v", c)
	}
	// Only time forgets: past the period, the total is no longer compared.
	aged := Cells{Dataset: "tx", MinUnits: 10, Scheme: "s", Period: 30 * time.Minute, Cells: []*Sketch{sketch(without(all, 7), 64)}}
	if c := other("later", aged, at.Add(2*time.Hour)); c != nil {
		t.Fatalf("the total is past its period but still refused: %+v", c)
	}
}

func TestModularArithmetic(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for range 100000 {
		a, b := rng.Uint64()%Prime, rng.Uint64()%Prime
		if got, want := mulMod(a, b), a*b%Prime; got != want {
			t.Fatalf("mulMod(%d, %d) = %d, want %d", a, b, got, want)
		}
		if got, want := subMod(uint32(a), uint32(b)), (a+Prime-b)%Prime; got != want {
			t.Fatalf("subMod(%d, %d) = %d, want %d", a, b, got, want)
		}
	}
	for _, x := range []uint64{0, 1, Prime - 1} {
		if mulMod(x, Prime-1) != x*(Prime-1)%Prime {
			t.Fatalf("edge %d", x)
		}
	}
}

// A self-join releases cells of two scans of one dataset: one history,
// locked once, and the two scans' cells are checked against each other.
func TestTwoScansOfOneDataset(t *testing.T) {
	ctx := context.Background()
	h := newTestHistory(t)
	w := newWorld(2, 100)
	all := w.population(100, 2)
	c := func(rows []row) Cells {
		return Cells{Dataset: "tx", MinUnits: 10, Scheme: "s", Cells: []*Sketch{sketch(rows, 64)}}
	}
	conflict, rec, err := h.Check(ctx, Release{Agreement: "ag", RequestID: "r", At: time.Now(), Datasets: []Cells{c(all), c(all)}})
	if conflict != nil || err != nil || len(rec) != 1 {
		t.Fatal(conflict, rec, err)
	}
	if c, _, _ := h.Check(ctx, Release{Agreement: "ag", RequestID: "r2", At: time.Now(), Datasets: []Cells{c(all), c(w.perturb(all, 1))}}); c == nil {
		t.Fatalf("a scan one unit from an earlier cell: %+v", c)
	}
}

// Goroutines of one process checking at once: of pairs that difference
// each other, at most one is answered, and nothing races.
func TestConcurrentChecks(t *testing.T) {
	ctx := context.Background()
	h := newTestHistory(t)
	w := newWorld(9, 200)
	all := w.population(200, 2)
	var wg sync.WaitGroup
	allowed := make([]bool, 8)
	for i := range allowed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows := all
			if i%2 == 1 {
				rows = w2perturb(all, i)
			}
			c := Cells{Dataset: "tx", MinUnits: 10, Scheme: "s", Cells: []*Sketch{sketch(rows, 64)}}
			conflict, _, err := h.Check(ctx, Release{Agreement: "ag", RequestID: strconv.Itoa(i), At: time.Now(), Datasets: []Cells{c}})
			if err != nil {
				t.Error(err)
			}
			allowed[i] = conflict == nil
		}()
	}
	wg.Wait()
	// The even ones are identical (the same rows); each odd one differs
	// from them by one unit. So either the evens or exactly one odd one.
	evens, odds := 0, 0
	for i, ok := range allowed {
		if ok && i%2 == 0 {
			evens++
		} else if ok {
			odds++
		}
	}
	if !(odds == 0 && evens == 4) && !(odds == 1 && evens == 0) {
		t.Fatalf("allowed %v: a differencing pair was answered", allowed)
	}
}

// w2perturb drops one row of unit i (deterministically, without the
// world's shared random source, which goroutines must not share).
func w2perturb(rows []row, unit int) []row {
	out := make([]row, 0, len(rows))
	dropped := false
	for _, r := range rows {
		if r.unit == unit && !dropped {
			dropped = true
			continue
		}
		out = append(out, r)
	}
	return out
}

// newTestHistory is a History over a fresh SQLite store.
func newTestHistory(t *testing.T) *History {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return NewHistory(st, nil)
}
