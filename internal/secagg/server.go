package secagg

import (
	"crypto/ed25519"
	"maps"
	"slices"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
)

// Server is the coordinator: it relays, and learns only the sum.
type Server struct {
	p      Params
	verify Verifier
	peers  map[int]ed25519.PublicKey
	keys   map[int]Keys
	shares map[int][]Share
	masked map[int][]uint32
	u3     []int
}

// NewServer starts the coordinator of one aggregation.
func NewServer(p Params, verify Verifier, peers map[int]ed25519.PublicKey) (*Server, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	return &Server{p: p, verify: verify, peers: peers, keys: map[int]Keys{}, shares: map[int][]Share{}, masked: map[int][]uint32{}}, nil
}

// AddKeys takes a round-0 message.
func (s *Server) AddKeys(k Keys) error {
	pub, ok := s.peers[k.ID]
	if !ok || !s.verify(pub, labelKeys, k.signed(s.p.Round), k.Sig) {
		return violation("keys not signed by participant %d", k.ID)
	}
	if _, dup := s.keys[k.ID]; dup {
		return violation("participant %d advertised twice", k.ID)
	}
	s.keys[k.ID] = k
	return nil
}

// Keys are the advertised keys, for round 1.
func (s *Server) Keys() []Keys {
	var out []Keys
	for _, id := range slices.Sorted(maps.Keys(s.keys)) {
		out = append(out, s.keys[id])
	}
	return out
}

// AddShares takes a participant's round-1 message.
func (s *Server) AddShares(from int, shares []Share) error {
	if _, ok := s.keys[from]; !ok {
		return violation("participant %d shared keys without advertising", from)
	}
	if _, dup := s.shares[from]; dup {
		return violation("participant %d shared keys twice", from)
	}
	for _, sh := range shares {
		if _, ok := s.keys[sh.To]; sh.From != from || !ok {
			return violation("a share from %d claims to be from %d to %d", from, sh.From, sh.To)
		}
	}
	s.shares[from] = shares
	return nil
}

// SharesFor are the shares addressed to a participant, for round 2.
func (s *Server) SharesFor(id int) []Share {
	var out []Share
	for _, from := range slices.Sorted(maps.Keys(s.shares)) {
		for _, sh := range s.shares[from] {
			if sh.To == id {
				out = append(out, sh)
			}
		}
	}
	return out
}

// AddInput takes a round-2 message.
func (s *Server) AddInput(m *Masked) error {
	if _, ok := s.shares[m.ID]; !ok {
		return violation("participant %d sent an input without sharing keys", m.ID)
	}
	if _, dup := s.masked[m.ID]; dup || len(m.Y) != s.p.Length {
		return violation("participant %d's input is a repeat or of the wrong length", m.ID)
	}
	s.masked[m.ID] = m.Y
	return nil
}

// Survivors closes round 2: U3, the participants whose inputs arrived.
func (s *Server) Survivors() ([]int, error) {
	if len(s.masked) < s.p.T {
		return nil, violation("%d inputs arrived, fewer than %d: the round ends without a sum", len(s.masked), s.p.T)
	}
	s.u3 = slices.Sorted(maps.Keys(s.masked))
	return s.u3, nil
}

// Sum removes the masks with the survivors' unmaskings (at least T) and
// returns the sum of the survivors' inputs mod 2^32.
func (s *Server) Sum(unmaskings []*Unmasking) ([]uint32, error) {
	if s.u3 == nil {
		return nil, violation("sum before the survivors were named")
	}
	from := map[int]*Unmasking{}
	for _, u := range unmaskings {
		if slices.Contains(s.u3, u.ID) {
			from[u.ID] = u
		}
	}
	if len(from) < s.p.T {
		return nil, violation("%d unmaskings, fewer than %d", len(from), s.p.T)
	}
	rebuild := func(j int, pick func(*Unmasking) []byte) (group.Scalar, error) {
		var shares []secretsharing.Share
		for _, id := range slices.Sorted(maps.Keys(from)) {
			b := pick(from[id])
			if b == nil {
				continue
			}
			v := grp.NewScalar()
			if v.UnmarshalBinary(b) != nil {
				return nil, violation("participant %d's share for %d is malformed", id, j)
			}
			shares = append(shares, secretsharing.Share{ID: grp.NewScalar().SetUint64(uint64(id)), Value: v})
		}
		if len(shares) < s.p.T {
			return nil, violation("%d shares for participant %d, fewer than %d", len(shares), j, s.p.T)
		}
		return secretsharing.Recover(uint(s.p.T-1), shares)
	}
	sum := make([]uint32, s.p.Length)
	for _, id := range s.u3 {
		for i, v := range s.masked[id] {
			sum[i] += v
		}
	}
	minus := ^uint32(0)
	for _, j := range s.u3 {
		b, err := rebuild(j, func(u *Unmasking) []byte { return u.Self[j] })
		if err != nil {
			return nil, err
		}
		addStream(sum, s.p.Round, "self", scalarBytes(b), minus)
	}
	for _, j := range slices.Sorted(maps.Keys(s.shares)) {
		if slices.Contains(s.u3, j) {
			continue
		}
		sk, err := rebuild(j, func(u *Unmasking) []byte { return u.Keys[j] })
		if err != nil {
			return nil, err
		}
		key, err := x25519Of(sk)
		if err != nil {
			return nil, err
		}
		// Survivor k masked with +PRG(s_kj) if k < j, −PRG if k > j.
		for _, k := range s.u3 {
			seed, err := pairSeed(key, s.keys[k])
			if err != nil {
				return nil, err
			}
			sign := minus
			if k > j {
				sign = 1
			}
			addStream(sum, s.p.Round, "pair", seed, sign)
		}
	}
	return sum, nil
}
