package psi

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"github.com/airlock-dev/airlock/internal/dp"
)

// run plays a whole session between a matcher and a helper in one
// process, recording every message as sent on the wire.
type transcript [][]byte

func (t *transcript) wire(tb testing.TB, m *Message, kind Kind, session [16]byte) *Message {
	tb.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	*t = append(*t, b)
	out, err := Decode(b, kind, session, 1<<22)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func session() [16]byte {
	var s [16]byte
	rand.Read(s[:])
	return s
}

type result struct {
	cells   []int64
	matches int
	tr      transcript
}

func run(tb testing.TB, width int, mine, theirs []Item, padM, padH int, noiseM, noiseH []int64) result {
	tb.Helper()
	s := session()
	m, err := NewParty(s, width, 1<<22)
	if err != nil {
		tb.Fatal(err)
	}
	h, _ := NewParty(s, width, 1<<22)
	if err := m.Join(h.Public()); err != nil {
		tb.Fatal(err)
	}
	if err := h.Join(m.Public()); err != nil {
		tb.Fatal(err)
	}
	var tr transcript
	mi, err := m.Items(mine, padM)
	if err != nil {
		tb.Fatal(err)
	}
	mi = tr.wire(tb, mi, KindItems, s)
	re, err := h.Reblind(mi)
	if err != nil {
		tb.Fatal(err)
	}
	re = tr.wire(tb, re, KindReblinded, s)
	hi, err := h.Items(theirs, padH)
	if err != nil {
		tb.Fatal(err)
	}
	hi = tr.wire(tb, hi, KindItems, s)
	cells, n, err := m.Match(re, hi)
	if err != nil {
		tb.Fatal(err)
	}
	if noiseM == nil {
		noiseM = make([]int64, width)
		noiseH = make([]int64, width)
	}
	cells, _ = m.Noise(cells, noiseM)
	cm := tr.wire(tb, m.CellsMessage(cells), KindCells, s)
	cells, _ = h.Noise(cm.Cipher, noiseH)
	cm = tr.wire(tb, h.CellsMessage(cells), KindCells, s)
	pm := tr.wire(tb, h.PartialsMessage(h.Partials(cm.Cipher)), KindPartials, s)
	out, err := m.Decrypt(cm.Cipher, pm.Points)
	if err != nil {
		tb.Fatal(err)
	}
	return result{out, n, tr}
}

// randomSides builds two key sets with a known overlap, a group label on
// the matcher's side (one-hot cells) and a bounded value on the helper's.
func randomSides(r *mrand.Rand, nM, nH, overlap, groups int) (mine, theirs []Item, want []int64, keysM, keysH [][]byte) {
	width := 2 * groups // per group: count (from the matcher), sum (from the helper)
	label := map[string]int{}
	for i := range nM {
		k := fmt.Appendf(nil, "DE%020d", i)
		g := r.IntN(groups)
		label[string(k)] = g
		cells := make([]int64, width)
		cells[2*g] = 1
		mine = append(mine, Item{Key: k, Cells: cells})
		keysM = append(keysM, k)
	}
	want = make([]int64, width)
	for j := range nH {
		var k []byte
		if j < overlap {
			k = keysM[r.IntN(nM)]
			if _, dup := seen(theirs, k); dup {
				k = fmt.Appendf(nil, "FR%020d", j)
			}
		} else {
			k = fmt.Appendf(nil, "FR%020d", j)
		}
		v := r.Int64N(10000)
		cells := make([]int64, width)
		cells[width-1] = v // an ungrouped sum of the helper's values
		theirs = append(theirs, Item{Key: k, Cells: cells})
		keysH = append(keysH, k)
		if g, ok := label[string(k)]; ok {
			want[2*g]++
			want[width-1] += v
		}
	}
	return
}

func seen(items []Item, k []byte) (int, bool) {
	for i, it := range items {
		if bytes.Equal(it.Key, k) {
			return i, true
		}
	}
	return 0, false
}

// TestMatchesPlainJoin: on random data the protocol's cells equal a plain
// join computed in the clear, with both sides' payloads added, padding
// points and dummy pools changing nothing but sizes and the match count.
func TestMatchesPlainJoin(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	for _, c := range []struct{ nM, nH, overlap, groups, padM, padH int }{
		{1, 1, 1, 1, 0, 0},
		{50, 80, 0, 3, 5, 7},
		{300, 200, 120, 4, 17, 0},
		{1000, 1000, 500, 5, 40, 40},
	} {
		mine, theirs, want, _, _ := randomSides(r, c.nM, c.nH, c.overlap, c.groups)
		got := run(t, 2*c.groups, mine, theirs, c.padM, c.padH, nil, nil)
		if fmt.Sprint(got.cells) != fmt.Sprint(want) {
			t.Errorf("%+v: cells %v, plain join %v", c, got.cells, want)
		}
		var overlap int64
		for g := range c.groups {
			overlap += want[2*g]
		}
		if int64(got.matches) != overlap {
			t.Errorf("%+v: %d matches, plain join %d", c, got.matches, overlap)
		}
	}
}

// TestDummyPoolBlursMatches: the helper's noisy subset of the pool adds
// matches (and nothing to the cells), so the matcher's count is shifted by
// a noisy amount.
func TestDummyPoolBlursMatches(t *testing.T) {
	r := mrand.New(mrand.NewPCG(3, 4))
	mine, theirs, want, _, _ := randomSides(r, 100, 100, 40, 2)
	s := dp.NewSampler(nil)
	sigma2 := 4.0
	pool := PoolSize(sigma2)
	extra := NoisyCount(s, sigma2)
	if extra < 0 || extra > pool {
		t.Fatalf("noisy count %d outside 0..%d", extra, pool)
	}
	// run() draws its own session; play it by hand so the pool is keyed to it.
	sess := session()
	m, _ := NewParty(sess, 4, 1<<20)
	h, _ := NewParty(sess, 4, 1<<20)
	m.Join(h.Public())
	h.Join(m.Public())
	mi, err := m.Items(append(mine, Pool(sess, pool, 4)...), 0)
	if err != nil {
		t.Fatal(err)
	}
	re, _ := h.Reblind(mi)
	hi, _ := h.Items(append(theirs, Pool(sess, pool, 4)[:extra]...), 0)
	cells, n, err := m.Match(re, hi)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Decrypt(cells, h.Partials(cells))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out) != fmt.Sprint(want) {
		t.Errorf("cells %v, plain join %v", out, want)
	}
	if n != int(want[0]+want[2])+extra {
		t.Errorf("%d matches, want %d true + %d dummies", n, want[0]+want[2], extra)
	}
}

