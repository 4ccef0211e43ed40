package secagg

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	mrand "math/rand/v2"
	"slices"
	"testing"
)

type net struct {
	signers map[int]Signer
	peers   map[int]ed25519.PublicKey
	p       Params
	clients map[int]*Client
	server  *Server
	inputs  map[int][]uint32
}

func newNet(t testing.TB, n, th, length int) *net {
	t.Helper()
	p := Params{N: n, T: th, Length: length}
	rand.Read(p.Round[:])
	signers, peers, err := LocalKeys(n)
	if err != nil {
		t.Fatal(err)
	}
	nt := &net{p: p, signers: signers, peers: peers, clients: map[int]*Client{}, inputs: map[int][]uint32{}}
	if nt.server, err = NewServer(p, VerifyLocal, peers); err != nil {
		t.Fatal(err)
	}
	r := mrand.New(mrand.NewPCG(uint64(n), uint64(th)))
	for i := 1; i <= n; i++ {
		if nt.clients[i], err = NewClient(p, i, signers[i], VerifyLocal, peers); err != nil {
			t.Fatal(err)
		}
		x := make([]uint32, length)
		for k := range x {
			x[k] = r.Uint32() % 1000
		}
		nt.inputs[i] = x
	}
	return nt
}

// throughInputs plays rounds 0 to 2 with every participant, by hand (the
// tests then act as the coordinator in rounds 3 and 4).
func (nt *net) throughInputs() {
	for i := 1; i <= nt.p.N; i++ {
		nt.server.AddKeys(nt.clients[i].Advertise())
	}
	for i := 1; i <= nt.p.N; i++ {
		sh, _ := nt.clients[i].ShareKeys(nt.server.Keys())
		nt.server.AddShares(i, sh)
	}
	for i := 1; i <= nt.p.N; i++ {
		m, _ := nt.clients[i].MaskedInput(nt.server.SharesFor(i), nt.inputs[i])
		nt.server.AddInput(m)
	}
}

// run plays the rounds through Local; dropBefore2 never send inputs
// (after sharing keys), dropBefore4 send inputs but no unmasking. It
// returns the sum and the plain sum of the inputs that were sent.
func (nt *net) run(t testing.TB, dropBefore2, dropBefore4 []int) ([]uint32, []uint32, error) {
	t.Helper()
	want := make([]uint32, nt.p.Length)
	var inputs [][]uint32
	for i := 1; i <= nt.p.N; i++ {
		inputs = append(inputs, nt.inputs[i])
		if !slices.Contains(dropBefore2, i) {
			for k, v := range nt.inputs[i] {
				want[k] += v
			}
		}
	}
	sum, err := Local(nt.p, inputs, dropBefore2, dropBefore4)
	return sum, want, err
}

// TestSumEqualsPlainSum: with no dropouts, dropouts before the input and
// dropouts before unmasking, the coordinator's sum is the plain sum of the
// inputs it received.
func TestSumEqualsPlainSum(t *testing.T) {
	for _, c := range []struct {
		n, t         int
		drop2, drop4 []int
	}{
		{2, 2, nil, nil},
		{5, 3, nil, nil},
		{10, 6, []int{2, 5, 9}, nil},
		{10, 6, []int{1}, []int{3, 4}},
		{7, 4, []int{7, 6}, []int{5}},
	} {
		nt := newNet(t, c.n, c.t, 257)
		got, want, err := nt.run(t, c.drop2, c.drop4)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%+v: sum differs from the plain sum at %d", c, firstDiff(got, want))
		}
	}
}

func firstDiff(a, b []uint32) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestBelowThresholdNoSum: fewer than T inputs, or fewer than T
// unmaskings, give no sum.
func TestBelowThresholdNoSum(t *testing.T) {
	nt := newNet(t, 6, 4, 16)
	if _, _, err := nt.run(t, []int{1, 2, 3}, nil); !errors.Is(err, ErrProtocol) {
		t.Errorf("3 of 6 inputs with T=4: %v", err)
	}
	nt = newNet(t, 6, 4, 16)
	if _, _, err := nt.run(t, []int{1}, []int{2, 3}); !errors.Is(err, ErrProtocol) {
		t.Errorf("3 unmaskings with T=4: %v", err)
	}
}

