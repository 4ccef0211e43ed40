package differencing

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
)

// Cells are one answer's released cells of one dataset, to check and
// remember. MinUnits is the dataset's rule; Keep and Period bound its
// history (zero: unbounded).
type Cells struct {
	Dataset  string
	MinUnits int
	Keep     int
	Period   time.Duration
	// Scheme names how the engine hashed rows and units (engine and
	// version): sketches of different schemes are not comparable, so a
	// history compares only the cells of its own scheme.
	Scheme string
	Cells  []*Sketch
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
// too few units.
type Conflict struct {
	Dataset  string
	MinUnits int
	Earlier  *Earlier
}

// Earlier is a remembered answer: its audit entry when known (0 when the
// entry was not yet recorded) and its request id.
type Earlier struct {
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
// order, each with its cells sorted by unit count.
type history struct {
	mu      sync.Mutex
	head    uint64 // last Seq held
	answers []*answer
}

type answer struct {
	seq     uint64
	earlier Earlier
	scheme  string
	cells   []*Sketch // sorted by Units
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
	ds := slices.Clone(r.Datasets)
	slices.SortFunc(ds, func(a, b Cells) int { return cmp.Compare(a.Dataset, b.Dataset) })
	hs := make([]*history, len(ds))
	locks := make([]store.ReleaseAppend, len(ds))
	for i, d := range ds {
		k := store.ReleaseKey{Agreement: r.Agreement, Dataset: d.Dataset}
		hs[i] = h.history(k)
		hs[i].mu.Lock() // in dataset order, as the store locks
		defer hs[i].mu.Unlock()
		locks[i] = store.ReleaseAppend{Key: k, After: hs[i].head, Keep: d.Keep}
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
			hs[i].prune(d.Keep, locks[i].Since)
			if conflict = hs[i].check(d); conflict != nil {
				return nil, errConflict
			}
			out = append(out, store.ReleaseRecord{Key: locks[i].Key, RequestID: r.RequestID, At: r.At, Body: EncodeAnswer(d.Scheme, d.Cells)})
		}
		return out, nil
	})
	if conflict != nil {
		if e := conflict.Earlier; e != nil && e.AuditIndex == 0 {
			// Released by another replica whose index we have not seen.
			if idx, err := h.store.ReleaseAuditIndex(ctx, store.ReleaseKey{Agreement: r.Agreement, Dataset: conflict.Dataset}, e.seq()); err == nil {
				e.AuditIndex = idx
			}
		}
		return conflict, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for i, rec := range added {
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
				a.earlier.AuditIndex = index
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
	scheme, cells, err := DecodeAnswer(rec.Body)
	if err != nil {
		// Never silently forgotten: the record stays counted by head, and
		// the operator hears of it.
		log.Error("differencing: a stored release does not decode; it is not compared against", "agreement", rec.Key.Agreement, "dataset", rec.Key.Dataset, "seq", rec.Seq, "err", err)
		return
	}
	slices.SortFunc(cells, func(a, b *Sketch) int { return cmp.Compare(a.Units, b.Units) })
	x.answers = append(x.answers, &answer{seq: rec.Seq, scheme: scheme, cells: cells,
		earlier: Earlier{AuditIndex: rec.AuditIndex, RequestID: rec.RequestID, At: rec.At, seqNo: rec.Seq}})
}

// prune drops what the store prunes: all but the last keep answers, and
// those older than since.
func (x *history) prune(keep int, since time.Time) {
	x.answers = slices.DeleteFunc(x.answers, func(a *answer) bool {
		return (keep > 0 && a.seq+uint64(keep) <= x.head) || (!since.IsZero() && a.earlier.At.Before(since))
	})
}

// check compares each new cell with the cells of every remembered answer
// of the same scheme, and with the answer's other cells. Only cells whose
// unit counts are within MinUnits of each other need their sketches
// compared: a larger gap is itself that many differing units.
func (x *history) check(d Cells) *Conflict {
	m := d.MinUnits
	near := func(cells []*Sketch, c *Sketch) []*Sketch {
		lo, _ := slices.BinarySearchFunc(cells, c.Units-int64(m)+1, func(s *Sketch, u int64) int { return cmp.Compare(s.Units, u) })
		hi, _ := slices.BinarySearchFunc(cells, c.Units+int64(m), func(s *Sketch, u int64) int { return cmp.Compare(s.Units, u) })
		return cells[lo:hi]
	}
	own := slices.Clone(d.Cells)
	slices.SortFunc(own, func(a, b *Sketch) int { return cmp.Compare(a.Units, b.Units) })
	for i, c := range own {
		for _, o := range near(own[i+1:], c) {
			if n := DifferingUnits(c, o, m); n > 0 && n < m {
				return &Conflict{Dataset: d.Dataset, MinUnits: m}
			}
		}
		for j := len(x.answers) - 1; j >= 0; j-- { // the most recent first
			a := x.answers[j]
			if a.scheme != d.Scheme {
				continue
			}
			for _, o := range near(a.cells, c) {
				if n := DifferingUnits(c, o, m); n > 0 && n < m {
					e := a.earlier
					return &Conflict{Dataset: d.Dataset, MinUnits: m, Earlier: &e}
				}
			}
		}
	}
	return nil
}

// Stats is what a history holds, for metrics and benchmarks.
type Stats struct {
	Answers, Cells, Bytes int
}

// Stats sums the cached histories.
func (h *History) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s Stats
	for _, x := range h.keys {
		x.mu.Lock()
		s.Answers += len(x.answers)
		for _, a := range x.answers {
			s.Cells += len(a.cells)
			for _, c := range a.cells {
				s.Bytes += c.Bytes()
			}
		}
		x.mu.Unlock()
	}
	return s
}