// TestNoiseAddsUp: each party's noise lands in the decrypted cells, signed
// values included.
func TestNoiseAddsUp(t *testing.T) {
	mine := []Item{{Key: []byte("a"), Cells: []int64{1, 0}}}
	theirs := []Item{{Key: []byte("a"), Cells: []int64{0, 7}}}
	got := run(t, 2, mine, theirs, 0, 0, []int64{-5, 3}, []int64{2, -20})
	if got.cells[0] != 1-5+2 || got.cells[1] != 7+3-20 {
		t.Errorf("cells %v", got.cells)
	}
}

// TestTranscriptShowsNoIdentifier: no message carries an identifier, its
// plain hash, its plain hash-to-group point or the same blinded point in
// two sessions.
func TestTranscriptShowsNoIdentifier(t *testing.T) {
	r := mrand.New(mrand.NewPCG(5, 6))
	mine, theirs, _, keysM, keysH := randomSides(r, 200, 200, 100, 2)
	a := run(t, 4, mine, theirs, 3, 3, nil, nil)
	b := run(t, 4, mine, theirs, 3, 3, nil, nil)
	all := append(append([][]byte{}, keysM...), keysH...)
	forbidden := map[string]string{}
	for _, k := range all {
		forbidden[string(k)] = "the identifier"
		h := sha256.Sum256(k)
		forbidden[string(h[:])] = "its SHA-256"
		var zero [16]byte
		p := encode(hashKey(zero, k))
		forbidden[string(p[:])] = "its unblinded point"
	}
	for _, tr := range []transcript{a.tr, b.tr} {
		for i, msg := range tr {
			for f, what := range forbidden {
				if bytes.Contains(msg, []byte(f)) {
					t.Fatalf("message %d carries %s", i, what)
				}
			}
		}
	}
	// A blinded point never recurs across sessions.
	points := map[[pointSize]byte]bool{}
	for _, msg := range a.tr[:3] {
		m, _ := Decode(msg, Kind(msg[len(magic)]), [16]byte(msg[len(magic)+1:]), 1<<22)
		for _, p := range m.Points {
			points[p] = true
		}
	}
	for _, msg := range b.tr[:3] {
		m, _ := Decode(msg, Kind(msg[len(magic)]), [16]byte(msg[len(magic)+1:]), 1<<22)
		for _, p := range m.Points {
			if points[p] {
				t.Fatal("a blinded point of one session recurs in another")
			}
		}
	}
}

