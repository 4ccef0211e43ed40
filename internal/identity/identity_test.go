package identity_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/identity"
	"github.com/airlock-dev/airlock/internal/identity/jwttest"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// memTokens is an in-memory TokenLookup keyed by hash.
type memTokens map[string]store.Token

func (m memTokens) TokenByHash(_ context.Context, h []byte) (store.Token, error) {
	t, ok := m[string(h)]
	if !ok {
		return t, store.ErrNotFound
	}
	return t, nil
}

// lookupFunc adapts a func to TokenLookup.
type lookupFunc func([]byte) (store.Token, error)

func (f lookupFunc) TokenByHash(_ context.Context, h []byte) (store.Token, error) { return f(h) }

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

var principals = map[string]*workspace.Principal{
	"analyst@partner": {Name: "analyst@partner", Org: "partner", Region: "eu", Country: "NL", Clearance: "standard", Roles: []string{"analyst"}},
}

func lookup(n string) *workspace.Principal { return principals[n] }

const (
	issuer   = "https://idp.test"
	audience = "airlock"
)

func jwtConfig(path string) workspace.JWTConfig {
	return workspace.JWTConfig{
		JWKSFile: path, Issuer: issuer, Audience: audience, PrincipalClaim: "sub", Leeway: 30 * time.Second,
		Claims: map[string]string{"org": "org", "region": "region", "roles": "groups", "clearance": "clr", "hospital_region": "hr"},
	}
}

func authn(t *testing.T) (*identity.Authenticator, *jwttest.Issuer, memTokens) {
	t.Helper()
	iss := jwttest.New(t)
	v, err := identity.NewJWTVerifier(jwtConfig(iss.Path), iss.Path)
	if err != nil {
		t.Fatal(err)
	}
	toks := memTokens{}
	return &identity.Authenticator{Tokens: toks, Principal: lookup, JWT: v, Now: func() time.Time { return now }}, iss, toks
}

func claims(mod func(map[string]any)) map[string]any {
	c := jwttest.Claims(issuer, audience, "analyst@partner", now.Add(-time.Minute), time.Hour)
	if mod != nil {
		mod(c)
	}
	return c
}

// wantFail checks that err is an authentication failure for reason, whose
// message contains want and does not contain secret.
func wantFail(t *testing.T, err error, reason error, want, secret string) {
	t.Helper()
	if !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("got %v, want an ErrUnauthenticated", err)
	}
	if !errors.Is(err, reason) {
		t.Fatalf("got %v, want reason %v", err, reason)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("got %q, want it to mention %q", err, want)
	}
	if secret != "" && strings.Contains(err.Error(), secret) {
		t.Fatalf("error %q echoes the credential", err)
	}
}

func TestNewTokenAndParseToken(t *testing.T) {
	shape := regexp.MustCompile(`^alk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$`)
	seen := map[string]bool{}
	for range 50 {
		tok, id, hash, err := identity.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if !shape.MatchString(tok) || !strings.HasPrefix(tok, "alk_"+id+"_") || seen[tok] || seen[id] {
			t.Fatalf("bad or repeated token %q (id %q)", tok, id)
		}
		seen[tok], seen[id] = true, true
		pid, phash, err := identity.ParseToken(tok)
		if err != nil || pid != id || !identity.EqualHash(phash, hash) || !identity.TokenMatches(tok, hash) {
			t.Fatalf("ParseToken(%q) = %q, %x, %v", tok, pid, phash, err)
		}
	}
	tok, _, hash, _ := identity.NewToken()
	other, _, _, _ := identity.NewToken()
	if identity.TokenMatches(other, hash) {
		t.Fatal("another token matched the hash")
	}
	for name, bad := range map[string]string{
		"empty":           "",
		"prefix only":     "alk_",
		"wrong prefix":    "alx_" + tok[4:],
		"uppercase id":    "alk_" + strings.ToUpper(tok[4:20]) + tok[20:],
		"non-hex id":      "alk_zzzzzzzzzzzzzzzz" + tok[20:],
		"wrong separator": tok[:20] + "-" + tok[21:],
		"short secret":    tok[:len(tok)-1],
		"long secret":     tok + "A",
		"newline":         tok[:30] + "\n" + tok[31:],
		"padding":         tok[:len(tok)-1] + "=",
		// The last of 43 characters carries 2 unused bits, which must be
		// zero: "B" (1) sets one, so this would be a second spelling.
		"non-canonical base64": tok[:len(tok)-1] + "B",
	} {
		_, _, err := identity.ParseToken(bad)
		if err == nil {
			t.Errorf("%s: accepted %q", name, bad)
			continue
		}
		wantFail(t, err, identity.ErrMalformed, "malformed API token", "")
	}
	if identity.EqualHash(nil, nil) || identity.EqualHash([]byte{}, []byte{}) {
		t.Fatal("empty hashes must never match")
	}
}

