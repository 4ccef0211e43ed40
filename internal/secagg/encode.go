package secagg

import (
	"encoding/binary"
	"maps"
	"slices"
)

// The wire form of every message: a kind byte, the round id, then the
// fields in a fixed order, big-endian, with every length checked against
// the round's parameters on decoding. Nothing is decoded by reflection.
const (
	kindKeys byte = iota + 1
	kindKeyList
	kindShares
	kindMasked
	kindSurvivors
	kindConsents
	kindUnmasking
)

const (
	keyBytes    = 32 // an X25519 public key
	sigBytes    = 64 // an ed25519 signature
	scalarLen   = 32 // a ristretto255 scalar
	shareBoxLen = 2*scalarLen + 16
)

type writer struct{ b []byte }

func newWriter(kind byte, round [16]byte) *writer {
	return &writer{b: append([]byte{kind}, round[:]...)}
}

func (w *writer) u32(v int)       { w.b = binary.BigEndian.AppendUint32(w.b, uint32(v)) }
func (w *writer) bytes(b []byte)  { w.b = append(w.b, b...) }
func (w *writer) done() []byte    { return w.b }
func (w *writer) count(n int) int { w.u32(n); return n }

type reader struct {
	b   []byte
	p   Params
	bad bool
}

func newReader(b []byte, kind byte, p Params) *reader {
	r := &reader{b: b, p: p}
	if len(b) < 17 || b[0] != kind || [16]byte(b[1:17]) != p.Round {
		r.bad = true
		return r
	}
	r.b = b[17:]
	return r
}

func (r *reader) u32() int {
	if r.bad || len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return int(v)
}

func (r *reader) bytes(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := slices.Clone(r.b[:n])
	r.b = r.b[n:]
	return v
}

// id reads a participant id, which must be one of the round's.
func (r *reader) id() int {
	v := r.u32()
	if v < 1 || v > r.p.N {
		r.bad = true
	}
	return v
}

// count reads a list length no longer than most.
func (r *reader) count(most int) int {
	n := r.u32()
	if n > most {
		r.bad = true
		return 0
	}
	return n
}

func (r *reader) end(what string) error {
	if r.bad || len(r.b) != 0 {
		return violation("a malformed %s message", what)
	}
	return nil
}

func (w *writer) keys(k Keys) {
	w.u32(k.ID)
	w.bytes(k.Encrypt)
	w.bytes(k.Mask)
	w.bytes(k.Sig)
}

func (r *reader) keys() Keys {
	return Keys{ID: r.id(), Encrypt: r.bytes(keyBytes), Mask: r.bytes(keyBytes), Sig: r.bytes(sigBytes)}
}

// MarshalKeys encodes a round-0 message.
func MarshalKeys(p Params, k Keys) []byte {
	w := newWriter(kindKeys, p.Round)
	w.keys(k)
	return w.done()
}

// UnmarshalKeys decodes a round-0 message.
func UnmarshalKeys(p Params, b []byte) (Keys, error) {
	r := newReader(b, kindKeys, p)
	k := r.keys()
	return k, r.end("keys")
}

// MarshalKeyList encodes the advertised keys the coordinator relays.
func MarshalKeyList(p Params, all []Keys) []byte {
	w := newWriter(kindKeyList, p.Round)
	for _, k := range all[:w.count(len(all))] {
		w.keys(k)
	}
	return w.done()
}

// UnmarshalKeyList decodes the relayed keys.
func UnmarshalKeyList(p Params, b []byte) ([]Keys, error) {
	r := newReader(b, kindKeyList, p)
	out := make([]Keys, r.count(p.N))
	for i := range out {
		out[i] = r.keys()
	}
	return out, r.end("key list")
}

// MarshalShares encodes encrypted shares (round 1, or their delivery).
func MarshalShares(p Params, shares []Share) []byte {
	w := newWriter(kindShares, p.Round)
	for _, s := range shares[:w.count(len(shares))] {
		w.u32(s.From)
		w.u32(s.To)
		w.bytes(s.Box)
	}
	return w.done()
}

