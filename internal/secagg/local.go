package secagg

import (
	"crypto/ed25519"
	"crypto/rand"
	"slices"
)

// Local runs the whole protocol in one process among len(inputs) fresh
// participants (ids 1..n, inputs[i-1] for participant i): those in
// dropBefore2 share keys but never send their input, those in dropBefore4
// send it but not their unmasking. It is the reference that the node
// wiring splits across processes, and it serves in-process rounds.
func Local(p Params, inputs [][]uint32, dropBefore2, dropBefore4 []int) ([]uint32, error) {
	p.N = len(inputs)
	if err := p.check(); err != nil {
		return nil, err
	}
	signers := map[int]ed25519.PrivateKey{}
	peers := map[int]ed25519.PublicKey{}
	for i := 1; i <= p.N; i++ {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		signers[i], peers[i] = priv, pub
	}
	srv, err := NewServer(p, peers)
	if err != nil {
		return nil, err
	}
	clients := map[int]*Client{}
	for i := 1; i <= p.N; i++ {
		if clients[i], err = NewClient(p, i, signers[i], peers); err != nil {
			return nil, err
		}
		if err := srv.AddKeys(clients[i].Advertise()); err != nil {
			return nil, err
		}
	}
	keys := srv.Keys()
	for i := 1; i <= p.N; i++ {
		sh, err := clients[i].ShareKeys(keys)
		if err != nil {
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
		m, err := clients[i].MaskedInput(srv.SharesFor(i), inputs[i-1])
		if err != nil {
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
	var consents []Consent
	for _, i := range u3 {
		c, err := clients[i].Consent(u3)
		if err != nil {
			return nil, err
		}
		consents = append(consents, *c)
	}
	var unmaskings []*Unmasking
	for _, i := range u3 {
		if slices.Contains(dropBefore4, i) {
			continue
		}
		u, err := clients[i].Unmask(u3, consents)
		if err != nil {
			return nil, err
		}
		unmaskings = append(unmaskings, u)
	}
	return srv.Sum(unmaskings)
}