func TestAPITokens(t *testing.T) {
	ctx := context.Background()
	a, _, toks := authn(t)
	tok, id, hash, err := identity.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	secret := tok[21:]
	valid := store.Token{ID: id, Hash: hash, Principal: "analyst@partner", CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)}
	toks[string(hash)] = valid
	got, err := a.Authenticate(ctx, tok)
	if err != nil || got.Principal != "analyst@partner" || got.Org != "partner" || got.Method != identity.MethodToken {
		t.Fatalf("valid token: %+v, %v", got, err)
	}
	// The identity does not alias the workspace's principal.
	got.Roles[0] = "admin"
	if principals["analyst@partner"].Roles[0] != "analyst" {
		t.Fatal("identity aliases the workspace principal's roles")
	}

	other, _, _, _ := identity.NewToken()
	wrongSecret := tok[:21] + other[21:] // right id, another secret
	for _, c := range []struct {
		name   string
		tok    string
		rec    func(r *store.Token)
		reason error
		want   string
	}{
		{"unknown token", other, nil, identity.ErrUnknownToken, "unknown API token"},
		{"right id, wrong secret", wrongSecret, nil, identity.ErrUnknownToken, "unknown API token"},
		{"malformed", "alk_zz", nil, identity.ErrMalformed, "malformed"},
		{"revoked", tok, func(r *store.Token) { r.RevokedAt = now.Add(-time.Second) }, identity.ErrRevoked, "revoked"},
		{"revoked by a clock ahead of ours", tok, func(r *store.Token) { r.RevokedAt = now.Add(time.Hour) }, identity.ErrRevoked, "revoked"},
		{"expired", tok, func(r *store.Token) { r.ExpiresAt = now.Add(-time.Second) }, identity.ErrExpired, "expired"},
		{"expires exactly now", tok, func(r *store.Token) { r.ExpiresAt = now }, identity.ErrExpired, "expired"},
		{"principal no longer declared", tok, func(r *store.Token) { r.Principal = "gone@x" }, identity.ErrUnknownPrincipal, "no longer declared"},
		{"store returned another record", tok, func(r *store.Token) { r.ID = "0000000000000000" }, identity.ErrUnknownToken, "unknown"},
		{"store returned a record with another hash", tok, func(r *store.Token) { r.Hash = identity.HashToken(other) }, identity.ErrUnknownToken, "unknown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := valid
			if c.rec != nil {
				c.rec(&r)
			}
			toks[string(hash)] = r
			_, err := a.Authenticate(ctx, c.tok)
			wantFail(t, err, c.reason, c.want, secret)
			if len(c.tok) > 21 && strings.Contains(err.Error(), c.tok[21:]) {
				t.Fatal("error echoes the presented secret")
			}
		})
	}
	toks[string(hash)] = store.Token{ID: id, Hash: hash, Principal: "analyst@partner"} // never expires
	if _, err := a.Authenticate(ctx, tok); err != nil {
		t.Fatalf("token without expiry: %v", err)
	}

	// A failing store is not an authentication failure (the caller answers 5xx).
	broken := &identity.Authenticator{Tokens: lookupFunc(func([]byte) (store.Token, error) { return store.Token{}, errors.New("disk on fire") }), Principal: lookup}
	if _, err := broken.Authenticate(ctx, tok); err == nil || errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("store failure: got %v", err)
	}
	// No token store: API tokens are refused.
	_, err = (&identity.Authenticator{Principal: lookup}).Authenticate(ctx, tok)
	wantFail(t, err, identity.ErrNotConfigured, "not configured", secret)
}

