package psi

import (
	"errors"
	"sync"

	"github.com/cloudflare/circl/group"
)

// Ciphertext is exponential ElGamal: (r·G, m·G + r·PK). Adding two
// ciphertexts adds their plaintexts.
type Ciphertext struct{ R, C group.Element }

// KeyShare is one party's share of the joint decryption key.
type KeyShare struct {
	sk group.Scalar
	// Public is sk·G, sent to the other party.
	Public [pointSize]byte
}

// NewKeyShare draws a fresh share.
func NewKeyShare() *KeyShare {
	sk := randomScalar()
	return &KeyShare{sk: sk, Public: encode(genTable.mul(sk))}
}

// JointKey encrypts under the sum of both parties' public shares.
type JointKey struct {
	pk    group.Element
	table *baseTable
}

// Joint combines the two public shares.
func Joint(a, b [pointSize]byte) (*JointKey, error) {
	pa, err := decode(a)
	if err != nil {
		return nil, err
	}
	pb, err := decode(b)
	if err != nil {
		return nil, err
	}
	pk := grp.NewElement().Add(pa, pb)
	if pk.IsIdentity() {
		return nil, errPoint
	}
	return &JointKey{pk: pk, table: newBaseTable(pk)}, nil
}

// Encrypt encrypts a small integer.
func (k *JointKey) Encrypt(m int64) Ciphertext {
	r := randomScalar()
	c := genTable.mul(scalarOf(m))
	c.Add(c, k.table.mul(r))
	return Ciphertext{R: genTable.mul(r), C: c}
}

// Rerandomize returns a fresh-looking ciphertext of the same plaintext.
func (k *JointKey) Rerandomize(ct Ciphertext) Ciphertext {
	r := randomScalar()
	return Ciphertext{R: grp.NewElement().Add(ct.R, genTable.mul(r)), C: grp.NewElement().Add(ct.C, k.table.mul(r))}
}

// Add returns the ciphertext of the sum.
func Add(a, b Ciphertext) Ciphertext {
	return Ciphertext{R: grp.NewElement().Add(a.R, b.R), C: grp.NewElement().Add(a.C, b.C)}
}

// Partial is a party's share of decrypting a ciphertext: sk·R.
func (s *KeyShare) Partial(ct Ciphertext) [pointSize]byte {
	return encode(grp.NewElement().Mul(ct.R, s.sk))
}

// Open decodes m from a ciphertext and both partial decryptions, for
// |m| ≤ MaxPlain.
func Open(ct Ciphertext, partials ...[pointSize]byte) (int64, error) {
	p := ct.C.Copy()
	for _, d := range partials {
		e, err := decode(d)
		if err != nil {
			return 0, err
		}
		p.Add(p, grp.NewElement().Neg(e))
	}
	return discreteLog(p)
}

// Baby-step giant-step decoding of m·G for |m| ≤ MaxPlain.
const (
	babySteps = 1 << 16
	maxGiant  = 1 << 18
	// MaxPlain bounds a decodable plaintext (≈1.7·10^10): cells must be
	// sums that stay below it; the caller bounds values accordingly.
	MaxPlain = babySteps*maxGiant - 1
)

var (
	babyOnce sync.Once
	baby     map[[pointSize]byte]int32
	giant    group.Element // −babySteps·G
)

// ErrRange is returned for a plaintext beyond MaxPlain.
var ErrRange = errors.New("the plaintext is beyond the decodable range")

func discreteLog(p group.Element) (int64, error) {
	babyOnce.Do(func() {
		baby = make(map[[pointSize]byte]int32, babySteps)
		acc := grp.Identity()
		g := grp.Generator()
		for j := range babySteps {
			baby[encode(acc)] = int32(j)
			acc = grp.NewElement().Add(acc, g)
		}
		giant = grp.NewElement().Neg(acc)
	})
	// Walk m and −m together: small values of either sign decode fast.
	pos, neg := p.Copy(), grp.NewElement().Neg(p)
	for i := range int64(maxGiant) {
		if j, ok := baby[encode(pos)]; ok {
			return i*babySteps + int64(j), nil
		}
		if j, ok := baby[encode(neg)]; ok {
			return -(i*babySteps + int64(j)), nil
		}
		pos.Add(pos, giant)
		neg.Add(neg, giant)
	}
	return 0, ErrRange
}