// TestMaskedInputsLookRandom: what the coordinator holds of one
// participant is its masked input, not its input.
func TestMaskedInputsLookRandom(t *testing.T) {
	nt := newNet(t, 4, 3, 1000)
	for i := 1; i <= 4; i++ {
		nt.server.AddKeys(nt.clients[i].Advertise())
	}
	for i := 1; i <= 4; i++ {
		sh, _ := nt.clients[i].ShareKeys(nt.server.Keys())
		nt.server.AddShares(i, sh)
	}
	m, _ := nt.clients[1].MaskedInput(nt.server.SharesFor(1), nt.inputs[1])
	small := 0
	for k, v := range m.Y {
		if v == nt.inputs[1][k] {
			t.Fatalf("masked input equals the input at %d", k)
		}
		if v < 1000 {
			small++
		}
	}
	// inputs are below 1000; masked values are uniform mod 2^32
	if small > 2 {
		t.Errorf("%d of 1000 masked values are below 1000", small)
	}
}

// TestLyingCoordinator: a coordinator that names different survivors to
// different participants (to unmask a participant's input by claiming it
// dropped) gets no unmasking: the consents do not verify.
func TestLyingCoordinator(t *testing.T) {
	nt := newNet(t, 5, 3, 8)
	nt.throughInputs()
	truth := []int{1, 2, 3, 4, 5}
	lie := []int{1, 2, 3, 4} // "5 dropped": participants would reveal 5's mask key
	var consents []Consent
	for _, i := range truth[:4] {
		c, _ := nt.clients[i].Consent(truth)
		consents = append(consents, *c)
	}
	if _, err := nt.clients[1].Unmask(lie, consents); !errors.Is(err, ErrProtocol) {
		t.Errorf("unmasking under survivors others did not consent to: %v", err)
	}
	// A participant consents to one survivor set only, and unmasks only
	// for the set it consented to.
	if _, err := nt.clients[2].Consent(lie); !errors.Is(err, ErrProtocol) {
		t.Errorf("a second, different consent: %v", err)
	}
	if _, err := nt.clients[5].Unmask(truth, consents); !errors.Is(err, ErrProtocol) {
		t.Errorf("unmasking without having consented: %v", err)
	}
	// A participant never reveals both seeds of one participant.
	u, err := nt.clients[1].Unmask(truth, consents)
	if err != nil {
		t.Fatal(err)
	}
	for j := range u.Self {
		if _, both := u.Keys[j]; both {
			t.Errorf("both shares of participant %d revealed", j)
		}
	}
	if _, err := nt.clients[1].Unmask(truth, consents); !errors.Is(err, ErrProtocol) {
		t.Errorf("a second unmasking: %v", err)
	}
}

// TestForgedMessagesRefused: keys not signed by their participant, shares
// claiming another sender, repeats.
func TestForgedMessagesRefused(t *testing.T) {
	nt := newNet(t, 3, 2, 4)
	k := nt.clients[3].Advertise()
	k.ID = 2
	if err := nt.server.AddKeys(k); !errors.Is(err, ErrProtocol) {
		t.Errorf("keys relabelled: %v", err)
	}
	for i := 1; i <= 3; i++ {
		nt.server.AddKeys(nt.clients[i].Advertise())
	}
	if err := nt.server.AddKeys(nt.clients[1].Advertise()); !errors.Is(err, ErrProtocol) {
		t.Errorf("keys twice: %v", err)
	}
	sh, _ := nt.clients[1].ShareKeys(nt.server.Keys())
	if err := nt.server.AddShares(2, sh); !errors.Is(err, ErrProtocol) {
		t.Errorf("shares under another sender: %v", err)
	}
	nt.server.AddShares(1, sh)
	bad := nt.server.SharesFor(2)
	bad[0].Box[0] ^= 1
	if _, err := nt.clients[2].ShareKeys(nt.server.Keys()); err != nil {
		t.Fatal(err)
	}
	if _, err := nt.clients[2].MaskedInput(bad, nt.inputs[2]); !errors.Is(err, ErrProtocol) {
		t.Errorf("a tampered share: %v", err)
	}
}

