// Package identity authenticates principals: Airlock API tokens (stored only
// as SHA-256 hashes) and OIDC/JWT bearer tokens verified against a JWKS file
// (RS256, ES256, EdDSA; never "none" or HMAC, so a public key can never be
// used as a shared secret).
package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// ErrUnauthenticated wraps every authentication failure. Its message says
// why (expired, wrong audience, ...) and never repeats the token.
var ErrUnauthenticated = errors.New("unauthenticated")

func fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnauthenticated, fmt.Sprintf(format, args...))
}

// Identity is an authenticated principal and its attributes.
type Identity struct {
	Principal  string
	Org        string
	Country    string
	Region     string
	Clearance  string
	Roles      []string
	Attributes map[string]string
	Method     string // token | jwt
}

// FromPrincipal builds an identity from a workspace principal.
func FromPrincipal(p *workspace.Principal, method string) Identity {
	return Identity{
		Principal: p.Name, Org: p.Org, Country: p.Country, Region: p.Region,
		Clearance: p.Clearance, Roles: p.Roles, Attributes: p.Attributes, Method: method,
	}
}

const tokenPrefix = "alk_"

// NewToken returns a fresh API token "alk_<id>_<secret>", its public id and
// the SHA-256 hash that is all the store keeps.
func NewToken() (token, id string, hash []byte, err error) {
	idb := make([]byte, 8)
	sec := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", "", nil, err
	}
	if _, err := rand.Read(sec); err != nil {
		return "", "", nil, err
	}
	id = hex.EncodeToString(idb)
	token = tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(sec)
	h := sha256.Sum256([]byte(token))
	return token, id, h[:], nil
}

// HashToken returns the stored hash of a token string.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// TokenStore is what the authenticator needs from the state store.
type TokenStore interface {
	TokenByHash(ctx context.Context, hash []byte) (store.Token, error)
}

// Authenticator verifies bearer tokens.
type Authenticator struct {
	Tokens TokenStore
	// Principal looks up a declared principal (from the current workspace).
	Principal func(name string) *workspace.Principal
	JWT       *JWTVerifier // nil: JWTs are refused
	Now       func() time.Time
}

// Authenticate verifies an API token or a JWT.
func (a *Authenticator) Authenticate(ctx context.Context, bearer string) (Identity, error) {
	if strings.HasPrefix(bearer, tokenPrefix) {
		return a.apiToken(ctx, bearer)
	}
	if strings.Count(bearer, ".") == 2 {
		if a.JWT == nil {
			return Identity{}, fail("JWT bearer tokens are not configured on this node")
		}
		return a.JWT.Verify(bearer, a.Principal, a.now())
	}
	return Identity{}, fail("malformed bearer token")
}

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Authenticator) apiToken(ctx context.Context, tok string) (Identity, error) {
	// alk_<16 hex id>_<43 base64url secret>; the secret may itself hold "_".
	body := strings.TrimPrefix(tok, tokenPrefix)
	if len(body) != 16+1+43 || body[16] != '_' {
		return Identity{}, fail("malformed API token")
	}
	// The lookup is by hash of the whole token, so a right id with a wrong
	// secret simply does not exist; no timing on secret comparison.
	rec, err := a.Tokens.TokenByHash(ctx, HashToken(tok))
	if errors.Is(err, store.ErrNotFound) {
		return Identity{}, fail("unknown API token")
	}
	if err != nil {
		return Identity{}, fmt.Errorf("token lookup: %w", err)
	}
	now := a.now()
	if !rec.RevokedAt.IsZero() {
		return Identity{}, fail("API token %s was revoked", rec.ID)
	}
	if !rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt) {
		return Identity{}, fail("API token %s expired at %s", rec.ID, rec.ExpiresAt.UTC().Format(time.RFC3339))
	}
	p := a.Principal(rec.Principal)
	if p == nil {
		return Identity{}, fail("principal %q of API token %s is no longer declared", rec.Principal, rec.ID)
	}
	return FromPrincipal(p, "token"), nil
}
