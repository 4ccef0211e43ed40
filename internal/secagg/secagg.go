// Package secagg is secure aggregation in the manner of Bonawitz et al.
// (CCS 2017): n participants each hold a vector of integers mod 2^32; a
// coordinator learns the sum over the survivors and nothing else, as long
// as at least T of them finish, and no one unmasks a participant the
// coordinator claims dropped and also had it send its input.
//
// Rounds (every message signed by its sender's key, bound to the round id):
//
//  0. advertise: each participant sends two X25519 public keys: one to
//     encrypt shares to it (c), one for pairwise masks (s).
//  1. share keys: each participant draws a self-mask seed b, Shamir-shares
//     b and its mask secret key s_SK (threshold T) and sends each other
//     participant its shares, encrypted to it (AES-GCM under a key from
//     X25519 of the c keys, one key per direction and round).
//  2. masked input: y = x + PRG(b) + Σ_{j>i} PRG(s_ij) − Σ_{j<i} PRG(s_ij)
//     over the participants of round 1, s_ij the X25519 agreement of the s
//     keys. Pairwise masks cancel in the sum.
//  3. consistency: the coordinator names the set U3 that sent inputs; each
//     participant signs (round, U3); the signatures of at least T members of
//     U3 go to all, so a coordinator cannot tell two participants different
//     stories about who dropped.
//  4. unmask: for each member of U3 a participant reveals its share of b;
//     for each participant of round 1 outside U3, its share of s_SK — never
//     both for one participant. The coordinator rebuilds the seeds and
//     removes the self masks and the dropped participants' pairwise masks.
//
// The encodings are fixed (no reflection, no pickling); Shamir shares are
// over ristretto255's scalar field (circl), which also holds the secrets.
package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
)

var grp = group.Ristretto255

// Params are what every party of one aggregation agrees on.
type Params struct {
	Round  [16]byte // separates every stream and signature of this aggregation
	N      int      // participants, ids 1..N
	T      int      // the fewest survivors whose sum may be revealed
	Length int      // the vector length
}

// check also requires T > N/2: each participant consents to one survivor
// set, so two disjoint sets of T consenting participants — one told the
// others dropped, the other told the reverse, so that between them they
// reveal both secrets of everyone — cannot exist. With k participants
// colluding with the coordinator, 2T > N + k is needed.
func (p Params) check() error {
	if p.N < 2 || p.T < 2 || p.T > p.N || 2*p.T <= p.N || p.Length < 1 || p.Length > 1<<24 {
		return fmt.Errorf("secagg: need N/2 < T ≤ N, T ≥ 2 and 1 ≤ length ≤ 2^24 (got N=%d T=%d length=%d)", p.N, p.T, p.Length)
	}
	return nil
}

// ErrProtocol is a message that breaks the protocol.
var ErrProtocol = errors.New("secagg: protocol violation")

