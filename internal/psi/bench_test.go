package psi

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

// benchSides: n keys a side, half of them shared.
func benchSides(n, width int) (mine, theirs []Item) {
	for i := range n {
		mine = append(mine, Item{Key: fmt.Appendf(nil, "DE%020d", i)})
		var cells []int64
		if width > 0 {
			cells = []int64{int64(i % 1000)}
		}
		theirs = append(theirs, Item{Key: fmt.Appendf(nil, "DE%020d", i+n/2), Cells: cells})
	}
	return
}

// playWire runs one session with every message encoded and decoded, and
// returns the bytes each way.
func playWire(b *testing.B, mine, theirs []Item, width int) (toHelper, toMatcher int) {
	s := session()
	m, _ := NewParty(s, width, 1<<22)
	h, _ := NewParty(s, width, 1<<22)
	m.Join(h.Public())
	h.Join(m.Public())
	wire := func(msg *Message, kind Kind, n *int) *Message {
		enc, _ := msg.MarshalBinary()
		*n += len(enc)
		out, err := Decode(enc, kind, s, 1<<22)
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	mi, err := m.Items(mine, 0)
	if err != nil {
		b.Fatal(err)
	}
	re, _ := h.Reblind(wire(mi, KindItems, &toHelper))
	re = wire(re, KindReblinded, &toMatcher)
	hi, _ := h.Items(theirs, 0)
	hi = wire(hi, KindItems, &toMatcher)
	cells, n, err := m.Match(re, hi)
	if err != nil || n != len(mine)/2 {
		b.Fatalf("%d matches, %v", n, err)
	}
	if width > 0 {
		cells, _ = m.Noise(cells, make([]int64, width))
		cm := wire(m.CellsMessage(cells), KindCells, &toHelper)
		cells, _ = h.Noise(cm.Cipher, make([]int64, width))
		cm = wire(h.CellsMessage(cells), KindCells, &toMatcher)
		pm := wire(h.PartialsMessage(h.Partials(cm.Cipher)), KindPartials, &toMatcher)
		if _, err := m.Decrypt(cm.Cipher, pm.Points); err != nil {
			b.Fatal(err)
		}
	}
	return
}

// BenchmarkPSI: cardinality-only PSI of n × n identifiers, both parties in
// one process on the machine's cores, versus the plain hashed-identifier
// join (which leaks every identifier's hash).
func BenchmarkPSI(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		mine, theirs := benchSides(n, 0)
		b.Run(fmt.Sprintf("ecdh/n=%d", n), func(b *testing.B) {
			for b.Loop() {
				up, down := playWire(b, mine, theirs, 0)
				b.ReportMetric(float64(up+down)/1e6, "wire-MB")
			}
		})
		b.Run(fmt.Sprintf("plain-sha256/n=%d", n), func(b *testing.B) {
			for b.Loop() {
				plainJoin(b, mine, theirs)
			}
		})
	}
}

// BenchmarkIntersectionSum: the helper's values summed over the
// intersection of n × n identifiers (Private Join and Compute's task).
func BenchmarkIntersectionSum(b *testing.B) {
	n := 100_000
	mine, theirs := benchSides(n, 1)
	b.Run(fmt.Sprintf("elgamal/n=%d", n), func(b *testing.B) {
		for b.Loop() {
			up, down := playWire(b, mine, theirs, 1)
			b.ReportMetric(float64(up+down)/1e6, "wire-MB")
		}
	})
	b.Run(fmt.Sprintf("plain-sha256/n=%d", n), func(b *testing.B) {
		for b.Loop() {
			plainJoin(b, mine, theirs)
		}
	})
}

func plainJoin(b *testing.B, mine, theirs []Item) {
	idx := make(map[[32]byte]struct{}, len(mine))
	for _, it := range mine {
		idx[sha256.Sum256(it.Key)] = struct{}{}
	}
	var n int
	var sum int64
	for _, it := range theirs {
		if _, ok := idx[sha256.Sum256(it.Key)]; ok {
			n++
			if len(it.Cells) > 0 {
				sum += it.Cells[0]
			}
		}
	}
	if n != len(mine)/2 {
		b.Fatal(n)
	}
	b.ReportMetric(float64(64*len(mine))/1e6, "wire-MB")
}
