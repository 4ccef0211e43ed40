// Package jwttest mints key pairs, JWKS files and signed JWTs for tests of
// the JWT path, in package identity and in other packages' integration tests.
// It is test support only: nothing on a production path imports it.
package jwttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/identity"
)

// The key ids New publishes.
const (
	KidRSA = "rsa" // RS256
	KidEC  = "ec"  // ES256
	KidEd  = "ed"  // EdDSA
)

// Issuer holds signing keys and the JWKS that publishes their public halves.
type Issuer struct {
	RSA  *rsa.PrivateKey
	EC   *ecdsa.PrivateKey
	Ed   ed25519.PrivateKey
	JWKS identity.JWKS
	Path string // the JWKS file, in a test temp dir
}

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// New generates one key of each kind (kids "rsa", "ec", "ed") and writes the
// JWKS into a temp dir. Two Issuers share kids but not keys, which is how
// tests forge "a token signed by another key with the same kid".
func New(t testing.TB) *Issuer {
	t.Helper()
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := e.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	iss := &Issuer{RSA: r, EC: e, Ed: ed}
	iss.JWKS.Keys = []identity.JWK{
		{Kty: "RSA", Kid: KidRSA, Use: "sig", N: enc(r.N.Bytes()), E: enc(big.NewInt(int64(r.E)).Bytes())},
		{Kty: "EC", Kid: KidEC, Use: "sig", Crv: "P-256", X: enc(point[1:33]), Y: enc(point[33:])},
		{Kty: "OKP", Kid: KidEd, Use: "sig", Crv: "Ed25519", X: enc(ed.Public().(ed25519.PublicKey))},
	}
	iss.Path = WriteJWKS(t, iss.JWKS)
	return iss
}

// WriteJWKS writes a key set into a fresh temp dir and returns its path.
func WriteJWKS(t testing.TB, set identity.JWKS) string {
	t.Helper()
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Claims returns the usual claims: iss, aud, sub, iat = now and exp = now+ttl.
func Claims(issuer, audience, sub string, now time.Time, ttl time.Duration) map[string]any {
	return map[string]any{"iss": issuer, "aud": audience, "sub": sub, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
}

// Sign makes a compact JWT with header {alg, kid, typ: JWT} and the claims.
// See SignHeader for how the signature is made.
func (iss *Issuer) Sign(t testing.TB, alg, kid string, claims map[string]any, secret []byte) string {
	t.Helper()
	return iss.SignHeader(t, map[string]any{"alg": alg, "kid": kid, "typ": "JWT"}, claims, secret)
}

// SignHeader makes a compact JWT with an arbitrary header. The signature is
// chosen by the header's alg and kid: alg "none" leaves it empty; an alg
// starting with "HS" is HMAC-SHA256 with secret (for key-confusion tests);
// otherwise the key named by kid ("rsa", "ec"; anything else means "ed")
// signs with its own algorithm, whatever alg says, so tests can lie about
// the alg.
func (iss *Issuer) SignHeader(t testing.TB, header, claims map[string]any, secret []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signing := enc(h) + "." + enc(p)
	return signing + "." + enc(iss.signature(t, header, []byte(signing), secret))
}

func (iss *Issuer) signature(t testing.TB, header map[string]any, signing, secret []byte) []byte {
	t.Helper()
	alg, _ := header["alg"].(string)
	kid, _ := header["kid"].(string)
	d := sha256.Sum256(signing)
	switch {
	case alg == "none":
		return nil
	case strings.HasPrefix(alg, "HS"):
		m := hmac.New(sha256.New, secret)
		m.Write(signing)
		return m.Sum(nil)
	case kid == KidRSA:
		sig, err := rsa.SignPKCS1v15(rand.Reader, iss.RSA, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case kid == KidEC:
		r, s, err := ecdsa.Sign(rand.Reader, iss.EC, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	default:
		return ed25519.Sign(iss.Ed, signing)
	}
}