func violation(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// Keys is a participant's round-0 message.
type Keys struct {
	ID      int
	Encrypt []byte // X25519 public key for shares sent to it
	Mask    []byte // X25519 public key for pairwise masks
	Sig     []byte
}

func (k Keys) signed(r [16]byte) []byte {
	b := append([]byte("secagg keys\n"), r[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(k.ID))
	b = append(b, k.Encrypt...)
	return append(b, k.Mask...)
}

// Share is one encrypted pair of shares from one participant to another.
type Share struct {
	From, To int
	Box      []byte
}

// Masked is a participant's round-2 message.
type Masked struct {
	ID int
	Y  []uint32
}

// Consent is a participant's signature over the set that sent inputs.
type Consent struct {
	ID  int
	Sig []byte
}

// consentBytes binds a consent to the round, the keys advertised in it
// (so a consent from another session with the same round id does not
// verify) and the survivors.
func consentBytes(r [16]byte, keys [32]byte, u3 []int) []byte {
	b := append([]byte("secagg survivors\n"), r[:]...)
	b = append(b, keys[:]...)
	for _, id := range u3 {
		b = binary.BigEndian.AppendUint32(b, uint32(id))
	}
	return b
}

// Unmasking is a participant's round-4 message: its shares of the self
// masks of the survivors and of the mask keys of the dropped.
type Unmasking struct {
	ID   int
	Self map[int][]byte // survivor id → share of its b
	Keys map[int][]byte // dropped id → share of its s_SK
}

// Signer signs a message under a domain label; a node's key
// (federation.NodeKey) is one.
type Signer interface {
	Sign(label string, msg []byte) []byte
}

// Verifier checks a Signer's signature with the signer's public key.
type Verifier func(pub ed25519.PublicKey, label string, msg, sig []byte) bool

const (
	labelKeys      = "secagg keys"
	labelSurvivors = "secagg survivors"
)

// Client is one participant.
type Client struct {
	p         Params
	id        int
	signer    Signer
	verify    Verifier
	peers     map[int]ed25519.PublicKey // every participant's signing key
	enc       *ecdh.PrivateKey
	maskKey   group.Scalar // s_SK as a scalar (shared), its bytes the X25519 key
	mask      *ecdh.PrivateKey
	seed      group.Scalar // b
	keys      map[int]Keys // round 0 as verified
	keysHash  [32]byte     // of the verified round-0 keys, in id order
	u2        []int        // round 1 participants (whose shares reached us)
	consented []int        // the one survivor set this participant signed
	shares    map[int][2]group.Scalar
	sent      bool // masked input sent: round 4 may follow
	done      bool
}

// NewClient starts participant id (1..N) with its signing key and every
// participant's verifying key.
func NewClient(p Params, id int, signer Signer, verify Verifier, peers map[int]ed25519.PublicKey) (*Client, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if id < 1 || id > p.N || len(peers) != p.N {
		return nil, fmt.Errorf("secagg: participant %d of %d, with %d keys", id, p.N, len(peers))
	}
	c := &Client{p: p, id: id, signer: signer, verify: verify, peers: peers}
	var err error
	if c.enc, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	c.maskKey = grp.RandomScalar(rand.Reader)
	if c.mask, err = x25519Of(c.maskKey); err != nil {
		return nil, err
	}
	c.seed = grp.RandomScalar(rand.Reader)
	return c, nil
}

// x25519Of uses a scalar's 32 canonical bytes as an X25519 private key, so
// the key can be Shamir-shared in the scalar field and rebuilt exactly.
func x25519Of(s group.Scalar) (*ecdh.PrivateKey, error) {
	b, _ := s.MarshalBinary()
	return ecdh.X25519().NewPrivateKey(b)
}

// Advertise is round 0.
func (c *Client) Advertise() Keys {
	k := Keys{ID: c.id, Encrypt: c.enc.PublicKey().Bytes(), Mask: c.mask.PublicKey().Bytes()}
	k.Sig = c.signer.Sign(labelKeys, k.signed(c.p.Round))
	return k
}

func (c *Client) verifyKeys(all []Keys) (map[int]Keys, error) {
	out := map[int]Keys{}
	for _, k := range all {
		pub, ok := c.peers[k.ID]
		if !ok || !c.verify(pub, labelKeys, k.signed(c.p.Round), k.Sig) {
			return nil, violation("the keys of participant %d are not signed by it", k.ID)
		}
		if _, dup := out[k.ID]; dup {
			return nil, violation("participant %d advertised twice", k.ID)
		}
		out[k.ID] = k
	}
	if len(out) < c.p.T {
		return nil, violation("%d participants advertised keys, fewer than %d", len(out), c.p.T)
	}
	own, ok := out[c.id]
	if !ok || !slices.Equal(own.Encrypt, c.enc.PublicKey().Bytes()) || !slices.Equal(own.Mask, c.mask.PublicKey().Bytes()) {
		return nil, violation("our own keys are missing or are not this session's")
	}
	return out, nil
}

func (c *Client) boxKey(peer Keys, from, to int) (cipher.AEAD, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer.Encrypt)
	if err != nil {
		return nil, violation("participant %d's encryption key is malformed", peer.ID)
	}
	shared, err := c.enc.ECDH(pub)
	if err != nil {
		return nil, violation("participant %d's encryption key is weak", peer.ID)
	}
	h := sha256.New()
	h.Write([]byte("secagg share key\n"))
	h.Write(shared)
	h.Write(c.p.Round[:])
	binary.Write(h, binary.BigEndian, [2]uint32{uint32(from), uint32(to)})
	block, _ := aes.NewCipher(h.Sum(nil))
	return cipher.NewGCM(block)
}

// ShareKeys is round 1: given the advertised keys, it returns one
// encrypted pair of shares (of b and of s_SK) for every other participant.
func (c *Client) ShareKeys(all []Keys) ([]Share, error) {
	keys, err := c.verifyKeys(all)
	if err != nil {
		return nil, err
	}
	c.keys = keys
	ids := slices.Sorted(maps.Keys(keys))
	h := sha256.New()
	for _, id := range ids {
		h.Write(keys[id].signed(c.p.Round))
	}
	c.keysHash = [32]byte(h.Sum(nil))
	// circl's t is the polynomial degree: T shares rebuild it.
	bShares := secretsharing.New(rand.Reader, uint(c.p.T-1), c.seed)
	sShares := secretsharing.New(rand.Reader, uint(c.p.T-1), c.maskKey)
	var out []Share
	for _, j := range ids {
		id := grp.NewScalar().SetUint64(uint64(j))
		pb, _ := bShares.ShareWithID(id).Value.MarshalBinary()
		ps, _ := sShares.ShareWithID(id).Value.MarshalBinary()
		if j == c.id {
			c.keepShare(c.id, pb, ps)
			continue
		}
		aead, err := c.boxKey(keys[j], c.id, j)
		if err != nil {
			return nil, err
		}
		plain := append(append([]byte{}, pb...), ps...)
		out = append(out, Share{From: c.id, To: j, Box: aead.Seal(nil, make([]byte, aead.NonceSize()), plain, nil)})
	}
	return out, nil
}

func (c *Client) keepShare(from int, pb, ps []byte) error {
	b, s := grp.NewScalar(), grp.NewScalar()
	if b.UnmarshalBinary(pb) != nil || s.UnmarshalBinary(ps) != nil {
		return violation("participant %d's shares are malformed", from)
	}
	if c.shares == nil {
		c.shares = map[int][2]group.Scalar{}
	}
	c.shares[from] = [2]group.Scalar{b, s}
	return nil
}

// MaskedInput is round 2: it opens the shares sent to it (their senders
// are U2) and masks x.
func (c *Client) MaskedInput(shares []Share, x []uint32) (*Masked, error) {
	if c.keys == nil || c.sent {
		return nil, violation("masked input out of order")
	}
	if len(x) != c.p.Length {
		return nil, fmt.Errorf("secagg: input of length %d, the round has %d", len(x), c.p.Length)
	}
	for _, s := range shares {
		k, ok := c.keys[s.From]
		if s.To != c.id || !ok || s.From == c.id {
			return nil, violation("a share from %d to %d was delivered to %d", s.From, s.To, c.id)
		}
		if _, dup := c.shares[s.From]; dup {
			return nil, violation("participant %d's shares arrived twice", s.From)
		}
		aead, err := c.boxKey(k, s.From, c.id)
		if err != nil {
			return nil, err
		}
		plain, err := aead.Open(nil, make([]byte, aead.NonceSize()), s.Box, nil)
		if err != nil || len(plain) != 64 {
			return nil, violation("participant %d's shares do not decrypt", s.From)
		}
		if err := c.keepShare(s.From, plain[:32], plain[32:]); err != nil {
			return nil, err
		}
	}
	c.u2 = slices.Sorted(maps.Keys(c.shares))
	if len(c.u2) < c.p.T {
		return nil, violation("%d participants shared keys, fewer than %d", len(c.u2), c.p.T)
	}
	y := slices.Clone(x)
	addStream(y, c.p.Round, "self", scalarBytes(c.seed), 1)
	for _, j := range c.u2 {
		if j == c.id {
			continue
		}
		seed, err := pairSeed(c.mask, c.keys[j])
		if err != nil {
			return nil, err
		}
		sign := uint32(1)
		if j < c.id {
			sign = ^uint32(0) // −1 mod 2^32
		}
		addStream(y, c.p.Round, "pair", seed, sign)
	}
	c.sent = true
	return &Masked{ID: c.id, Y: y}, nil
}

func scalarBytes(s group.Scalar) []byte {
	b, _ := s.MarshalBinary()
	return b
}

func pairSeed(own *ecdh.PrivateKey, peer Keys) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer.Mask)
	if err != nil {
		return nil, violation("participant %d's mask key is malformed", peer.ID)
	}
	s, err := own.ECDH(pub)
	if err != nil {
		return nil, violation("participant %d's mask key is weak", peer.ID)
	}
	return s, nil
}

