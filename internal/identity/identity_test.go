package identity_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/identity"
	"github.com/airlock-dev/airlock/internal/identity/jwttest"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

type memTokens map[string]store.Token

func (m memTokens) TokenByHash(_ context.Context, h []byte) (store.Token, error) {
	t, ok := m[string(h)]
	if !ok {
		return t, store.ErrNotFound
	}
	return t, nil
}

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

var principals = map[string]*workspace.Principal{
	"analyst@partner": {Name: "analyst@partner", Org: "partner", Region: "eu", Roles: []string{"analyst"}},
}

func lookup(n string) *workspace.Principal { return principals[n] }

func authn(t *testing.T) (*identity.Authenticator, *jwttest.Issuer, memTokens) {
	iss := jwttest.New(t)
	cfg := workspace.JWTConfig{Issuer: "https://idp.test", Audience: "airlock", PrincipalClaim: "sub", Leeway: 30 * time.Second,
		Claims: map[string]string{"org": "org", "region": "region", "roles": "roles"}}
	v, err := identity.NewJWTVerifier(cfg, iss.Path)
	if err != nil {
		t.Fatal(err)
	}
	toks := memTokens{}
	return &identity.Authenticator{Tokens: toks, Principal: lookup, JWT: v, Now: func() time.Time { return now }}, iss, toks
}

func claims(mod func(map[string]any)) map[string]any {
	c := map[string]any{"iss": "https://idp.test", "aud": "airlock", "sub": "analyst@partner", "exp": now.Add(time.Hour).Unix(), "iat": now.Add(-time.Minute).Unix()}
	if mod != nil {
		mod(c)
	}
	return c
}

func TestJWTAccepts(t *testing.T) {
	a, iss, _ := authn(t)
	for _, k := range []struct{ alg, kid string }{{"RS256", "rsa"}, {"ES256", "ec"}, {"EdDSA", "ed"}} {
		id, err := a.Authenticate(context.Background(), iss.Sign(t, k.alg, k.kid, claims(nil), nil))
		if err != nil || id.Principal != "analyst@partner" || id.Org != "partner" || id.Method != "jwt" {
			t.Fatalf("%s: got %+v, %v", k.alg, id, err)
		}
	}
	// An undeclared principal takes its attributes from mapped claims.
	id, err := a.Authenticate(context.Background(), iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) {
		c["sub"], c["org"], c["region"], c["roles"] = "new@idp", "idporg", "eu", []any{"analyst", "x"}
	}), nil))
	if err != nil || id.Org != "idporg" || id.Region != "eu" || len(id.Roles) != 2 {
		t.Fatalf("got %+v, %v", id, err)
	}
	// A declared principal cannot be given another org by the IdP.
	id, _ = a.Authenticate(context.Background(), iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { c["org"] = "stmary" }), nil))
	if id.Org != "partner" {
		t.Fatalf("IdP claim overrode the declared org: %+v", id)
	}
}

func TestJWTAttacks(t *testing.T) {
	a, iss, _ := authn(t)
	other := jwttest.New(t) // a different key pair with the same kids
	good := iss.Sign(t, "EdDSA", "ed", claims(nil), nil)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://idp.test","aud":"airlock","sub":"admin","exp":9999999999}`)) + "." + parts[2]
	pubAsSecret := []byte(iss.JWKS.Keys[0].N)
	cases := map[string]struct {
		tok  string
		want string
	}{
		"forged by another key":  {other.Sign(t, "EdDSA", "ed", claims(nil), nil), "signature"},
		"alg none":               {iss.Sign(t, "none", "ed", claims(nil), nil), "algorithm"},
		"HS256 with public key":  {iss.Sign(t, "HS256", "rsa", claims(nil), pubAsSecret), "algorithm"},
		"alg switched RS to ES":  {iss.Sign(t, "ES256", "rsa", claims(nil), nil), "algorithm"},
		"expired":                {iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }), nil), "expired"},
		"not yet valid":          {iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }), nil), "not valid before"},
		"issued in the future":   {iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }), nil), "future"},
		"wrong audience":         {iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { c["aud"] = []any{"other"} }), nil), "audience"},
		"wrong issuer":           {iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { c["iss"] = "https://evil" }), nil), "issuer"},
		"missing exp":            {iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { delete(c, "exp") }), nil), "expiry"},
		"tampered payload":       {tampered, "signature"},
		"unknown kid":            {iss.Sign(t, "EdDSA", "nope", claims(nil), nil), "key id"},
		"truncated":              {good[:len(good)-10], "signature"},
		"garbage":                {"a.b.c", "malformed"},
		"undeclared without org": {iss.Sign(t, "EdDSA", "ed", claims(func(c map[string]any) { c["sub"] = "x@y" }), nil), "org"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := a.Authenticate(context.Background(), tc.tok)
			if !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want unauthenticated mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.tok) {
				t.Fatal("error echoes the token")
			}
		})
	}
}

func TestAPITokens(t *testing.T) {
	a, _, toks := authn(t)
	tok, id, hash, err := identity.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	toks[string(hash)] = store.Token{ID: id, Hash: hash, Principal: "analyst@partner", ExpiresAt: now.Add(time.Hour)}
	if got, err := a.Authenticate(context.Background(), tok); err != nil || got.Principal != "analyst@partner" || got.Method != "token" {
		t.Fatalf("valid token: %+v, %v", got, err)
	}
	wrongSecret := tok[:len(tok)-4] + "AAAA"
	for name, c := range map[string]struct {
		tok  string
		mod  func()
		want string
	}{
		"right id, wrong secret": {wrongSecret, nil, "unknown"},
		"malformed":              {"alk_zz", nil, "malformed"},
		"revoked":                {tok, func() { r := toks[string(hash)]; r.RevokedAt = now; toks[string(hash)] = r }, "revoked"},
		"expired":                {tok, func() { r := toks[string(hash)]; r.RevokedAt = time.Time{}; r.ExpiresAt = now; toks[string(hash)] = r }, "expired"},
		"principal removed": {tok, func() {
			r := toks[string(hash)]
			r.ExpiresAt = time.Time{}
			r.Principal = "gone@x"
			toks[string(hash)] = r
		}, "no longer declared"},
	} {
		if c.mod != nil {
			c.mod()
		}
		_, err := a.Authenticate(context.Background(), c.tok)
		if !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), tok[20:]) {
			t.Errorf("%s: error echoes the secret", name)
		}
	}
}
