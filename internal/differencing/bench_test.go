package differencing

import "testing"

// BenchmarkCheck: one answer of 50 cells (groups of different sizes)
// against a history of 1,000 other answers whose cells have the same unit
// counts and other rows (random sums), the case where no earlier cell is
// passed over by its unit count.
func BenchmarkCheck(b *testing.B) {
	w := newWorld(1, 4100)
	var cells []*Sketch
	for g := range 50 {
		var rows []row
		for u := g * 80; u < g*80+40+g; u++ {
			rows = append(rows, w.row(u), w.row(u))
		}
		cells = append(cells, sketch(rows, 64))
	}
	x := &history{}
	for i := range 1000 {
		var other []*Sketch
		for _, c := range cells {
			o := *c
			o.Sums = append([]Sums(nil), c.Sums...)
			for j := range o.Sums {
				o.Sums[j] = Sums{uint32(w.rng.Uint64() % Prime), uint32(w.rng.Uint64() % Prime), uint32(w.rng.Uint64() % Prime), uint32(w.rng.Uint64() % Prime)}
			}
			other = append(other, &o)
		}
		x.addSketches(uint64(i+1), "s", other)
	}
	d := Cells{Dataset: "d", MinUnits: 10, Scheme: "s", Cells: cells}
	b.ResetTimer()
	for range b.N {
		if c := x.check(d); c != nil {
			b.Fatal("conflict")
		}
	}
}

// addSketches remembers an answer given as sketches.
func (x *history) addSketches(seq uint64, scheme string, sketches []*Sketch) {
	x.head = seq
	x.addAnswer(&answer{seq: seq, earlier: Earlier{seqNo: seq}}, scheme, sketches)
}
