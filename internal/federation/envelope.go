package federation

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/airlock-dev/airlock/internal/share"
)

// EnvelopeVersion is the version of the request envelope format.
const EnvelopeVersion = 1

// Envelope is one signed node-to-node request. The bytes signed are
// exactly the bytes sent (SignedRequest.Envelope), so verification needs
// no canonical re-encoding.
type Envelope struct {
	V    int    `json:"v"`
	From string `json:"from"` // sending node
	To   string `json:"to"`   // receiving node: a request for another node is refused
	// Principal is who the sending node authenticated and acts for; the
	// receiver accepts it only for orgs the sender may represent.
	Principal Principal `json:"principal"`
	Purpose   string    `json:"purpose"`
	Agreement string    `json:"agreement,omitempty"`
	// Op is the operation asked: "sql.query".
	Op     string `json:"op"`
	SQL    string `json:"sql,omitempty"`
	Params []any  `json:"params,omitempty"`
	// Payload carries an operation's binary message (a clean-room
	// protocol step), signed with the rest.
	Payload []byte `json:"payload,omitempty"`
	// Nonce is 128 random bits, used once within the window.
	Nonce     string    `json:"nonce"`
	IssuedAt  time.Time `json:"issued_at"`
	NotAfter  time.Time `json:"not_after"`
	RequestID string    `json:"request_id"` // the sender's request, for both logs
}

// Principal is the acting principal as the sending node knows it.
type Principal struct {
	Name       string            `json:"name"`
	Org        string            `json:"org"`
	Roles      []string          `json:"roles,omitempty"`
	Country    string            `json:"country,omitempty"`
	Region     string            `json:"region,omitempty"`
	Clearance  string            `json:"clearance,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// PrincipalOf is the envelope's view of an identity.
func PrincipalOf(id share.Identity) Principal {
	return Principal{Name: id.Principal, Org: id.Org, Roles: id.Roles, Country: id.Country, Region: id.Region, Clearance: id.Clearance, Attributes: id.Attributes}
}

// SignedRequest is the body of every peer POST.
type SignedRequest struct {
	Envelope  []byte `json:"envelope"`  // JSON of Envelope
	Signature []byte `json:"signature"` // ed25519 over the labelled envelope bytes
}

const envelopeLabel = "peer request"

// NewNonce returns a fresh nonce.
func NewNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Seal signs an envelope.
func (k *NodeKey) Seal(e Envelope) (SignedRequest, error) {
	e.V = EnvelopeVersion
	b, err := json.Marshal(e)
	if err != nil {
		return SignedRequest{}, err
	}
	return SignedRequest{Envelope: b, Signature: k.sign(envelopeLabel, b)}, nil
}

// Open checks a signed request's signature with the sender's pinned key
// and decodes it strictly. It does not judge the window or the nonce.
func Open(r SignedRequest, pub ed25519.PublicKey) (Envelope, error) {
	var e Envelope
	if !verify(pub, envelopeLabel, r.Envelope, r.Signature) {
		return e, errors.New("the envelope's signature does not verify with the peer's pinned key")
	}
	dec := json.NewDecoder(bytes.NewReader(r.Envelope))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil {
		return e, errors.New("the envelope does not decode")
	}
	if e.V != EnvelopeVersion {
		return e, fmt.Errorf("envelope version %d is not %d", e.V, EnvelopeVersion)
	}
	return e, nil
}