// TestMalformedMessagesRefused: truncation, wrong kind, wrong session, an
// oversized count, a non-canonical point.
func TestMalformedMessagesRefused(t *testing.T) {
	s := session()
	m, _ := NewParty(s, 1, 100)
	h, _ := NewParty(s, 1, 100)
	m.Join(h.Public())
	h.Join(m.Public())
	msg, _ := m.Items([]Item{{Key: []byte("x"), Cells: []int64{1}}}, 2)
	b, _ := msg.MarshalBinary()
	if _, err := Decode(b, KindItems, s, 100); err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"truncated": b[:len(b)-1],
		"trailing":  append(append([]byte{}, b...), 0),
		"header":    append([]byte("XPSI"), b[4:]...),
	}
	nonCanonical := append([]byte{}, b...)
	copy(nonCanonical[headerSize:], bytes.Repeat([]byte{0xff}, 32))
	bad["non-canonical point"] = nonCanonical
	for name, x := range bad {
		mm, err := Decode(x, KindItems, s, 100)
		if err == nil && name == "non-canonical point" {
			// points are checked where used
			_, err = h.Reblind(mm)
		}
		if !errors.Is(err, ErrMessage) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Decode(b, KindReblinded, s, 100); !errors.Is(err, ErrMessage) {
		t.Errorf("wrong kind: %v", err)
	}
	if _, err := Decode(b, KindItems, session(), 100); !errors.Is(err, ErrMessage) {
		t.Errorf("wrong session: %v", err)
	}
	if _, err := Decode(b, KindItems, s, 2); !errors.Is(err, ErrMessage) {
		t.Errorf("too many points: %v", err)
	}
	if err := m.Join(m.Public()); !errors.Is(err, ErrMessage) {
		t.Errorf("own key share echoed back: %v", err)
	}
	// A rogue key: pk' = x·G − pk_M makes the joint key x·G, which the
	// helper alone could open; without knowing pk''s secret it cannot prove it.
	x := randomScalar()
	pkM, _ := decode(m.key.Public)
	rogue := encode(grp.NewElement().Add(genTable.mul(x), grp.NewElement().Neg(pkM)))
	forged := h.Public()
	copy(forged[:pointSize], rogue[:])
	if err := m.Join(forged); !errors.Is(err, ErrMessage) {
		t.Errorf("rogue key share accepted: %v", err)
	}
	// A proof made for another session does not carry over.
	other, _ := NewParty(session(), 1, 100)
	replayed := other.Public()
	if err := m.Join(replayed); !errors.Is(err, ErrMessage) {
		t.Errorf("a key share proved for another session accepted: %v", err)
	}
}

func TestDiscreteLogRange(t *testing.T) {
	a, b := NewKeyShare(), NewKeyShare()
	k, _ := Joint(a.Public, b.Public)
	for _, v := range []int64{0, 1, -1, babySteps - 1, babySteps, -babySteps - 3, 123456789, -987654321} {
		ct := k.Encrypt(v)
		out, err := Open(ct, a.Partial(ct), b.Partial(ct))
		if err != nil || out != v {
			t.Errorf("%d decodes to %d, %v", v, out, err)
		}
	}
}
