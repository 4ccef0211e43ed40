// Package jwttest mints keys, key sets and JWTs for tests of the JWT path.
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
	"testing"

	"github.com/airlock-dev/airlock/internal/identity"
)

// Issuer holds signing keys and the JWKS that publishes their public halves.
type Issuer struct {
	RSA  *rsa.PrivateKey
	EC   *ecdsa.PrivateKey
	Ed   ed25519.PrivateKey
	JWKS identity.JWKS
	Path string // the JWKS file
}

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// New generates one key of each kind (kids "rsa", "ec", "ed") and writes the
// JWKS into a temp dir.
func New(t testing.TB) *Issuer {
	t.Helper()
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	iss := &Issuer{RSA: r, EC: e, Ed: ed}
	iss.JWKS.Keys = []identity.JWK{
		{Kty: "RSA", Kid: "rsa", N: enc(r.N.Bytes()), E: enc(big.NewInt(int64(r.E)).Bytes())},
		{Kty: "EC", Kid: "ec", Crv: "P-256", X: enc(pad32(e.X.Bytes())), Y: enc(pad32(e.Y.Bytes()))},
		{Kty: "OKP", Kid: "ed", Crv: "Ed25519", X: enc(ed.Public().(ed25519.PublicKey))},
	}
	b, _ := json.Marshal(iss.JWKS)
	iss.Path = filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(iss.Path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return iss
}

func pad32(b []byte) []byte {
	out := make([]byte, 32)
	copy(out[32-len(b):], b)
	return out
}

// Sign makes a compact JWT with the given header alg/kid and claims, signed
// with the key named by kid ("rsa", "ec", "ed"). alg "none" leaves the
// signature empty; alg "HS256" signs with secret (for key-confusion tests).
func (iss *Issuer) Sign(t testing.TB, alg, kid string, claims map[string]any, secret []byte) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"})
	p, _ := json.Marshal(claims)
	signing := enc(h) + "." + enc(p)
	d := sha256.Sum256([]byte(signing))
	var sig []byte
	switch {
	case alg == "none":
	case alg == "HS256":
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(signing))
		sig = m.Sum(nil)
	case kid == "rsa":
		sig, _ = rsa.SignPKCS1v15(rand.Reader, iss.RSA, crypto.SHA256, d[:])
	case kid == "ec":
		r, s, _ := ecdsa.Sign(rand.Reader, iss.EC, d[:])
		sig = append(pad32(r.Bytes()), pad32(s.Bytes())...)
	case kid == "ed":
		sig = ed25519.Sign(iss.Ed, []byte(signing))
	}
	return signing + "." + enc(sig)
}
