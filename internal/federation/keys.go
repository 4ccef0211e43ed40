// Package federation makes Airlock nodes of several organisations a
// network. A node knows its peers from the workspace's peers file (name,
// org, region, URL and the pinned node key); every node-to-node exchange
// is mutual TLS with certificates made from the node keys (no CA: the
// key is the identity) and, on top, a request envelope signed by the
// sender's node key that names the principal, purpose, recipient node, a
// nonce and a validity window.
//
// Two roles, one package:
//
//   - member: the peer endpoint (Member) answers a peer's signed
//     sub-request by running it through the node's own kernel, under its
//     own policies, agreements, budgets and output controls, as any other
//     channel does; the answer carries a receipt signed by the member:
//     its audit index, the entry's leaf hash, a signed checkpoint and the
//     inclusion proof.
//   - coordinator: a query over a federated dataset (a manifest whose
//     source lists members) is an operation (Federator) whose Run sends
//     one sub-request per member and whose Release combines the released
//     partials. It charges nothing: each member charges its own budget.
//
// Nodes also witness each other's audit logs (witness.go): each cosigns a
// peer's checkpoint only if it is consistent with everything it and the
// other witnesses cosigned before, so a node that shows two histories is
// caught.
package federation

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// NodeKey is this node's ed25519 identity: the key of its audit
// checkpoints, its TLS certificate and its signed envelopes and receipts.
type NodeKey struct {
	Name     string
	Verifier string // note verifier key, as peers pin it
	priv     ed25519.PrivateKey
}

// ParseSigner reads a note signer key (PRIVATE+KEY+name+hash+key, the
// first line of <data_dir>/node.key).
func ParseSigner(skey, vkey string) (*NodeKey, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return nil, errors.New("federation: malformed node signer key")
	}
	b, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != 1 {
		return nil, errors.New("federation: node key is not an ed25519 note key")
	}
	k := &NodeKey{Name: parts[2], Verifier: vkey, priv: ed25519.NewKeyFromSeed(b[1:])}
	name, pub, err := ParseVerifier(vkey)
	if err != nil || name != k.Name || !pub.Equal(k.priv.Public()) {
		return nil, errors.New("federation: node signer and verifier keys do not match")
	}
	return k, nil
}

// ParseVerifier reads a note verifier key (name+hash+key): the peers
// file's pinned key.
func ParseVerifier(vkey string) (string, ed25519.PublicKey, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return "", nil, errors.New("federation: malformed node key")
	}
	b, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(b) != 1+ed25519.PublicKeySize || b[0] != 1 {
		return "", nil, errors.New("federation: node key is not an ed25519 note key")
	}
	pub := ed25519.PublicKey(b[1:])
	h := sha256.Sum256(append([]byte(parts[0]+"\n"), b...))
	if fmt.Sprintf("%08x", binary.BigEndian.Uint32(h[:4])) != parts[1] {
		return "", nil, errors.New("federation: node key hash does not match the key")
	}
	return parts[0], pub, nil
}

// SameKey reports whether two verifier keys are well formed and name the
// same public key (their names may differ).
func SameKey(a, b string) bool {
	_, pa, err1 := ParseVerifier(a)
	_, pb, err2 := ParseVerifier(b)
	return err1 == nil && err2 == nil && pa.Equal(pb)
}

// Public is the node's public key.
func (k *NodeKey) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// sign signs msg under a domain-separation label, so a signature made for
// one purpose (an envelope, a receipt, a cosignature) never verifies as
// another, nor as a note signature.
// Sign signs msg under a label (domain separation: "airlock <label> v1\n"),
// for records other packages publish, such as export release records.
func (k *NodeKey) Sign(label string, msg []byte) []byte { return k.sign(label, msg) }

// Verify checks a signature made by [NodeKey.Sign].
func Verify(pub ed25519.PublicKey, label string, msg, sig []byte) bool {
	return verify(pub, label, msg, sig)
}

func (k *NodeKey) sign(label string, msg []byte) []byte {
	return ed25519.Sign(k.priv, labelled(label, msg))
}

func verify(pub ed25519.PublicKey, label string, msg, sig []byte) bool {
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, labelled(label, msg), sig)
}

func labelled(label string, msg []byte) []byte {
	return append([]byte("airlock "+label+" v1\n"), msg...)
}

// Certificate is a self-signed TLS certificate for the node key, valid a
// day either side of now; peers check the key, not the issuer.
func (k *NodeKey) Certificate(now time.Time) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: k.Name, Organization: []string{"airlock node"}},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{k.Name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k.priv)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k.priv}, nil
}

// certKey is the ed25519 key of a TLS peer's leaf certificate. The TLS
// 1.3 handshake has proved the peer holds its private half.
func certKey(certs []*x509.Certificate) (ed25519.PublicKey, error) {
	if len(certs) == 0 {
		return nil, errors.New("no client certificate")
	}
	pub, ok := certs[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("the certificate's key is not ed25519")
	}
	return pub, nil
}

// ServerTLS is the peer endpoint's TLS configuration: TLS 1.3, a client
// certificate required (which peer it belongs to is decided per request,
// so that an unknown key is refused and audited, not just dropped).
func (k *NodeKey) ServerTLS(now time.Time) (*tls.Config, error) {
	cert, err := k.Certificate(now)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS13}, nil
}

// ClientTLS is the configuration for calling one peer: the server's
// certificate must carry exactly the peer's pinned key.
func (k *NodeKey) ClientTLS(now time.Time, pinned ed25519.PublicKey) (*tls.Config, error) {
	cert, err := k.Certificate(now)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates:       []tls.Certificate{cert},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // no CA: the pinned key below is the check
		VerifyConnection: func(cs tls.ConnectionState) error {
			pub, err := certKey(cs.PeerCertificates)
			if err != nil {
				return err
			}
			if !pub.Equal(pinned) {
				return errors.New("the peer's certificate does not carry its pinned node key")
			}
			return nil
		},
	}, nil
}
