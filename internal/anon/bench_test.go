package anon

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAdultLattice is the full search of the Adult lattice (9
// quasi-identifiers, 12,960 transformations) for the configurations of
// ARX's published optima.
func BenchmarkAdultLattice(b *testing.B) {
	tab, hs := loadAdult(b)
	for _, tc := range []struct {
		name   string
		models Models
		supp   float64
	}{
		{"k5-supp4", Models{K: 5}, 0.04},
		{"k5-supp0", Models{K: 5}, 0},
		{"k100-supp0", Models{K: 100}, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				p, err := NewProblem(tab, Config{QI: tab.Columns, Hierarchies: hs, Models: tc.models, MaxSuppression: tc.supp})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.Search(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMillionRows anonymises a generated table of 1,000,000 rows and
// 10 attributes (6 quasi-identifiers with 3–5 level hierarchies, 4 other
// columns) read from CSV, reporting the peak live heap: the representation
// is columnar (int32 codes), so memory is bytes per cell, not objects.
// AIRLOCK_BENCH_ROWS overrides the row count.
func BenchmarkMillionRows(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("AIRLOCK_BENCH_ROWS")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	path := filepath.Join(dir, "big.csv")
	hs := writeBigTable(b, path, n)
	qi := []string{"age", "zip", "sex", "education", "occupation", "country"}
	for b.Loop() {
		peak := trackPeakHeap()
		start := time.Now()
		tab, err := ReadTableFile(path)
		if err != nil {
			b.Fatal(err)
		}
		read := time.Since(start)
		p, err := NewProblem(tab, Config{QI: qi, Hierarchies: hs, Models: Models{K: 10}, MaxSuppression: 0.02})
		if err != nil {
			b.Fatal(err)
		}
		res, err := p.Search()
		if err != nil {
			b.Fatal(err)
		}
		mb := float64(peak()) / (1 << 20)
		b.ReportMetric(mb, "peak-heap-MB")
		b.ReportMetric(read.Seconds(), "read-s")
		b.ReportMetric(float64(p.Size()), "lattice")
		b.ReportMetric(float64(res.Evaluated), "evaluated")
	}
}

// trackPeakHeap samples the live heap every 5 ms until the returned
// function is called, which returns the peak in bytes.
func trackPeakHeap() func() uint64 {
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		return peak.Load()
	}
}

// writeBigTable writes n skewed rows of 10 columns and returns the
// quasi-identifiers' hierarchies.
func writeBigTable(b *testing.B, path string, n int) map[string]*Hierarchy {
	b.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	type col struct {
		name  string
		card  int
		group []int // fan-in per level above the leaves; nil: no hierarchy
	}
	cols := []col{
		{"age", 90, []int{5, 4}}, {"zip", 900, []int{10, 10, 9}}, {"sex", 2, []int{}}, {"education", 16, []int{4}},
		{"occupation", 14, []int{3}}, {"country", 40, []int{8}}, {"diagnosis", 200, nil}, {"income", 50, nil}, {"hours", 60, nil}, {"weight", 120, nil},
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	for i, c := range cols {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(c.name)
	}
	sb.WriteByte('\n')
	for r := range n {
		for i, c := range cols {
			if i > 0 {
				sb.WriteByte(',')
			}
			v := int(float64(c.card) * rng.Float64() * rng.Float64())
			sb.WriteString(strconv.Itoa(v))
		}
		sb.WriteByte('\n')
		if r%10000 == 0 {
			f.WriteString(sb.String())
			sb.Reset()
		}
	}
	f.WriteString(sb.String())
	f.Close()
	hs := map[string]*Hierarchy{}
	for _, c := range cols {
		if c.group == nil {
			continue
		}
		h := &Hierarchy{Column: c.name}
		for v := range c.card {
			row := []string{strconv.Itoa(v)}
			width := 1
			for _, g := range c.group {
				width *= g
				lo := v / width * width
				row = append(row, fmt.Sprintf("%d-%d", lo, lo+width-1))
			}
			row = append(row, "*")
			h.Rows = append(h.Rows, row)
		}
		hs[c.name] = h
	}
	return hs
}

// BenchmarkAdultStrategies runs both exact strategies side by side on the
// same problems, the figures behind Search's choice between them.
func BenchmarkAdultStrategies(b *testing.B) {
	tab, hs := loadAdult(b)
	for _, supp := range []float64{0, 0.04} {
		p, err := NewProblem(tab, Config{QI: tab.Columns, Hierarchies: hs, Models: Models{K: 5}, MaxSuppression: supp})
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range []struct {
			name string
			run  func() (Result, error)
		}{{"tagged", p.searchTagged}, {"walk", p.searchAll}} {
			b.Run(fmt.Sprintf("k5-supp%g/%s", supp*100, s.name), func(b *testing.B) {
				for b.Loop() {
					if _, err := s.run(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
