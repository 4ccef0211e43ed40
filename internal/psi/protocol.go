package psi

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/cloudflare/circl/group"

	"github.com/airlock-dev/airlock/internal/dp"
)

type groupElement = group.Element

// Item is one record of a party: its join key and its payload cells
// (nil when the party contributes no payload).
type Item struct {
	Key   []byte
	Cells []int64
}

// Party is one side of one session.
type Party struct {
	session [16]byte
	width   int // payload cells of the session
	max     int // most points accepted in a message
	blind   group.Scalar
	key     *KeyShare
	joint   *JointKey
}

// NewParty starts a session's side with fresh secrets: a session has
// width payload cells and accepts messages of at most maxPoints points.
func NewParty(session [16]byte, width, maxPoints int) (*Party, error) {
	if width < 0 || width > MaxWidth {
		return nil, fmt.Errorf("width %d is outside 0..%d", width, MaxWidth)
	}
	return &Party{session: session, width: width, max: maxPoints, blind: randomScalar(), key: NewKeyShare()}, nil
}

// ShareSize is the length of a key share as sent: the public share and a
// Schnorr proof that its sender knows the secret.
const ShareSize = 3 * pointSize

// Public is this party's share of the joint key for the other party, with
// a proof of knowledge of its secret bound to the session: without it, a
// party could answer pk' = x·G − pk and make the joint key one it alone
// can open (a rogue-key attack).
func (p *Party) Public() [ShareSize]byte {
	var out [ShareSize]byte
	copy(out[:], p.key.Public[:])
	k := randomScalar()
	R := encode(genTable.mul(k))
	c := challenge(p.session, p.key.Public, R)
	s := grp.NewScalar().Mul(c, p.key.sk)
	s.Add(s, k)
	sb, _ := s.MarshalBinary()
	copy(out[pointSize:], R[:])
	copy(out[2*pointSize:], sb)
	return out
}

func challenge(session [16]byte, pk, R [pointSize]byte) group.Scalar {
	msg := append(append(append([]byte{}, session[:]...), pk[:]...), R[:]...)
	return grp.HashToScalar(msg, []byte("airlock-psi-v1-key-proof"))
}

// Join checks the other party's proof and sets the joint key.
func (p *Party) Join(share [ShareSize]byte) error {
	other := [pointSize]byte(share[:pointSize])
	if other == p.key.Public {
		return fmt.Errorf("%w: the other party's key share equals ours", ErrMessage)
	}
	pk, err := decode(other)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMessage, err)
	}
	R := [pointSize]byte(share[pointSize : 2*pointSize])
	Re, err := decode(R)
	sc := grp.NewScalar()
	if err != nil || sc.UnmarshalBinary(share[2*pointSize:]) != nil {
		return fmt.Errorf("%w: the key share's proof is malformed", ErrMessage)
	}
	// s·G = R + c·pk
	lhs := genTable.mul(sc)
	rhs := grp.NewElement().Add(Re, grp.NewElement().Mul(pk, challenge(p.session, other, R)))
	if !lhs.IsEqual(rhs) {
		return fmt.Errorf("%w: the key share's proof does not verify (a rogue key?)", ErrMessage)
	}
	j, err := Joint(p.key.Public, other)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMessage, err)
	}
	p.joint = j
	return nil
}

var errNoKey = errors.New("psi: the joint key is not set (Join first)")

// Items blinds and encrypts the party's items, adds pad random points
// with zero payloads (so the other party sees a padded size) and
// shuffles. Every item carries Cells of the session's width or none.
func (p *Party) Items(items []Item, pad int) (*Message, error) {
	if p.joint == nil {
		return nil, errNoKey
	}
	w := 0
	for _, it := range items {
		if len(it.Cells) != 0 {
			w = p.width
		}
	}
	for _, it := range items {
		if len(it.Cells) != w {
			return nil, fmt.Errorf("psi: every item needs %d payload cells", w)
		}
	}
	n := len(items) + pad
	if n > p.max {
		return nil, fmt.Errorf("psi: %d items exceed the session's limit %d", n, p.max)
	}
	m := &Message{Kind: KindItems, Session: p.session, Width: w, Points: make([][pointSize]byte, n), Cipher: make([]Ciphertext, n*w)}
	order := shuffler().Perm(n)
	parallel(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			at := order[i]
			if i < len(items) {
				m.Points[at] = encode(grp.NewElement().Mul(hashKey(p.session, items[i].Key), p.blind))
			} else {
				m.Points[at] = randomPoint()
			}
			for c := range w {
				v := int64(0)
				if i < len(items) {
					v = items[i].Cells[c]
				}
				m.Cipher[at*w+c] = p.joint.Encrypt(v)
			}
		}
	})
	return m, nil
}

