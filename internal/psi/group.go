package psi

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	mrand "math/rand/v2"

	"github.com/cloudflare/circl/group"
)

var grp = group.Ristretto255

// pointSize is the length of an encoded group element.
const pointSize = 32

// hashDST separates the key hash from every other use of the group.
const hashDST = "airlock-psi-v1-key"

// hashKey maps a join key to the group, separated per session so blinded
// points of two sessions cannot be linked even with equal scalars.
func hashKey(session [16]byte, key []byte) group.Element {
	msg := make([]byte, 0, 16+len(key))
	msg = append(msg, session[:]...)
	msg = append(msg, key...)
	return grp.HashToElement(msg, []byte(hashDST))
}

func randomScalar() group.Scalar { return grp.RandomNonZeroScalar(rand.Reader) }

func encode(e group.Element) [pointSize]byte {
	var p [pointSize]byte
	b, _ := e.MarshalBinary()
	copy(p[:], b)
	return p
}

var errPoint = errors.New("a point is not a canonical ristretto255 encoding")

func decode(p [pointSize]byte) (group.Element, error) {
	e := grp.NewElement()
	if err := e.UnmarshalBinary(p[:]); err != nil || e.IsIdentity() {
		return nil, errPoint
	}
	return e, nil
}

// baseTable multiplies a fixed point by scalars with a 4-bit window table
// (64 windows × 16 multiples): 64 additions instead of a variable-base
// multiplication, four times faster for the ElGamal key and generator.
type baseTable [64][16]group.Element

func newBaseTable(p group.Element) *baseTable {
	t := new(baseTable)
	w := p.Copy()
	for i := range t {
		t[i][0] = grp.Identity()
		for j := 1; j < 16; j++ {
			t[i][j] = grp.NewElement().Add(t[i][j-1], w)
		}
		// next window's base is 16·w
		w = grp.NewElement().Add(t[i][15], w)
	}
	return t
}

// mul returns s·P.
func (t *baseTable) mul(s group.Scalar) group.Element {
	b, _ := s.MarshalBinary() // 32 bytes little-endian
	acc := grp.Identity()
	for i := range 32 {
		acc.Add(acc, t[2*i][b[i]&15])
		acc.Add(acc, t[2*i+1][b[i]>>4])
	}
	return acc
}

var genTable = newBaseTable(grp.Generator())

// scalarOf is the group scalar of a (possibly negative) integer.
func scalarOf(m int64) group.Scalar {
	s := grp.NewScalar()
	if m >= 0 {
		return s.SetUint64(uint64(m))
	}
	s.SetUint64(uint64(-m))
	return s.Neg(s)
}

// shuffler permutes with a ChaCha8 stream keyed from crypto/rand.
func shuffler() *mrand.Rand {
	var seed [32]byte
	rand.Read(seed[:])
	return mrand.New(mrand.NewChaCha8(seed))
}

func randomPoint() [pointSize]byte {
	var b [64]byte
	rand.Read(b[:])
	return encode(grp.HashToElement(b[:], []byte("airlock-psi-v1-pad")))
}

func putU32(b []byte, v int) []byte { return binary.BigEndian.AppendUint32(b, uint32(v)) }