func TestBearerShapes(t *testing.T) {
	a, iss, _ := authn(t)
	ctx := context.Background()
	for name, tok := range map[string]string{
		"empty":     "",
		"garbage":   "hello",
		"four dots": "a.b.c.d",
		"huge":      strings.Repeat("a", 17<<10),
	} {
		_, err := a.Authenticate(ctx, tok)
		if !errors.Is(err, identity.ErrUnauthenticated) || !errors.Is(err, identity.ErrMalformed) {
			t.Errorf("%s: got %v, want malformed", name, err)
		}
	}
	// A node without a JWT verifier refuses JWTs.
	noJWT := &identity.Authenticator{Principal: lookup, Now: func() time.Time { return now }}
	_, err := noJWT.Authenticate(ctx, iss.Sign(t, "EdDSA", "ed", claims(nil), nil))
	wantFail(t, err, identity.ErrNotConfigured, "not configured", "")
}

func TestJWTAccepts(t *testing.T) {
	a, iss, _ := authn(t)
	ctx := context.Background()
	for _, k := range []struct{ alg, kid string }{{"RS256", "rsa"}, {"ES256", "ec"}, {"EdDSA", "ed"}, {"Ed25519", "ed"}} {
		id, err := a.Authenticate(ctx, iss.Sign(t, k.alg, k.kid, claims(nil), nil))
		if err != nil || id.Principal != "analyst@partner" || id.Org != "partner" || id.Method != identity.MethodJWT {
			t.Fatalf("%s: got %+v, %v", k.alg, id, err)
		}
	}
	for name, mod := range map[string]func(map[string]any){
		"aud array":               func(c map[string]any) { c["aud"] = []any{"other", audience} },
		"expired within leeway":   func(c map[string]any) { c["exp"] = now.Add(-10 * time.Second).Unix() },
		"nbf within leeway":       func(c map[string]any) { c["nbf"] = now.Add(10 * time.Second).Unix() },
		"iat within leeway":       func(c map[string]any) { c["iat"] = now.Add(10 * time.Second).Unix() },
		"fractional numeric date": func(c map[string]any) { c["exp"] = float64(now.Unix()) + 3600.5 },
		"no iat":                  func(c map[string]any) { delete(c, "iat") },
	} {
		if _, err := a.Authenticate(ctx, iss.Sign(t, "EdDSA", "ed", claims(mod), nil)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestJWTIdentityMapping(t *testing.T) {
	a, iss, _ := authn(t)
	ctx := context.Background()
	// An undeclared principal takes its attributes from the mapped claims.
	id, err := a.Authenticate(ctx, iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) {
		c["sub"], c["org"], c["region"], c["clr"] = "new@idp", "idporg", "eu", "high"
		c["groups"] = []any{"analyst", "x", 7, "analyst"}
		c["hr"] = 3
	}), nil))
	if err != nil || id.Principal != "new@idp" || id.Org != "idporg" || id.Region != "eu" || id.Clearance != "high" ||
		strings.Join(id.Roles, ",") != "analyst,x" || id.Attributes["hospital_region"] != "3" || id.Country != "" {
		t.Fatalf("got %+v, %v", id, err)
	}
	// A single-string roles claim is one role.
	id, err = a.Authenticate(ctx, iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) {
		c["sub"], c["org"], c["groups"] = "new@idp", "idporg", "steward"
	}), nil))
	if err != nil || len(id.Roles) != 1 || id.Roles[0] != "steward" {
		t.Fatalf("got %+v, %v", id, err)
	}
	// A declared principal's attributes win: the IdP cannot move it to
	// another org or grant it roles.
	id, err = a.Authenticate(ctx, iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) {
		c["org"], c["groups"], c["clr"] = "stmary", []any{"steward"}, "high"
	}), nil))
	if err != nil || id.Org != "partner" || id.Clearance != "standard" || len(id.Roles) != 1 || id.Roles[0] != "analyst" {
		t.Fatalf("IdP claims overrode the declared principal: %+v, %v", id, err)
	}
	// Another principal claim.
	cfg := jwtConfig(iss.Path)
	cfg.PrincipalClaim = "email"
	v, err := identity.NewJWTVerifier(cfg, iss.Path)
	if err != nil {
		t.Fatal(err)
	}
	id, err = v.Verify(iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { c["email"], c["sub"] = "analyst@partner", "1234" }), nil), lookup, now)
	if err != nil || id.Principal != "analyst@partner" {
		t.Fatalf("principal_claim email: %+v, %v", id, err)
	}
}

