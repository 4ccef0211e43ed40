package differencing

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"math/bits"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/airlock-dev/airlock/internal/store"
)

// Cells are one answer's released cells of one dataset, to check and
// remember. MinUnits is the dataset's rule. Period is how long an answer
// is remembered (zero: for ever), the only way one is forgotten: a bound
// on the count would let the analyst push the answer they want to
// subtract from out of the history by asking others. MaxAnswers caps
// what the history holds instead: an answer that would add to a full
// history is refused (zero: no cap).
type Cells struct {
	Dataset    string
	MinUnits   int
	MaxAnswers int
	Period     time.Duration
	// Scheme names how the engine hashed rows and units (engine and
	// version): sketches of different schemes are not comparable, so a
	// history compares only the cells of its own scheme.
	Scheme string
	Cells  []*Sketch
	// Withheld are cells that met the threshold but were not released
	// (the analyst's HAVING, LIMIT or OFFSET left them out): compared
	// like Cells, since whether they are released is a function of the
	// data, but not remembered, since nothing of them left.
	Withheld []*Sketch
}

// Release is one answer to check and, if it passes, remember.
type Release struct {
	Agreement string
	RequestID string
	At        time.Time
	Datasets  []Cells
}

// Conflict says which earlier answer a refused one would combine with.
// Earlier is nil when two cells of the refused answer itself differ in
// too few units. Full is set instead when the answer passed the check
// but the history holds MaxAnswers answers already.
type Conflict struct {
	Dataset    string
	MinUnits   int
	Earlier    *Earlier
	Full       bool
	MaxAnswers int
}

// Earlier is a remembered answer: its audit entry when known (Audited;
// not when the entry was not yet recorded) and its request id.
type Earlier struct {
	Audited    bool
	AuditIndex uint64
	RequestID  string
	At         time.Time
	seqNo      uint64
}

// Recorded names the history records an allowed answer was stored as,
// so the audit index of its entry can be attached once it is known.
type Recorded []store.ReleaseRecord

// History is the differencing check over the store's release histories:
// what the store holds, decoded and cached in memory per history, and
// brought up to date inside the store's lock on every check.
type History struct {
	store store.Store
	log   *slog.Logger
	mu    sync.Mutex
	keys  map[store.ReleaseKey]*history
}

// NewHistory returns the check over s.
func NewHistory(s store.Store, log *slog.Logger) *History {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &History{store: s, log: log, keys: map[store.ReleaseKey]*history{}}
}

// history is one (agreement, dataset) history as cached: answers in Seq
// order, and their distinct cells in groups by unit count. An answer
// that repeats an earlier cell (the same rows) adds a reference to it,
// not a second copy: comparing with one copy is comparing with both.
type history struct {
	mu      sync.Mutex
	head    uint64 // last Seq held
	answers []*answer
	groups  map[int64]*group // by Units / unitWidth
	byKey   map[[32]byte]*cell
}

// unitWidth is the span of unit counts one group holds.
const unitWidth = 16

// group holds the cells of nearby unit counts, with their heads in one
// array so that a check scans them in contiguous memory.
type group struct {
	cells []*cell
	heads []head
}

type answer struct {
	seq     uint64
	earlier Earlier
	cells   []*cell
}

// cell is a distinct remembered sketch of one scheme, with the answers
// that released it (the newest one is named in a refusal).
type cell struct {
	key     [32]byte
	scheme  string
	sketch  *Sketch
	answers []*answer // ascending seq
}

func (h *History) history(k store.ReleaseKey) *history {
	h.mu.Lock()
	defer h.mu.Unlock()
	x := h.keys[k]
	if x == nil {
		x = &history{}
		h.keys[k] = x
	}
	return x
}

// errConflict rolls back the store's transaction when the check refuses.
var errConflict = errors.New("differencing conflict")

