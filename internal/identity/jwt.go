package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/airlock-dev/airlock/internal/workspace"
)

// JWK is one JSON Web Key (public parts only).
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
	Crv string `json:"crv,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

type verifyKey struct {
	alg string
	pub crypto.PublicKey
}

// JWTVerifier checks JWT signatures against a key set and claims against
// the configuration.
type JWTVerifier struct {
	cfg  workspace.JWTConfig
	keys map[string]verifyKey
}

// NewJWTVerifier loads the JWKS file named by cfg.
func NewJWTVerifier(cfg workspace.JWTConfig, jwksPath string) (*JWTVerifier, error) {
	b, err := os.ReadFile(jwksPath)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	var set JWKS
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("jwks %s: %w", jwksPath, err)
	}
	v := &JWTVerifier{cfg: cfg, keys: map[string]verifyKey{}}
	for _, k := range set.Keys {
		vk, err := parseJWK(k)
		if err != nil {
			return nil, fmt.Errorf("jwks %s: key %q: %w", jwksPath, k.Kid, err)
		}
		v.keys[k.Kid] = vk
	}
	if len(v.keys) == 0 {
		return nil, fmt.Errorf("jwks %s: no keys", jwksPath)
	}
	return v, nil
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func parseJWK(k JWK) (verifyKey, error) {
	switch k.Kty {
	case "RSA":
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil || len(n) < 256 {
			return verifyKey{}, fmt.Errorf("bad RSA key (need >= 2048 bits)")
		}
		return verifyKey{"RS256", &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}}, nil
	case "EC":
		if k.Crv != "P-256" {
			return verifyKey{}, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		if err1 != nil || err2 != nil {
			return verifyKey{}, fmt.Errorf("bad EC key")
		}
		pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if !pub.Curve.IsOnCurve(pub.X, pub.Y) {
			return verifyKey{}, fmt.Errorf("EC point not on curve")
		}
		return verifyKey{"ES256", pub}, nil
	case "OKP":
		x, err := b64(k.X)
		if err != nil || k.Crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
			return verifyKey{}, fmt.Errorf("bad Ed25519 key")
		}
		return verifyKey{"EdDSA", ed25519.PublicKey(x)}, nil
	}
	return verifyKey{}, fmt.Errorf("unsupported key type %q", k.Kty)
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// Verify checks a compact JWT and maps its claims to an identity.
func (v *JWTVerifier) Verify(tok string, lookup func(string) *workspace.Principal, now time.Time) (Identity, error) {
	var parts [3]string
	i, j := 0, 0
	for k := 0; k < len(tok); k++ {
		if tok[k] == '.' {
			if j == 2 {
				return Identity{}, fail("malformed JWT")
			}
			parts[j] = tok[i:k]
			j++
			i = k + 1
		}
	}
	parts[2] = tok[i:]
	hb, err := b64(parts[0])
	if err != nil {
		return Identity{}, fail("malformed JWT header")
	}
	var h jwtHeader
	if err := json.Unmarshal(hb, &h); err != nil {
		return Identity{}, fail("malformed JWT header")
	}
	key, ok := v.keys[h.Kid]
	if !ok {
		return Identity{}, fail("JWT key id is not in the key set")
	}
	if h.Alg != key.alg {
		return Identity{}, fail("JWT algorithm %q is not accepted for this key", h.Alg)
	}
	sig, err := b64(parts[2])
	if err != nil {
		return Identity{}, fail("malformed JWT signature")
	}
	signed := []byte(parts[0] + "." + parts[1])
	if !verifySig(key, signed, sig) {
		return Identity{}, fail("JWT signature does not verify")
	}
	pb, err := b64(parts[1])
	if err != nil {
		return Identity{}, fail("malformed JWT payload")
	}
	var claims map[string]any
	if err := json.Unmarshal(pb, &claims); err != nil {
		return Identity{}, fail("malformed JWT payload")
	}
	if err := v.checkClaims(claims, now); err != nil {
		return Identity{}, err
	}
	name, _ := claims[v.cfg.PrincipalClaim].(string)
	if name == "" {
		return Identity{}, fail("JWT has no %q claim", v.cfg.PrincipalClaim)
	}
	// A declared principal's attributes come from the workspace; the IdP
	// cannot grant itself a different org. Undeclared principals take
	// their attributes from the mapped claims.
	if p := lookup(name); p != nil {
		return FromPrincipal(p, "jwt"), nil
	}
	id := Identity{Principal: name, Method: "jwt", Attributes: map[string]string{}}
	for attr, claim := range v.cfg.Claims {
		val := claims[claim]
		switch attr {
		case "roles":
			switch x := val.(type) {
			case []any:
				for _, r := range x {
					if s, ok := r.(string); ok {
						id.Roles = append(id.Roles, s)
					}
				}
			case string:
				id.Roles = []string{x}
			}
			continue
		}
		s, _ := val.(string)
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
			id.Attributes[attr] = s
		}
	}
	if id.Org == "" {
		return Identity{}, fail("JWT for undeclared principal has no org claim")
	}
	return id, nil
}

func verifySig(k verifyKey, signed, sig []byte) bool {
	switch k.alg {
	case "RS256":
		d := sha256.Sum256(signed)
		return rsa.VerifyPKCS1v15(k.pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig) == nil
	case "ES256":
		if len(sig) != 64 {
			return false
		}
		d := sha256.Sum256(signed)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(k.pub.(*ecdsa.PublicKey), d[:], r, s)
	case "EdDSA":
		return ed25519.Verify(k.pub.(ed25519.PublicKey), signed, sig)
	}
	return false
}

func (v *JWTVerifier) checkClaims(c map[string]any, now time.Time) error {
	leeway := v.cfg.Leeway
	if iss, _ := c["iss"].(string); iss != v.cfg.Issuer {
		return fail("JWT issuer is not trusted")
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
		return fail("JWT audience does not include %q", v.cfg.Audience)
	}
	exp, ok := c["exp"].(float64)
	if !ok {
		return fail("JWT has no expiry")
	}
	if !now.Before(time.Unix(int64(exp), 0).Add(leeway)) {
		return fail("JWT expired at %s", time.Unix(int64(exp), 0).UTC().Format(time.RFC3339))
	}
	if nbf, ok := c["nbf"].(float64); ok && now.Add(leeway).Before(time.Unix(int64(nbf), 0)) {
		return fail("JWT is not valid before %s", time.Unix(int64(nbf), 0).UTC().Format(time.RFC3339))
	}
	if iat, ok := c["iat"].(float64); ok && now.Add(leeway).Before(time.Unix(int64(iat), 0)) {
		return fail("JWT was issued in the future")
	}
	return nil
}