// signRaw signs arbitrary header and payload bytes with the issuer's Ed25519 key.
func signRaw(iss *jwttest.Issuer, header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	s := enc([]byte(header)) + "." + enc([]byte(payload))
	return s + "." + enc(ed25519.Sign(iss.Ed, []byte(s)))
}

func TestJWTAttacks(t *testing.T) {
	a, iss, _ := authn(t)
	other := jwttest.New(t) // another key pair publishing the same kids
	enc := base64.RawURLEncoding.EncodeToString
	good := iss.Sign(t, "EdDSA", "ed", claims(nil), nil)
	parts := strings.Split(good, ".")
	adminPayload, _ := json.Marshal(claims(func(c map[string]any) { c["sub"] = "steward@stmary" }))

	// Public key bytes an attacker might try as an HMAC secret.
	der, _ := x509.MarshalPKIXPublicKey(&iss.RSA.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwk, _ := json.Marshal(iss.JWKS.Keys[0])
	edPub := []byte(iss.Ed.Public().(ed25519.PublicKey))
	hdr := func(h map[string]any) string { return iss.SignHeader(t, h, claims(nil), nil) }
	exp := func(v any) map[string]any { return claims(func(c map[string]any) { c["exp"] = v }) }
	with := func(k string, v any) map[string]any { return claims(func(c map[string]any) { c[k] = v }) }
	without := func(k string) map[string]any { return claims(func(c map[string]any) { delete(c, k) }) }

	cases := []struct {
		name   string
		tok    string
		reason error
		want   string
	}{
		{"forged by another key with the same kid (EdDSA)", other.Sign(t, "EdDSA", "ed", claims(nil), nil), identity.ErrBadSignature, "signature"},
		{"forged by another key with the same kid (RS256)", other.Sign(t, "RS256", "rsa", claims(nil), nil), identity.ErrBadSignature, "signature"},
		{"forged by another key with the same kid (ES256)", other.Sign(t, "ES256", "ec", claims(nil), nil), identity.ErrBadSignature, "signature"},
		{"signature from another key", parts[0] + "." + parts[1] + "." + strings.Split(other.Sign(t, "EdDSA", "ed", claims(nil), nil), ".")[2], identity.ErrBadSignature, "signature"},
		{"alg none", iss.Sign(t, "none", "ed", claims(nil), nil), identity.ErrUnsupportedAlg, "alg none"},
		{"alg NoNe", iss.Sign(t, "NoNe", "ed", claims(nil), nil), identity.ErrUnsupportedAlg, "alg none"},
		{"alg none keeping a valid signature", enc([]byte(`{"alg":"none","kid":"ed"}`)) + "." + parts[1] + "." + parts[2], identity.ErrUnsupportedAlg, "alg none"},
		{"HS256, RSA modulus as secret", iss.Sign(t, "HS256", "rsa", claims(nil), []byte(iss.JWKS.Keys[0].N)), identity.ErrUnsupportedAlg, "HMAC"},
		{"HS256, PEM public key as secret", iss.Sign(t, "HS256", "rsa", claims(nil), pemKey), identity.ErrUnsupportedAlg, "HMAC"},
		{"HS256, JWK as secret", iss.Sign(t, "HS256", "rsa", claims(nil), jwk), identity.ErrUnsupportedAlg, "HMAC"},
		{"HS512, Ed25519 key as secret", iss.Sign(t, "HS512", "ed", claims(nil), edPub), identity.ErrUnsupportedAlg, "HMAC"},
		{"RS256 header on the EC key", iss.Sign(t, "RS256", "ec", claims(nil), nil), identity.ErrUnsupportedAlg, "not accepted for key"},
		{"ES256 header on the RSA key", iss.Sign(t, "ES256", "rsa", claims(nil), nil), identity.ErrUnsupportedAlg, "not accepted for key"},
		{"EdDSA header on the RSA key", iss.Sign(t, "EdDSA", "rsa", claims(nil), nil), identity.ErrUnsupportedAlg, "not accepted for key"},
		{"RS512", iss.Sign(t, "RS512", "rsa", claims(nil), nil), identity.ErrUnsupportedAlg, "not accepted for key"},
		{"PS256", iss.Sign(t, "PS256", "rsa", claims(nil), nil), identity.ErrUnsupportedAlg, "not accepted for key"},
		{"crit header", hdr(map[string]any{"alg": "EdDSA", "kid": "ed", "crit": []string{"exp"}, "exp": 1}), identity.ErrUnsupportedAlg, "crit"},
		{"unencoded payload (b64 false)", hdr(map[string]any{"alg": "EdDSA", "kid": "ed", "b64": false}), identity.ErrUnsupportedAlg, "b64"},
		{"no alg", hdr(map[string]any{"kid": "ed"}), identity.ErrMalformed, "no alg"},
		{"kid not a string", hdr(map[string]any{"alg": "EdDSA", "kid": 1}), identity.ErrMalformed, "kid"},
		{"unknown kid", iss.Sign(t, "EdDSA", "nope", claims(nil), nil), identity.ErrUnknownKey, "key id"},
		{"no kid, several keys", hdr(map[string]any{"alg": "EdDSA"}), identity.ErrUnknownKey, "no kid"},
		{"expired", iss.Sign(t, "EdDSA", "ed", exp(now.Add(-time.Hour).Unix()), nil), identity.ErrExpired, "expired"},
		{"expired beyond leeway", iss.Sign(t, "EdDSA", "ed", exp(now.Add(-31*time.Second).Unix()), nil), identity.ErrExpired, "expired"},
		{"exp negative", iss.Sign(t, "EdDSA", "ed", exp(-1), nil), identity.ErrMalformed, "exp"},
		{"exp as a string", iss.Sign(t, "EdDSA", "ed", exp("9999999999"), nil), identity.ErrMalformed, "exp"},
		{"missing exp", iss.Sign(t, "EdDSA", "ed", without("exp"), nil), identity.ErrMissingClaim, "exp"},
		{"not yet valid", iss.Sign(t, "EdDSA", "ed", with("nbf", now.Add(time.Hour).Unix()), nil), identity.ErrNotYetValid, "not valid before"},
		{"nbf absurdly far (would overflow)", iss.Sign(t, "EdDSA", "ed", with("nbf", 1e300), nil), identity.ErrMalformed, "nbf"},
		{"issued in the future", iss.Sign(t, "EdDSA", "ed", with("iat", now.Add(time.Hour).Unix()), nil), identity.ErrNotYetValid, "future"},
		{"wrong audience", iss.Sign(t, "EdDSA", "ed", with("aud", "someone-else"), nil), identity.ErrWrongAudience, "audience"},
		{"wrong audience array", iss.Sign(t, "EdDSA", "ed", with("aud", []any{"other", 1}), nil), identity.ErrWrongAudience, "audience"},
		{"no audience", iss.Sign(t, "EdDSA", "ed", without("aud"), nil), identity.ErrWrongAudience, "audience"},
		{"wrong issuer", iss.Sign(t, "EdDSA", "ed", with("iss", "https://evil.test"), nil), identity.ErrWrongIssuer, "issuer"},
		{"no issuer", iss.Sign(t, "EdDSA", "ed", without("iss"), nil), identity.ErrWrongIssuer, "issuer"},
		{"tampered payload", parts[0] + "." + enc(adminPayload) + "." + parts[2], identity.ErrBadSignature, "signature"},
		{"tampered header", enc([]byte(`{"alg":"EdDSA","kid":"ed","typ":"JWT","x":1}`)) + "." + parts[1] + "." + parts[2], identity.ErrBadSignature, "signature"},
		{"truncated signature", good[:len(good)-10], identity.ErrBadSignature, "signature"},
		{"signature cut off", parts[0] + "." + parts[1] + ".", identity.ErrMalformed, "signature"},
		{"signature with a newline", parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:], identity.ErrMalformed, "signature"},
		{"padded signature", good + "==", identity.ErrMalformed, "signature"},
		{"garbage parts", "a.b.c", identity.ErrMalformed, "malformed"},
		{"empty header", "." + parts[1] + "." + parts[2], identity.ErrMalformed, "malformed"},
		{"payload with trailing data", signRaw(iss, `{"alg":"EdDSA","kid":"ed"}`, string(adminPayload)+`{"sub":"x"}`), identity.ErrMalformed, "payload"},
		{"payload not an object", signRaw(iss, `{"alg":"EdDSA","kid":"ed"}`, `["x"]`), identity.ErrMalformed, "payload"},
		{"no principal claim", iss.Sign(t, "EdDSA", "ed", without("sub"), nil), identity.ErrMissingClaim, "sub"},
		{"principal claim not a string", iss.Sign(t, "EdDSA", "ed", with("sub", []any{"analyst@partner"}), nil), identity.ErrMissingClaim, "sub"},
		{"principal with control characters", iss.Sign(t, "EdDSA", "ed", with("sub", "analyst@partner\n"), nil), identity.ErrMalformed, "principal name"},
		{"undeclared principal without org", iss.Sign(t, "EdDSA", "ed", with("sub", "x@y"), nil), identity.ErrMissingClaim, "org"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Authenticate(context.Background(), tc.tok)
			wantFail(t, err, tc.reason, tc.want, "")
			for _, p := range strings.Split(tc.tok, ".") {
				if len(p) > 8 && strings.Contains(err.Error(), p) {
					t.Fatalf("error %q echoes part of the token", err)
				}
			}
		})
	}
}