// Check refuses r if one of its cells, beside a remembered cell of the
// same agreement and dataset or another of its own cells, isolates fewer
// than MinUnits units; otherwise it remembers r's cells. The check and
// the append are one transaction under the histories' lock, across every
// replica sharing the store.
func (h *History) Check(ctx context.Context, r Release) (*Conflict, Recorded, error) {
	if len(r.Datasets) == 0 {
		return nil, nil, nil
	}
	// One entry per dataset (a self-join has two scans of one), in order.
	var ds []Cells
	for _, d := range r.Datasets {
		if i := slices.IndexFunc(ds, func(x Cells) bool { return x.Dataset == d.Dataset }); i >= 0 {
			ds[i].Cells = append(slices.Clip(ds[i].Cells), d.Cells...)
			ds[i].Withheld = append(slices.Clip(ds[i].Withheld), d.Withheld...)
			continue
		}
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(a, b Cells) int { return cmp.Compare(a.Dataset, b.Dataset) })
	hs := make([]*history, len(ds))
	locks := make([]store.ReleaseAppend, len(ds))
	for i, d := range ds {
		k := store.ReleaseKey{Agreement: r.Agreement, Dataset: d.Dataset}
		hs[i] = h.history(k)
		hs[i].mu.Lock() // in dataset order, as the store locks
		defer hs[i].mu.Unlock()
		locks[i] = store.ReleaseAppend{Key: k, After: hs[i].head}
		if d.Period > 0 {
			locks[i].Since = r.At.Add(-d.Period)
		}
	}
	var conflict *Conflict
	added, err := h.store.RecordReleases(ctx, locks, func(newer []store.ReleaseRecord) ([]store.ReleaseRecord, error) {
		for _, rec := range newer {
			i := slices.IndexFunc(locks, func(l store.ReleaseAppend) bool { return l.Key == rec.Key })
			hs[i].add(rec, h.log)
		}
		var out []store.ReleaseRecord
		for i, d := range ds {
			hs[i].prune(locks[i].Since)
			if conflict = hs[i].check(d); conflict != nil {
				return nil, errConflict
			}
			if hs[i].knows(d.Scheme, d.Cells) {
				// A repeat (every cell already remembered) adds nothing to
				// compare with, and takes no place in the history.
				continue
			}
			if d.MaxAnswers > 0 && len(hs[i].answers) >= d.MaxAnswers {
				conflict = &Conflict{Dataset: d.Dataset, MinUnits: d.MinUnits, Full: true, MaxAnswers: d.MaxAnswers}
				return nil, errConflict
			}
			out = append(out, store.ReleaseRecord{Key: locks[i].Key, RequestID: r.RequestID, At: r.At, Body: EncodeAnswer(d.Scheme, d.Cells)})
		}
		return out, nil
	})
	if conflict != nil {
		if e := conflict.Earlier; e != nil && !e.Audited {
			// Released by another replica whose index we have not seen.
			if idx, ok, err := h.store.ReleaseAuditIndex(ctx, store.ReleaseKey{Agreement: r.Agreement, Dataset: conflict.Dataset}, e.seq()); err == nil && ok {
				e.Audited, e.AuditIndex = true, idx
			}
		}
		return conflict, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, rec := range added {
		i := slices.IndexFunc(locks, func(l store.ReleaseAppend) bool { return l.Key == rec.Key })
		hs[i].add(rec, h.log)
	}
	return nil, added, nil
}

// Released attaches the audit index of the entry that released rec.
func (h *History) Released(ctx context.Context, rec Recorded, index uint64) error {
	var errs []error
	for _, r := range rec {
		x := h.history(r.Key)
		x.mu.Lock()
		for _, a := range x.answers {
			if a.seq == r.Seq {
				a.earlier.Audited, a.earlier.AuditIndex = true, index
			}
		}
		x.mu.Unlock()
		errs = append(errs, h.store.SetReleaseAuditIndex(ctx, r.Key, r.Seq, index))
	}
	return errors.Join(errs...)
}

// seq is carried in Earlier only for the lookup above.
func (e *Earlier) seq() uint64 { return e.seqNo }

func (x *history) add(rec store.ReleaseRecord, log *slog.Logger) {
	if rec.Seq <= x.head {
		return
	}
	x.head = rec.Seq
	scheme, sketches, err := DecodeAnswer(rec.Body)
	if err != nil {
		// Never silently forgotten: the record stays counted by head, and
		// the operator hears of it.
		log.Error("differencing: a stored release does not decode; it is not compared against", "agreement", rec.Key.Agreement, "dataset", rec.Key.Dataset, "seq", rec.Seq, "err", err)
		return
	}
	x.addAnswer(&answer{seq: rec.Seq, earlier: Earlier{Audited: rec.Audited, AuditIndex: rec.AuditIndex, RequestID: rec.RequestID, At: rec.At, seqNo: rec.Seq}}, scheme, sketches)
}

func (x *history) addAnswer(a *answer, scheme string, sketches []*Sketch) {
	if x.byKey == nil {
		x.byKey, x.groups = map[[32]byte]*cell{}, map[int64]*group{}
	}
	for _, s := range sketches {
		k := cellKey(scheme, s)
		c := x.byKey[k]
		if c == nil {
			c = &cell{key: k, scheme: scheme, sketch: s}
			x.byKey[k] = c
			g := x.groups[s.Units/unitWidth]
			if g == nil {
				g = &group{}
				x.groups[s.Units/unitWidth] = g
			}
			g.cells, g.heads = append(g.cells, c), append(g.heads, headOf(s))
		}
		if n := len(c.answers); n == 0 || c.answers[n-1] != a {
			c.answers = append(c.answers, a)
			a.cells = append(a.cells, c)
		}
	}
	x.answers = append(x.answers, a)
}

func cellKey(scheme string, s *Sketch) [32]byte {
	return sha256.Sum256(s.AppendEncoding([]byte(scheme + "\x00")))
}

// knows reports whether every one of cells is remembered already.
func (x *history) knows(scheme string, cells []*Sketch) bool {
	for _, c := range cells {
		if _, ok := x.byKey[cellKey(scheme, c)]; !ok {
			return false
		}
	}
	return true
}

// prune drops what the store prunes, the answers older than since, and
// the cells no remaining answer released.
func (x *history) prune(since time.Time) {
	drop := func(a *answer) bool { return !since.IsZero() && a.earlier.At.Before(since) }
	n := 0
	for _, a := range x.answers {
		if !drop(a) {
			break // answers are in seq and (nearly) time order
		}
		n++
	}
	if n == 0 {
		return
	}
	gone := map[*cell]bool{}
	for _, a := range x.answers[:n] {
		for _, c := range a.cells {
			c.answers = slices.DeleteFunc(c.answers, func(b *answer) bool { return b == a })
			if len(c.answers) == 0 {
				gone[c] = true
				delete(x.byKey, c.key)
			}
		}
	}
	x.answers = slices.Delete(x.answers, 0, n)
	for c := range gone {
		g := x.groups[c.sketch.Units/unitWidth]
		i := slices.Index(g.cells, c)
		last := len(g.cells) - 1
		g.cells[i], g.heads[i] = g.cells[last], g.heads[last]
		g.cells, g.heads = g.cells[:last], g.heads[:last]
		if last == 0 {
			delete(x.groups, c.sketch.Units/unitWidth)
		}
	}
}

// check compares each new cell with every distinct remembered cell of
// the same scheme, and with the answer's other cells. Only cells whose
// unit counts are within MinUnits of each other need their sketches
// compared: a larger gap is itself that many differing units.
func (x *history) check(d Cells) *Conflict {
	m := d.MinUnits
	own := append(slices.Clone(d.Cells), d.Withheld...)
	slices.SortFunc(own, func(a, b *Sketch) int { return cmp.Compare(a.Units, b.Units) })
	ownCells := make([]*cell, len(own))
	for i, s := range own {
		ownCells[i] = &cell{scheme: d.Scheme, sketch: s}
	}
	near := func(cells []*cell, c *Sketch) (int, int) {
		by := func(x *cell, u int64) int { return cmp.Compare(x.sketch.Units, u) }
		lo, _ := slices.BinarySearchFunc(cells, c.Units-int64(m)+1, by)
		hi, _ := slices.BinarySearchFunc(cells, c.Units+int64(m), by)
		return lo, hi
	}
	for i, c := range own {
		lo, hi := near(ownCells[i+1:], c)
		for _, o := range ownCells[i+1:][lo:hi] {
			if n := DifferingUnits(c, o.sketch, m); n > 0 && n < m {
				return &Conflict{Dataset: d.Dataset, MinUnits: m}
			}
		}
		ch := headOf(c)
		for gk := (c.Units - int64(m) + 1) / unitWidth; gk <= (c.Units+int64(m)-1)/unitWidth; gk++ {
			g := x.groups[gk]
			if g == nil {
				continue
			}
			if conflict := x.checkGroup(d, c, &ch, g); conflict != nil {
				return conflict
			}
		}
	}
	return nil
}

// checkGroup compares a new cell with one group's cells.
func (x *history) checkGroup(d Cells, c *Sketch, ch *head, g *group) *Conflict {
	m := d.MinUnits
	for k := range g.heads {
		h := &g.heads[k]
		if u := h.units - c.Units; u >= int64(m) || -u >= int64(m) {
			continue // that many units differ
		}
		if h.b == ch.b && (bits.OnesCount64(h.pres^ch.pres) >= m || headUnits(ch, h, m) >= m) {
			continue // different enough in the first buckets alone
		}
		o := g.cells[k]
		if o.scheme != d.Scheme {
			continue
		}
		if n := DifferingUnits(c, o.sketch, m); n > 0 && n < m {
			e := o.answers[len(o.answers)-1].earlier // the most recent
			return &Conflict{Dataset: d.Dataset, MinUnits: m, Earlier: &e}
		}
	}
	return nil
}

// Stats is what a history holds, for metrics and benchmarks.
type Stats struct {
	Answers, Cells, Bytes int
}

// Stats sums the cached histories; Cells and Bytes count distinct cells.
func (h *History) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s Stats
	for _, x := range h.keys {
		x.mu.Lock()
		s.Answers += len(x.answers)
		for _, g := range x.groups {
			s.Cells += len(g.cells)
			for _, c := range g.cells {
				s.Bytes += c.sketch.Bytes() + int(unsafe.Sizeof(head{}))
			}
		}
		x.mu.Unlock()
	}
	return s
}
