package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/big"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/internal/workspace"
)

// JWK is one JSON Web Key of a JWKS file. Only public keys are accepted: a
// key carrying private material ("d") or a symmetric key ("oct", "k") makes
// the whole key set invalid.
type JWK struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid,omitempty"`
	Alg    string   `json:"alg,omitempty"`
	Use    string   `json:"use,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	Crv    string   `json:"crv,omitempty"`
	N      string   `json:"n,omitempty"` // RSA modulus
	E      string   `json:"e,omitempty"` // RSA exponent
	X      string   `json:"x,omitempty"` // EC / OKP
	Y      string   `json:"y,omitempty"` // EC
	D      string   `json:"d,omitempty"` // private: refused
	K      string   `json:"k,omitempty"` // symmetric: refused
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// The JWS algorithms a JWTVerifier accepts, each bound to one key type.
const (
	AlgRS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256; RSA keys of at least 2048 bits
	AlgES256 = "ES256" // ECDSA P-256 with SHA-256; EC keys on P-256
	AlgEdDSA = "EdDSA" // Ed25519; OKP keys on Ed25519 (header alg "Ed25519" is accepted too)
)

var errNotB64 = errors.New("not base64url")

type verifyKey struct {
	alg string // AlgRS256 | AlgES256 | AlgEdDSA
	pub crypto.PublicKey
}

// accepts reports whether a JWT header alg may be verified with k. The alg is
// pinned by the key, never chosen by the token.
func (k verifyKey) accepts(alg string) bool {
	return alg == k.alg || (k.alg == AlgEdDSA && alg == "Ed25519")
}

// JWTVerifier checks JWT signatures against a key set and claims against a
// JWTConfig. It is immutable and safe for concurrent use.
type JWTVerifier struct {
	cfg      workspace.JWTConfig
	keys     map[string]verifyKey
	unusable map[string]string // kid -> why the key cannot verify
}

// defaultLeeway is used when JWTConfig.Leeway is zero.
const defaultLeeway = 30 * time.Second

// NewJWTVerifier reads the JWKS file at jwksPath (cfg.JWKSFile resolved by the
// caller) and returns a verifier for cfg. cfg.Issuer and cfg.Audience are
// required; PrincipalClaim defaults to "sub" and a zero Leeway to 30s.
func NewJWTVerifier(cfg workspace.JWTConfig, jwksPath string) (*JWTVerifier, error) {
	b, err := os.ReadFile(jwksPath)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	v, err := NewJWTVerifierFromJWKS(cfg, b)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", jwksPath, err)
	}
	return v, nil
}

// NewJWTVerifierFromJWKS is NewJWTVerifier with the JWKS document given as
// bytes.
//
// Keys whose use is not "sig", whose key_ops lack "verify", or whose type,
// curve or alg is not supported are left out (a token naming one is refused
// with ErrUnsupportedAlg). A malformed key of a supported type, a key with
// private or symmetric material, a duplicate kid, or a set without one usable
// key is an error.
func NewJWTVerifierFromJWKS(cfg workspace.JWTConfig, jwks []byte) (*JWTVerifier, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("auth.jwt.issuer is required")
	}
	if cfg.Audience == "" {
		return nil, errors.New("auth.jwt.audience is required")
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("auth.jwt.leeway must not be negative")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = defaultLeeway
	}
	if cfg.PrincipalClaim == "" {
		cfg.PrincipalClaim = "sub"
	}
	cfg.Claims = maps.Clone(cfg.Claims)
	var set JWKS
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	v := &JWTVerifier{cfg: cfg, keys: map[string]verifyKey{}, unusable: map[string]string{}}
	for i, k := range set.Keys {
		if k.D != "" || k.K != "" || k.Kty == "oct" {
			return nil, fmt.Errorf("key %d (kid %q) holds private or symmetric key material; publish only public keys", i, k.Kid)
		}
		_, dup1 := v.keys[k.Kid]
		_, dup2 := v.unusable[k.Kid]
		if dup1 || dup2 {
			return nil, fmt.Errorf("key %d: duplicate kid %q", i, k.Kid)
		}
		vk, why, err := parseJWK(k)
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i, k.Kid, err)
		}
		if why != "" {
			v.unusable[k.Kid] = why
			continue
		}
		v.keys[k.Kid] = vk
	}
	if len(v.keys) == 0 {
		return nil, errors.New("no usable verification key (supported: RSA >= 2048 bits with RS256, EC P-256 with ES256, OKP Ed25519 with EdDSA)")
	}
	return v, nil
}

// parseJWK returns the verification key of k, or why k is not usable, or an
// error if k is malformed.
func parseJWK(k JWK) (verifyKey, string, error) {
	if k.Use != "" && k.Use != "sig" {
		return verifyKey{}, fmt.Sprintf("use is %q, not \"sig\"", k.Use), nil
	}
	if k.KeyOps != nil && !slices.Contains(k.KeyOps, "verify") {
		return verifyKey{}, "key_ops does not include \"verify\"", nil
	}
	switch k.Kty {
	case "RSA":
		if k.Alg != "" && k.Alg != AlgRS256 {
			return verifyKey{}, fmt.Sprintf("RSA key alg %q is not supported (only RS256)", k.Alg), nil
		}
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return verifyKey{}, "", errors.New("malformed RSA key")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 {
			return verifyKey{}, "", fmt.Errorf("RSA key of %d bits; at least 2048 are required", pub.N.BitLen())
		}
		if pub.E < 3 || pub.E%2 == 0 || pub.E > math.MaxInt32 {
			return verifyKey{}, "", errors.New("RSA public exponent out of range")
		}
		return verifyKey{AlgRS256, pub}, "", nil
	case "EC":
		if k.Crv != "P-256" {
			return verifyKey{}, fmt.Sprintf("EC curve %q is not supported (only P-256)", k.Crv), nil
		}
		if k.Alg != "" && k.Alg != AlgES256 {
			return verifyKey{}, fmt.Sprintf("EC key alg %q is not supported (only ES256)", k.Alg), nil
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return verifyKey{}, "", errors.New("malformed P-256 key")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return verifyKey{}, "", fmt.Errorf("invalid P-256 point: %w", err)
		}
		return verifyKey{AlgES256, pub}, "", nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return verifyKey{}, fmt.Sprintf("OKP curve %q is not supported (only Ed25519)", k.Crv), nil
		}
		if k.Alg != "" && k.Alg != AlgEdDSA && k.Alg != "Ed25519" {
			return verifyKey{}, fmt.Sprintf("OKP key alg %q is not supported (only EdDSA)", k.Alg), nil
		}
		x, err := b64(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return verifyKey{}, "", errors.New("malformed Ed25519 key")
		}
		return verifyKey{AlgEdDSA, ed25519.PublicKey(x)}, "", nil
	}
	return verifyKey{}, fmt.Sprintf("key type %q is not supported", k.Kty), nil
}

// decodeObject decodes one JSON object with numbers kept as json.Number and
// nothing after it.
func decodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after JSON object")
	}
	return m, nil
}

// Verify checks a compact JWT and maps its claims to an identity. lookup
// returns the declared principal of a name, or nil; a nil lookup declares
// nobody. now is the verifier's clock.
//
// The checks run in this order: structure, header (alg "none", HMAC algs,
// "crit" and "b64" refused), key by kid, alg against the key, signature, then
// (only over signed bytes) iss, aud, exp, nbf, iat and the principal claim.
func (v *JWTVerifier) Verify(tok string, lookup func(string) *workspace.Principal, now time.Time) (Identity, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return Identity{}, fail(ErrMalformed, "malformed JWT: want three dot-separated parts")
	}
	hb, err := b64(parts[0])
	if err != nil {
		return Identity{}, fail(ErrMalformed, "malformed JWT header: not base64url")
	}
	h, err := decodeObject(hb)
	if err != nil {
		return Identity{}, fail(ErrMalformed, "malformed JWT header: not a JSON object")
	}
	alg, ok := h["alg"].(string)
	if !ok || alg == "" {
		return Identity{}, fail(ErrMalformed, "malformed JWT header: no alg")
	}
	switch {
	case strings.EqualFold(alg, "none"):
		return Identity{}, fail(ErrUnsupportedAlg, "unsigned JWT (alg none) is never accepted")
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return Identity{}, fail(ErrUnsupportedAlg, "JWT algorithm %s (HMAC) is never accepted", printable(alg))
	}
	if _, ok := h["crit"]; ok {
		return Identity{}, fail(ErrUnsupportedAlg, "JWT header has critical extensions (crit), none of which is supported")
	}
	if _, ok := h["b64"]; ok {
		return Identity{}, fail(ErrUnsupportedAlg, "JWT header b64 (unencoded payload) is not supported")
	}
	kid, ok := h["kid"].(string)
	if !ok && h["kid"] != nil {
		return Identity{}, fail(ErrMalformed, "malformed JWT header: kid is not a string")
	}
	key, err := v.key(kid)
	if err != nil {
		return Identity{}, err
	}
	if !key.accepts(alg) {
		return Identity{}, fail(ErrUnsupportedAlg, "JWT algorithm %s is not accepted for key %s (which verifies %s only)", printable(alg), printable(kid), key.alg)
	}
	sig, err := b64(parts[2])
	if err != nil || len(sig) == 0 {
		return Identity{}, fail(ErrMalformed, "malformed JWT signature")
	}
	if !verifySig(key, []byte(parts[0]+"."+parts[1]), sig) {
		return Identity{}, fail(ErrBadSignature, "JWT signature does not verify")
	}
	pb, err := b64(parts[1])
	if err != nil {
		return Identity{}, fail(ErrMalformed, "malformed JWT payload: not base64url")
	}
	claims, err := decodeObject(pb)
	if err != nil {
		return Identity{}, fail(ErrMalformed, "malformed JWT payload: not a JSON object")
	}
	if err := v.checkClaims(claims, now); err != nil {
		return Identity{}, err
	}
	return v.identity(claims, lookup)
}

// key picks the verification key named by kid. A token without kid may use
// a key published without kid, or the only key of a one-key set.
func (v *JWTVerifier) key(kid string) (verifyKey, error) {
	if k, ok := v.keys[kid]; ok {
		return k, nil
	}
	if why, ok := v.unusable[kid]; ok {
		return verifyKey{}, fail(ErrUnsupportedAlg, "JWT key %s cannot verify signatures: %s", printable(kid), why)
	}
	if kid == "" {
		if len(v.keys) == 1 {
			for _, k := range v.keys {
				return k, nil
			}
		}
		return verifyKey{}, fail(ErrUnknownKey, "JWT has no kid and the key set has several keys")
	}
	return verifyKey{}, fail(ErrUnknownKey, "JWT key id is not in the key set")
}

func verifySig(k verifyKey, signed, sig []byte) bool {
	switch k.alg {
	case AlgRS256:
		d := sha256.Sum256(signed)
		return rsa.VerifyPKCS1v15(k.pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig) == nil
	case AlgES256:
		// JWS ES256 signatures are r||s, 32 bytes each; DER is refused.
		if len(sig) != 64 {
			return false
		}
		d := sha256.Sum256(signed)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(k.pub.(*ecdsa.PublicKey), d[:], r, s)
	case AlgEdDSA:
		return ed25519.Verify(k.pub.(ed25519.PublicKey), signed, sig)
	}
	return false
}

// maxNumericDate is 9999-12-31T23:59:59Z; later dates are malformed (and
// would overflow conversions).
const maxNumericDate = 253402300799

// numericDate reads a NumericDate claim; present reports whether the claim
// exists at all.
func numericDate(c map[string]any, name string) (t time.Time, present bool, err error) {
	raw, ok := c[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return time.Time{}, true, fail(ErrMalformed, "JWT claim %s is not a number", name)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, true, fail(ErrMalformed, "JWT claim %s is not a valid date", name)
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)), true, nil
}

func (v *JWTVerifier) checkClaims(c map[string]any, now time.Time) error {
	leeway := v.cfg.Leeway
	if iss, _ := c["iss"].(string); iss != v.cfg.Issuer {
		return fail(ErrWrongIssuer, "JWT issuer is not %q", v.cfg.Issuer)
	}
	audOK := false
	switch a := c["aud"].(type) {
	case string:
		audOK = a == v.cfg.Audience
	case []any:
		for _, x := range a {
			if s, _ := x.(string); s == v.cfg.Audience {
				audOK = true
			}
		}
	}
	if !audOK {
		return fail(ErrWrongAudience, "JWT audience does not include %q", v.cfg.Audience)
	}
	exp, ok, err := numericDate(c, "exp")
	if err != nil {
		return err
	}
	if !ok {
		return fail(ErrMissingClaim, "JWT has no expiry (exp)")
	}
	if !now.Before(exp.Add(leeway)) {
		return fail(ErrExpired, "JWT expired at %s", formatTime(exp))
	}
	nbf, ok, err := numericDate(c, "nbf")
	if err != nil {
		return err
	}
	if ok && now.Add(leeway).Before(nbf) {
		return fail(ErrNotYetValid, "JWT is not valid before %s", formatTime(nbf))
	}
	iat, ok, err := numericDate(c, "iat")
	if err != nil {
		return err
	}
	if ok && now.Add(leeway).Before(iat) {
		return fail(ErrNotYetValid, "JWT was issued in the future (%s)", formatTime(iat))
	}
	return nil
}

// identity maps verified claims to an identity: a declared principal keeps
// its declared attributes; an undeclared one takes them from the mapped
// claims and must have an org.
func (v *JWTVerifier) identity(c map[string]any, lookup func(string) *workspace.Principal) (Identity, error) {
	name, _ := c[v.cfg.PrincipalClaim].(string)
	if name == "" {
		return Identity{}, fail(ErrMissingClaim, "JWT has no string %q claim naming the principal", v.cfg.PrincipalClaim)
	}
	if len(name) > 256 || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return Identity{}, fail(ErrMalformed, "JWT %q claim is not a valid principal name", v.cfg.PrincipalClaim)
	}
	if lookup != nil {
		if p := lookup(name); p != nil {
			return FromPrincipal(p, MethodJWT), nil
		}
	}
	id := Identity{Principal: name, Method: MethodJWT}
	for attr, claim := range v.cfg.Claims {
		val, ok := c[claim]
		if !ok {
			continue
		}
		if attr == "roles" {
			id.Roles = claimStrings(val)
			continue
		}
		s, ok := claimString(val)
		if !ok {
			continue
		}
		switch attr {
		case "org":
			id.Org = s
		case "region":
			id.Region = s
		case "country":
			id.Country = s
		case "clearance":
			id.Clearance = s
		default:
			if id.Attributes == nil {
				id.Attributes = map[string]string{}
			}
			id.Attributes[attr] = s
		}
	}
	if id.Org == "" {
		return Identity{}, fail(ErrMissingClaim, "principal %q is not declared and the JWT carries no org claim", name)
	}
	slices.Sort(id.Roles)
	id.Roles = slices.Compact(id.Roles)
	return id, nil
}

// claimString renders a scalar claim as a string.
func claimString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// claimStrings reads a roles claim: a JSON array of strings (other elements
// are ignored) or a single string.
func claimStrings(v any) []string {
	switch x := v.(type) {
	case string:
		if x != "" {
			return []string{x}
		}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// printable quotes a short header value for an error message, or hides it.
func printable(s string) string {
	if len(s) > 32 {
		return "(too long to show)"
	}
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return "(unprintable)"
		}
	}
	return strconv.Quote(s)
}