// UnmarshalShares decodes encrypted shares.
func UnmarshalShares(p Params, b []byte) ([]Share, error) {
	r := newReader(b, kindShares, p)
	out := make([]Share, r.count(p.N))
	for i := range out {
		out[i] = Share{From: r.id(), To: r.id(), Box: r.bytes(shareBoxLen)}
	}
	return out, r.end("shares")
}

// MarshalMasked encodes a round-2 message.
func MarshalMasked(p Params, m *Masked) []byte {
	w := newWriter(kindMasked, p.Round)
	w.u32(m.ID)
	for _, v := range m.Y[:w.count(len(m.Y))] {
		w.u32(int(v))
	}
	return w.done()
}

// UnmarshalMasked decodes a round-2 message of the round's length.
func UnmarshalMasked(p Params, b []byte) (*Masked, error) {
	r := newReader(b, kindMasked, p)
	m := &Masked{ID: r.id()}
	if n := r.count(p.Length); n != p.Length {
		r.bad = true
	}
	if !r.bad && len(r.b) == 4*p.Length {
		m.Y = make([]uint32, p.Length)
		for i := range m.Y {
			m.Y[i] = binary.BigEndian.Uint32(r.b[4*i:])
		}
		r.b = nil
	}
	return m, r.end("masked input")
}

// MarshalSurvivors encodes U3, as the coordinator names it.
func MarshalSurvivors(p Params, u3 []int) []byte {
	w := newWriter(kindSurvivors, p.Round)
	for _, id := range u3[:w.count(len(u3))] {
		w.u32(id)
	}
	return w.done()
}

// UnmarshalSurvivors decodes U3.
func UnmarshalSurvivors(p Params, b []byte) ([]int, error) {
	r := newReader(b, kindSurvivors, p)
	out := make([]int, r.count(p.N))
	for i := range out {
		out[i] = r.id()
	}
	return out, r.end("survivors")
}

// MarshalConsents encodes consents (one, or all that the coordinator relays).
func MarshalConsents(p Params, cs []Consent) []byte {
	w := newWriter(kindConsents, p.Round)
	for _, c := range cs[:w.count(len(cs))] {
		w.u32(c.ID)
		w.bytes(c.Sig)
	}
	return w.done()
}

// UnmarshalConsents decodes consents.
func UnmarshalConsents(p Params, b []byte) ([]Consent, error) {
	r := newReader(b, kindConsents, p)
	out := make([]Consent, r.count(p.N))
	for i := range out {
		out[i] = Consent{ID: r.id(), Sig: r.bytes(sigBytes)}
	}
	return out, r.end("consents")
}

// MarshalUnmasking encodes a round-4 message, its shares in id order.
func MarshalUnmasking(p Params, u *Unmasking) []byte {
	w := newWriter(kindUnmasking, p.Round)
	w.u32(u.ID)
	for _, m := range []map[int][]byte{u.Self, u.Keys} {
		ids := slices.Sorted(maps.Keys(m))
		for _, id := range ids[:w.count(len(ids))] {
			w.u32(id)
			w.bytes(m[id])
		}
	}
	return w.done()
}

// UnmarshalUnmasking decodes a round-4 message; a participant named twice
// is malformed.
func UnmarshalUnmasking(p Params, b []byte) (*Unmasking, error) {
	r := newReader(b, kindUnmasking, p)
	u := &Unmasking{ID: r.id(), Self: map[int][]byte{}, Keys: map[int][]byte{}}
	for _, m := range []map[int][]byte{u.Self, u.Keys} {
		for range r.count(p.N) {
			id := r.id()
			if _, dup := u.Self[id]; dup {
				r.bad = true
			}
			if _, dup := u.Keys[id]; dup {
				r.bad = true
			}
			m[id] = r.bytes(scalarLen)
		}
	}
	return u, r.end("unmasking")
}