// addStream adds sign × PRG(seed) to y, mod 2^32: AES-256-CTR under a key
// derived from the seed, the round and the stream's label.
func addStream(y []uint32, round [16]byte, label string, seed []byte, sign uint32) {
	h := sha256.New()
	h.Write([]byte("secagg prg " + label + "\n"))
	h.Write(round[:])
	h.Write(seed)
	block, _ := aes.NewCipher(h.Sum(nil))
	stream := cipher.NewCTR(block, make([]byte, aes.BlockSize))
	buf := make([]byte, 4*len(y))
	stream.XORKeyStream(buf, buf)
	for i := range y {
		y[i] += sign * binary.LittleEndian.Uint32(buf[4*i:])
	}
}

// Consent is round 3: the participant signs the set of participants the
// coordinator says sent their inputs, if it is a plausible one.
func (c *Client) Consent(u3 []int) (*Consent, error) {
	if !c.sent {
		return nil, violation("consent before masked input")
	}
	if err := c.checkSurvivors(u3); err != nil {
		return nil, err
	}
	if c.consented != nil && !slices.Equal(c.consented, u3) {
		return nil, violation("asked to consent to a second, different survivor set")
	}
	c.consented = slices.Clone(u3)
	return &Consent{ID: c.id, Sig: c.signer.Sign(labelSurvivors, consentBytes(c.p.Round, c.keysHash, u3))}, nil
}