// Reblind is the helper's second pass over the matcher's items: each
// point times the helper's scalar, each payload re-randomised, all
// shuffled, so the matcher cannot tell which of its items match.
func (p *Party) Reblind(in *Message) (*Message, error) {
	if p.joint == nil {
		return nil, errNoKey
	}
	if err := p.checkItems(in); err != nil {
		return nil, err
	}
	n, w := len(in.Points), in.Width
	out := &Message{Kind: KindReblinded, Session: p.session, Width: w, Points: make([][pointSize]byte, n), Cipher: make([]Ciphertext, n*w)}
	order := shuffler().Perm(n)
	var bad error
	var once sync.Once
	parallel(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			e, err := decode(in.Points[i])
			if err != nil {
				once.Do(func() { bad = err })
				return
			}
			at := order[i]
			out.Points[at] = encode(grp.NewElement().Mul(e, p.blind))
			for c := range w {
				out.Cipher[at*w+c] = p.joint.Rerandomize(in.Cipher[i*w+c])
			}
		}
	})
	if bad != nil {
		return nil, fmt.Errorf("%w: %v", ErrMessage, bad)
	}
	return out, nil
}

func (p *Party) checkItems(m *Message) error {
	switch {
	case m.Session != p.session:
		return fmt.Errorf("%w: the message belongs to another session", ErrMessage)
	case m.Width != 0 && m.Width != p.width:
		return fmt.Errorf("%w: payload width %d, the session has %d", ErrMessage, m.Width, p.width)
	case len(m.Points) > p.max:
		return fmt.Errorf("%w: %d points exceed the limit %d", ErrMessage, len(m.Points), p.max)
	case len(m.Cipher) != len(m.Points)*m.Width:
		return fmt.Errorf("%w: payloads do not match the points", ErrMessage)
	}
	return nil
}

// Match is the matcher's last pass: it blinds the helper's items with its
// own scalar, finds the points equal to its reblinded items and adds the
// payloads of both sides over every match. It returns the summed cells
// and the number of matches (which the helper's dummy matches blur).
func (p *Party) Match(mine, theirs *Message) ([]Ciphertext, int, error) {
	if p.joint == nil {
		return nil, 0, errNoKey
	}
	if mine.Kind != KindReblinded || theirs.Kind != KindItems {
		return nil, 0, fmt.Errorf("%w: match takes the reblinded items and the helper's items", ErrMessage)
	}
	for _, m := range []*Message{mine, theirs} {
		if err := p.checkItems(m); err != nil {
			return nil, 0, err
		}
	}
	index := make(map[[pointSize]byte]int32, len(mine.Points))
	for i, pt := range mine.Points {
		if _, dup := index[pt]; dup {
			return nil, 0, fmt.Errorf("%w: two reblinded points are equal", ErrMessage)
		}
		index[pt] = int32(i)
	}
	matched := make([]int32, len(theirs.Points)) // index+1 into mine, 0: none
	var bad error
	var once sync.Once
	parallel(len(theirs.Points), func(lo, hi int) {
		for j := lo; j < hi; j++ {
			e, err := decode(theirs.Points[j])
			if err != nil {
				once.Do(func() { bad = err })
				return
			}
			if i, ok := index[encode(grp.NewElement().Mul(e, p.blind))]; ok {
				matched[j] = i + 1
			}
		}
	})
	if bad != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrMessage, bad)
	}
	cells := make([]Ciphertext, p.width)
	for c := range cells {
		cells[c] = Ciphertext{R: grp.Identity(), C: grp.Identity()}
	}
	count := 0
	for j, i := range matched {
		if i == 0 {
			continue
		}
		count++
		for c := range cells {
			if mine.Width != 0 {
				cells[c] = Add(cells[c], mine.Cipher[int(i-1)*mine.Width+c])
			}
			if theirs.Width != 0 {
				cells[c] = Add(cells[c], theirs.Cipher[j*theirs.Width+c])
			}
		}
	}
	return cells, count, nil
}

