package secagg

import (
	"crypto/ed25519"
	"crypto/rand"
	"slices"
)

// Local runs the whole protocol in one process among len(inputs) fresh
// participants (ids 1..n, inputs[i-1] for participant i): those in
// dropBefore2 share keys but never send their input, those in dropBefore4
// send it but not their unmasking. Every message goes through its wire
// encoding. It is the reference that the node
// wiring splits across processes, and it serves in-process rounds.
func Local(p Params, inputs [][]uint32, dropBefore2, dropBefore4 []int) ([]uint32, error) {
	return local(p, inputs, dropBefore2, dropBefore4, func([]byte) {})
}

// local is Local with every message the coordinator sends or receives
// passed to seen (the coordinator's transcript, for tests).
func local(p Params, inputs [][]uint32, dropBefore2, dropBefore4 []int, seen func([]byte)) ([]uint32, error) {
	wire := func(b []byte) []byte { seen(b); return b }
	p.N = len(inputs)
	if err := p.check(); err != nil {
		return nil, err
	}
	signers, peers, err := LocalKeys(p.N)
	if err != nil {
		return nil, err
	}
	srv, err := NewServer(p, VerifyLocal, peers)
	if err != nil {
		return nil, err
	}
	clients := map[int]*Client{}
	for i := 1; i <= p.N; i++ {
		if clients[i], err = NewClient(p, i, signers[i], VerifyLocal, peers); err != nil {
			return nil, err
		}
		k, err := UnmarshalKeys(p, wire(MarshalKeys(p, clients[i].Advertise())))
		if err != nil {
			return nil, err
		}
		if err := srv.AddKeys(k); err != nil {
			return nil, err
		}
	}
	keys, err := UnmarshalKeyList(p, wire(MarshalKeyList(p, srv.Keys())))
	if err != nil {
		return nil, err
	}
	for i := 1; i <= p.N; i++ {
		sh, err := clients[i].ShareKeys(keys)
		if err != nil {
			return nil, err
		}
		if sh, err = UnmarshalShares(p, wire(MarshalShares(p, sh))); err != nil {
			return nil, err
		}
		if err := srv.AddShares(i, sh); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= p.N; i++ {
		if slices.Contains(dropBefore2, i) {
			continue
		}
		shares, err := UnmarshalShares(p, wire(MarshalShares(p, srv.SharesFor(i))))
		if err != nil {
			return nil, err
		}
		m, err := clients[i].MaskedInput(shares, inputs[i-1])
		if err != nil {
			return nil, err
		}
		if m, err = UnmarshalMasked(p, wire(MarshalMasked(p, m))); err != nil {
			return nil, err
		}
		if err := srv.AddInput(m); err != nil {
			return nil, err
		}
	}
	u3, err := srv.Survivors()
	if err != nil {
		return nil, err
	}
	wire(MarshalSurvivors(p, u3))
	var consents []Consent
	for _, i := range u3 {
		c, err := clients[i].Consent(u3)
		if err != nil {
			return nil, err
		}
		wire(MarshalConsents(p, []Consent{*c}))
		consents = append(consents, *c)
	}
	wire(MarshalConsents(p, consents))
	var unmaskings []*Unmasking
	for _, i := range u3 {
		if slices.Contains(dropBefore4, i) {
			continue
		}
		u, err := clients[i].Unmask(u3, consents)
		if err != nil {
			return nil, err
		}
		if u, err = UnmarshalUnmasking(p, wire(MarshalUnmasking(p, u))); err != nil {
			return nil, err
		}
		unmaskings = append(unmaskings, u)
	}
	return srv.Sum(unmaskings)
}

// LocalKey is a bare ed25519 key as a Signer, for participants in one
// process (Local, tests); nodes sign with their node keys.
type LocalKey ed25519.PrivateKey

func localMessage(label string, msg []byte) []byte { return append([]byte(label+"\n"), msg...) }

// Sign signs under the label.
func (k LocalKey) Sign(label string, msg []byte) []byte {
	return ed25519.Sign(ed25519.PrivateKey(k), localMessage(label, msg))
}

// VerifyLocal checks a LocalKey's signature.
func VerifyLocal(pub ed25519.PublicKey, label string, msg, sig []byte) bool {
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, localMessage(label, msg), sig)
}

// LocalKeys are n fresh participants' keys, ids 1..n.
func LocalKeys(n int) (map[int]Signer, map[int]ed25519.PublicKey, error) {
	signers := map[int]Signer{}
	peers := map[int]ed25519.PublicKey{}
	for i := 1; i <= n; i++ {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		signers[i], peers[i] = LocalKey(priv), pub
	}
	return signers, peers, nil
}