func TestJWKSLoading(t *testing.T) {
	iss := jwttest.New(t)
	cfg := jwtConfig("")
	jwks := func(keys ...identity.JWK) []byte { b, _ := json.Marshal(identity.JWKS{Keys: keys}); return b }
	rsaK, ecK, edK := iss.JWKS.Keys[0], iss.JWKS.Keys[1], iss.JWKS.Keys[2]
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	mod := func(k identity.JWK, f func(*identity.JWK)) identity.JWK { f(&k); return k }

	for name, keys := range map[string][]identity.JWK{
		"private key material": {mod(edK, func(k *identity.JWK) { k.D = enc(iss.Ed.Seed()) })},
		"symmetric key":        {{Kty: "oct", Kid: "h", K: enc([]byte("secret"))}, edK},
		"duplicate kid":        {edK, mod(ecK, func(k *identity.JWK) { k.Kid = "ed" })},
		"RSA 1024":             {{Kty: "RSA", Kid: "small", N: enc(small.N.Bytes()), E: "AQAB"}},
		"RSA even exponent":    {mod(rsaK, func(k *identity.JWK) { k.E = enc([]byte{4}) })},
		"EC point off curve":   {mod(ecK, func(k *identity.JWK) { k.Y = k.X })},
		"Ed25519 short key":    {mod(edK, func(k *identity.JWK) { k.X = enc([]byte{1, 2, 3}) })},
		"no usable key":        {mod(edK, func(k *identity.JWK) { k.Use = "enc" })},
		"empty set":            nil,
	} {
		if _, err := identity.NewJWTVerifierFromJWKS(cfg, jwks(keys...)); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, err := identity.NewJWTVerifierFromJWKS(cfg, []byte("not json")); err == nil {
		t.Error("non-JSON JWKS loaded")
	}
	if _, err := identity.NewJWTVerifier(cfg, "/nonexistent/jwks.json"); err == nil {
		t.Error("missing JWKS file loaded")
	}
	for name, f := range map[string]func(*workspace.JWTConfig){
		"no issuer":       func(c *workspace.JWTConfig) { c.Issuer = "" },
		"no audience":     func(c *workspace.JWTConfig) { c.Audience = "" },
		"negative leeway": func(c *workspace.JWTConfig) { c.Leeway = -time.Second },
	} {
		c := jwtConfig("")
		f(&c)
		if _, err := identity.NewJWTVerifierFromJWKS(c, jwks(edK)); err == nil {
			t.Errorf("config %s: accepted", name)
		}
	}

	// Unusable keys are left out; a token naming one is refused precisely.
	v, err := identity.NewJWTVerifierFromJWKS(cfg, jwks(edK,
		mod(rsaK, func(k *identity.JWK) { k.Kid, k.Use = "enc-key", "enc" }),
		mod(rsaK, func(k *identity.JWK) { k.Kid, k.Alg = "rs384", "RS384" }),
		mod(rsaK, func(k *identity.JWK) { k.Kid, k.KeyOps = "wrap", []string{"wrapKey"} }),
		identity.JWK{Kty: "EC", Kid: "p384", Crv: "P-384"},
	))
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{"enc-key", "rs384", "wrap", "p384"} {
		_, err := v.Verify(iss.SignHeader(t, map[string]any{"alg": "RS256", "kid": kid}, claims(nil), nil), lookup, now)
		wantFail(t, err, identity.ErrUnsupportedAlg, "cannot verify", "")
	}
	// With one usable key, a token without kid uses it.
	if _, err := v.Verify(iss.SignHeader(t, map[string]any{"alg": "EdDSA"}, claims(nil), nil), lookup, now); err != nil {
		t.Fatalf("no kid, one key: %v", err)
	}
	// Zero leeway in the config means the 30s default.
	c := jwtConfig("")
	c.Leeway = 0
	if v, err = identity.NewJWTVerifierFromJWKS(c, jwks(edK)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { c["exp"] = now.Add(-20 * time.Second).Unix() }), nil), lookup, now); err != nil {
		t.Fatalf("default leeway: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	a, iss, toks := authn(t)
	tok, id, hash, _ := identity.NewToken()
	toks[string(hash)] = store.Token{ID: id, Hash: hash, Principal: "analyst@partner"}
	jwt := iss.Sign(t, "ES256", "ec", claims(nil), nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				b := tok
				if i%2 == 0 {
					b = jwt
				}
				if _, err := a.Authenticate(context.Background(), b); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// A failed credential is named in the audit log by what cannot be turned
// back into it: an API token's public id, a JWT's truncated hash, and
// nothing at all of anything else (a mistyped password would fall to a
// dictionary even from a truncated hash).
func TestCredentialID(t *testing.T) {
	tok, id, _, _ := identity.NewToken()
	if got := identity.CredentialID(tok); got != "token:"+id {
		t.Fatalf("token: %q", got)
	}
	jwt := strings.Repeat("eyJhbGciOiJFZERTQSJ9", 2) + "." + strings.Repeat("eyJzdWIiOiJ4In0", 3) + "." + strings.Repeat("c2ln", 10)
	if got := identity.CredentialID(jwt); !strings.HasPrefix(got, "jwt:sha256:") || len(got) != len("jwt:sha256:")+16 {
		t.Fatalf("jwt: %q", got)
	}
	for _, pw := range []string{"hunter2", "alk_short", "a.b.c", "correct horse battery staple"} {
		if got := identity.CredentialID(pw); got != "malformed" {
			t.Fatalf("%q recorded as %q", pw, got)
		}
	}
	if identity.CredentialID("") != "" {
		t.Fatal("nothing presented, nothing recorded")
	}
}