// Noise adds this party's encrypted noise to each cell and re-randomises
// the result, so the sum a party sent cannot be recognised.
func (p *Party) Noise(cells []Ciphertext, noise []int64) ([]Ciphertext, error) {
	if p.joint == nil {
		return nil, errNoKey
	}
	if len(cells) != p.width || len(noise) != len(cells) {
		return nil, fmt.Errorf("%w: %d cells, %d noise values, the session has %d", ErrMessage, len(cells), len(noise), p.width)
	}
	out := make([]Ciphertext, len(cells))
	for c := range cells {
		out[c] = Add(cells[c], p.joint.Encrypt(noise[c]))
	}
	return out, nil
}

// Partials are this party's partial decryptions of the cells.
func (p *Party) Partials(cells []Ciphertext) [][pointSize]byte {
	out := make([][pointSize]byte, len(cells))
	for c, ct := range cells {
		out[c] = p.key.Partial(ct)
	}
	return out
}

// Decrypt opens the cells with this party's partials and the other's.
func (p *Party) Decrypt(cells []Ciphertext, other [][pointSize]byte) ([]int64, error) {
	if len(other) != len(cells) {
		return nil, fmt.Errorf("%w: %d partials for %d cells", ErrMessage, len(other), len(cells))
	}
	mine := p.Partials(cells)
	out := make([]int64, len(cells))
	for c, ct := range cells {
		v, err := Open(ct, mine[c], other[c])
		if err != nil {
			return nil, err
		}
		out[c] = v
	}
	return out, nil
}

// CellsMessage and PartialsMessage wrap cells and partials for the wire.
func (p *Party) CellsMessage(cells []Ciphertext) *Message {
	return &Message{Kind: KindCells, Session: p.session, Width: len(cells), Cipher: cells}
}

func (p *Party) PartialsMessage(parts [][pointSize]byte) *Message {
	return &Message{Kind: KindPartials, Session: p.session, Width: len(parts), Points: parts}
}

// Pool is the session's pool of dummy keys: the matcher includes all of
// them, the helper a noisy-sized subset, so the matcher's count of
// matches is the true count plus noise it cannot remove.
func Pool(session [16]byte, n, width int) []Item {
	out := make([]Item, n)
	for i := range out {
		key := fmt.Appendf(nil, "airlock-psi-dummy/%x/%d", session, i)
		var cells []int64
		if width > 0 {
			cells = make([]int64, width)
		}
		out[i] = Item{Key: key, Cells: cells}
	}
	return out
}

// NoisyCount draws a non-negative count for padding and dummy matches:
// shift + a discrete Gaussian of variance sigma2, with the shift 7σ so
// that clamping at 0 or 2·shift happens with probability below 10^-11
// (counted in the δ of the release). PoolSize is 2·shift.
func NoisyCount(s *dp.Sampler, sigma2 float64) int {
	shift := PoolSize(sigma2) / 2
	num, den := dp.RatUp(sigma2)
	v := shift + int(s.DiscreteGaussian(num, den).Int64())
	return min(max(v, 0), 2*shift)
}

// PoolSize is the range of NoisyCount.
func PoolSize(sigma2 float64) int { return 2 * int(math.Ceil(7*math.Sqrt(sigma2))) }

// parallel splits [0,n) over the machine's cores.
func parallel(n int, f func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), max(1, n/256))
	if workers <= 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	step := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += step {
		wg.Add(1)
		go func(lo, hi int) { defer wg.Done(); f(lo, hi) }(lo, min(n, lo+step))
	}
	wg.Wait()
}