func (c *Client) checkSurvivors(u3 []int) error {
	if !slices.IsSorted(u3) || len(slices.Compact(slices.Clone(u3))) != len(u3) {
		return violation("the survivors must be listed once each, in order")
	}
	if len(u3) < c.p.T {
		return violation("%d survivors, fewer than %d: nobody may be unmasked", len(u3), c.p.T)
	}
	if !slices.Contains(u3, c.id) {
		return violation("we sent our input but are not among the survivors")
	}
	for _, j := range u3 {
		if !slices.Contains(c.u2, j) {
			return violation("survivor %d did not share keys", j)
		}
	}
	return nil
}

// Unmask is round 4: given U3 and at least T consents to exactly it from
// members of U3, it reveals its shares of the survivors' self-mask seeds
// and of the dropped participants' mask keys, never both for one.
func (c *Client) Unmask(u3 []int, consents []Consent) (*Unmasking, error) {
	if !c.sent || c.done {
		return nil, violation("unmasking out of order or twice")
	}
	if err := c.checkSurvivors(u3); err != nil {
		return nil, err
	}
	if !slices.Equal(c.consented, u3) {
		return nil, violation("unmasking for survivors this participant did not consent to")
	}
	signers := map[int]bool{}
	msg := consentBytes(c.p.Round, c.keysHash, u3)
	for _, s := range consents {
		if !slices.Contains(u3, s.ID) || !c.verify(c.peers[s.ID], labelSurvivors, msg, s.Sig) {
			return nil, violation("a consent to the survivors does not verify (the coordinator told participants different survivors?)")
		}
		signers[s.ID] = true
	}
	if len(signers) < c.p.T || !signers[c.id] {
		return nil, violation("%d consents to the survivors (ours among them: %v), fewer than %d", len(signers), signers[c.id], c.p.T)
	}
	c.done = true
	u := &Unmasking{ID: c.id, Self: map[int][]byte{}, Keys: map[int][]byte{}}
	for _, j := range c.u2 {
		sh := c.shares[j]
		if slices.Contains(u3, j) {
			u.Self[j] = scalarBytes(sh[0])
		} else {
			u.Keys[j] = scalarBytes(sh[1])
		}
	}
	return u, nil
}