// TestWireFormsRefuseMalformedMessages: every decoder takes back what its
// encoder wrote and refuses a truncated message, a trailing byte, another
// round's or kind's message, and a participant id outside the round.
func TestWireFormsRefuseMalformedMessages(t *testing.T) {
	nt := newNet(t, 3, 2, 4)
	p := nt.p
	k := nt.clients[3].Advertise()
	var keys []Keys
	for i := 1; i <= 3; i++ {
		keys = append(keys, nt.clients[i].Advertise())
	}
	shares, err := nt.clients[2].ShareKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	u := &Unmasking{ID: 2, Self: map[int][]byte{1: make([]byte, 32), 3: make([]byte, 32)}, Keys: map[int][]byte{}}
	other := p
	other.Round[0] ^= 1
	small := p
	small.N = 1
	cases := []struct {
		name   string
		b      []byte
		decode func(Params, []byte) error
	}{
		{"keys", MarshalKeys(p, k), func(p Params, b []byte) error { _, err := UnmarshalKeys(p, b); return err }},
		{"key list", MarshalKeyList(p, keys), func(p Params, b []byte) error { _, err := UnmarshalKeyList(p, b); return err }},
		{"shares", MarshalShares(p, shares), func(p Params, b []byte) error { _, err := UnmarshalShares(p, b); return err }},
		{"masked", MarshalMasked(p, &Masked{ID: 3, Y: []uint32{1, 2, 3, 4}}), func(p Params, b []byte) error { _, err := UnmarshalMasked(p, b); return err }},
		{"survivors", MarshalSurvivors(p, []int{1, 3}), func(p Params, b []byte) error { _, err := UnmarshalSurvivors(p, b); return err }},
		{"consents", MarshalConsents(p, []Consent{{ID: 3, Sig: make([]byte, 64)}}), func(p Params, b []byte) error { _, err := UnmarshalConsents(p, b); return err }},
		{"unmasking", MarshalUnmasking(p, u), func(p Params, b []byte) error { _, err := UnmarshalUnmasking(p, b); return err }},
	}
	for _, c := range cases {
		if err := c.decode(p, c.b); err != nil {
			t.Errorf("%s: its own encoding is refused: %v", c.name, err)
		}
		bad := map[string][]byte{
			"truncated": c.b[:len(c.b)-1],
			"trailing":  append(slices.Clone(c.b), 0),
			"empty":     nil,
		}
		for what, b := range bad {
			if err := c.decode(p, b); !errors.Is(err, ErrProtocol) {
				t.Errorf("%s %s: decoded (%v)", c.name, what, err)
			}
		}
		if err := c.decode(other, c.b); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s from another round: decoded", c.name)
		}
		if err := c.decode(small, c.b); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s naming a participant outside the round: decoded", c.name)
		}
	}
	for i, c := range cases {
		wrong := cases[(i+1)%len(cases)]
		if err := wrong.decode(p, c.b); err == nil {
			t.Errorf("a %s message decoded as %s", c.name, wrong.name)
		}
	}
	dup := MarshalUnmasking(p, &Unmasking{ID: 2, Self: map[int][]byte{1: make([]byte, 32)}, Keys: map[int][]byte{1: make([]byte, 32)}})
	if _, err := UnmarshalUnmasking(p, dup); !errors.Is(err, ErrProtocol) {
		t.Error("an unmasking revealing both secrets of participant 1 decoded")
	}
}

// TestTranscriptShowsNoInput: everything the coordinator sends and
// receives in a round (with a dropout) holds no participant's input: no
// two consecutive values of any input vector appear in any message, in
// either byte order, yet the sum comes out right.
func TestTranscriptShowsNoInput(t *testing.T) {
	const n, length = 4, 64
	inputs := make([][]uint32, n)
	want := make([]uint32, length)
	for i := range inputs {
		inputs[i] = make([]uint32, length)
		for k := range inputs[i] {
			inputs[i][k] = 0xA5A50000 + uint32(i*1000+k)
			if i != 3 { // participant 4 drops before its input
				want[k] += inputs[i][k]
			}
		}
	}
	var transcript [][]byte
	p := Params{T: 3, Length: length}
	rand.Read(p.Round[:])
	sum, err := local(p, inputs, []int{4}, nil, func(b []byte) { transcript = append(transcript, slices.Clone(b)) })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sum, want) {
		t.Fatal("the sum is wrong")
	}
	for i, x := range inputs {
		for k := 0; k+1 < length; k++ {
			be := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, x[k]), x[k+1])
			le := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, x[k]), x[k+1])
			for _, m := range transcript {
				if bytes.Contains(m, be) || bytes.Contains(m, le) {
					t.Fatalf("a message holds values %d and %d of participant %d's input", k, k+1, i+1)
				}
			}
		}
	}
	if len(transcript) < 4*n {
		t.Fatalf("only %d messages recorded", len(transcript))
	}
}

// TestSplitSurvivorsNeedsAMajority (found in the attack round): a
// coordinator that tells two disjoint halves each that the other half
// dropped would collect, between the halves, both secrets of everyone.
// T must exceed N/2, so no two disjoint sets of T consenting participants
// exist; and a participant consents to one set only.
func TestSplitSurvivorsNeedsAMajority(t *testing.T) {
	signers, peers, _ := LocalKeys(4)
	for _, th := range []int{1, 2} {
		p := Params{N: 4, T: th, Length: 8}
		if _, err := NewClient(p, 1, signers[1], VerifyLocal, peers); err == nil {
			t.Errorf("a round of 4 with threshold %d started", th)
		}
		if _, err := NewServer(p, VerifyLocal, peers); err == nil {
			t.Errorf("a coordinator of 4 with threshold %d started", th)
		}
	}
	// N = 5, T = 3: the sets {1,2,3} and {3,4,5} overlap in 3, who signs
	// only the first it is shown.
	nt := newNet(t, 5, 3, 8)
	nt.throughInputs()
	if _, err := nt.clients[3].Consent([]int{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := nt.clients[3].Consent([]int{3, 4, 5}); !errors.Is(err, ErrProtocol) {
		t.Errorf("participant 3 consented to a second survivor set: %v", err)
	}
}

// TestConsentsAreBoundToTheSession: a consent made in another session of
// the same round id (other keys) does not verify.
func TestConsentsAreBoundToTheSession(t *testing.T) {
	nets := [2]*net{newNet(t, 3, 2, 4), newNet(t, 3, 2, 4)}
	nets[1].p.Round = nets[0].p.Round
	var consents [2][]Consent
	for k, nt := range nets {
		signers, peers, _ := LocalKeys(3)
		if k == 1 { // the same participants' keys, a second session
			signers, peers = nets[0].signers, nets[0].peers
		}
		nt.signers, nt.peers = signers, peers
		nt.server, _ = NewServer(nets[0].p, VerifyLocal, peers)
		for i := 1; i <= 3; i++ {
			nt.clients[i], _ = NewClient(nets[0].p, i, signers[i], VerifyLocal, peers)
			nt.server.AddKeys(nt.clients[i].Advertise())
		}
		for i := 1; i <= 3; i++ {
			sh, _ := nt.clients[i].ShareKeys(nt.server.Keys())
			nt.server.AddShares(i, sh)
		}
		for i := 1; i <= 3; i++ {
			m, _ := nt.clients[i].MaskedInput(nt.server.SharesFor(i), nt.inputs[i])
			nt.server.AddInput(m)
			c, err := nt.clients[i].Consent([]int{1, 2, 3})
			if err != nil {
				t.Fatal(err)
			}
			consents[k] = append(consents[k], *c)
		}
	}
	if _, err := nets[1].clients[1].Unmask([]int{1, 2, 3}, []Consent{consents[1][0], consents[0][1], consents[0][2]}); !errors.Is(err, ErrProtocol) {
		t.Errorf("consents from another session verified: %v", err)
	}
	if _, err := nets[1].clients[1].Unmask([]int{1, 2, 3}, consents[1]); err != nil {
		t.Errorf("the session's own consents: %v", err)
	}
}
