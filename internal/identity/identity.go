// Package identity authenticates the bearer of a request and maps it to an
// Identity: a principal name and the attributes policies decide on.
//
// Two kinds of bearer credential are accepted:
//
//   - Airlock API tokens, "alk_<id>_<secret>", minted by NewToken. The state
//     store keeps only the SHA-256 hash of the whole token and looks tokens up
//     by that hash, so a right id with a wrong secret is simply unknown. An API
//     token is bound to a principal that must still be declared in the
//     workspace; its expiry and revocation are checked on every request.
//
//   - OIDC/JWT bearer tokens (compact JWS), verified against a JWKS file with
//     RS256, ES256 or EdDSA (Ed25519). The alg is pinned by the key: "none",
//     every HMAC alg (HS256, ...) and any alg that does not match the key
//     named by the token's kid are refused, so a public key can never be used
//     as a shared secret. iss, aud and exp are required; nbf and iat are
//     checked when present, all with the configured leeway.
//
// A JWT's principal claim (default "sub") names the principal. If the
// workspace declares that principal, its declared attributes are used and the
// token's attribute claims are ignored: an identity provider cannot move a
// declared principal into another organisation or grant it roles. If the
// principal is not declared, the identity is synthesized from the claims
// mapped by JWTConfig.Claims and must carry at least an org.
//
// Every failure wraps ErrUnauthenticated and one reason sentinel (ErrExpired,
// ErrBadSignature, ...). Messages are safe to show the client and never echo
// the token.
//
// An Authenticator and a JWTVerifier are immutable once built and safe for
// concurrent use.
package identity

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Authentication methods recorded in Identity.Method.
const (
	MethodToken = "token" // an Airlock API token
	MethodJWT   = "jwt"   // an OIDC/JWT bearer token
)

// Identity is an authenticated principal and its attributes (the type
// lives in share, so channels and operations need not import identity).
type Identity = share.Identity

// FromPrincipal builds an identity from a declared workspace principal. Roles
// and attributes are copied, so the identity never aliases the workspace.
func FromPrincipal(p *workspace.Principal, method string) Identity {
	return Identity{
		Principal: p.Name, Org: p.Org, Country: p.Country, Region: p.Region,
		Clearance: p.Clearance, Roles: slices.Clone(p.Roles), Attributes: maps.Clone(p.Attributes),
		Method: method,
	}
}

// TokenLookup is what the authenticator needs from the state store: finding
// an API token record by the hash of the whole token. It returns an error
// wrapping store.ErrNotFound for an unknown hash.
type TokenLookup interface {
	TokenByHash(ctx context.Context, hash []byte) (store.Token, error)
}

// TokenStore is the former name of TokenLookup.
type TokenStore = TokenLookup

// maxBearer bounds the bearer string accepted at all (JWTs with many group
// claims can be large, but not this large).
const maxBearer = 16 << 10

// Authenticator verifies bearer tokens. Set its fields once, then share it:
// it is safe for concurrent use.
type Authenticator struct {
	// Tokens finds API tokens by hash. Nil: API tokens are refused.
	Tokens TokenLookup
	// Principal looks up a declared principal in the current workspace; nil
	// when the name is not declared. A nil func declares nobody.
	Principal func(name string) *workspace.Principal
	// JWT verifies JWTs. Nil: JWTs are refused.
	JWT *JWTVerifier
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Authenticate verifies a bearer credential (without the "Bearer " prefix):
// an API token if it starts with "alk_", otherwise a compact JWT. Failures
// wrap ErrUnauthenticated and a reason sentinel; a failure of the token store
// itself is returned as is (it does not wrap ErrUnauthenticated).
func (a *Authenticator) Authenticate(ctx context.Context, bearer string) (Identity, error) {
	switch {
	case bearer == "":
		return Identity{}, fail(ErrMalformed, "no bearer token")
	case len(bearer) > maxBearer:
		return Identity{}, fail(ErrMalformed, "bearer token is longer than %d bytes", maxBearer)
	case strings.HasPrefix(bearer, TokenPrefix):
		return a.apiToken(ctx, bearer)
	case strings.Count(bearer, ".") == 2:
		if a.JWT == nil {
			return Identity{}, fail(ErrNotConfigured, "JWT bearer tokens are not configured on this node")
		}
		return a.JWT.Verify(bearer, a.lookup, a.now())
	}
	return Identity{}, fail(ErrMalformed, "malformed bearer token: neither an API token nor a JWT")
}

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Authenticator) lookup(name string) *workspace.Principal {
	if a.Principal == nil {
		return nil
	}
	return a.Principal(name)
}

func (a *Authenticator) apiToken(ctx context.Context, tok string) (Identity, error) {
	id, hash, err := ParseToken(tok)
	if err != nil {
		return Identity{}, err
	}
	if a.Tokens == nil {
		return Identity{}, fail(ErrNotConfigured, "API tokens are not configured on this node")
	}
	// The lookup is by hash of the whole token: a right id with a wrong
	// secret does not exist, and no secret is ever compared byte by byte.
	rec, err := a.Tokens.TokenByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return Identity{}, fail(ErrUnknownToken, "unknown API token")
	}
	if err != nil {
		return Identity{}, fmt.Errorf("API token lookup: %w", err)
	}
	// Defence in depth against a store that matched loosely.
	if rec.ID != id || !EqualHash(rec.Hash, hash) {
		return Identity{}, fail(ErrUnknownToken, "unknown API token")
	}
	// Any revocation counts, even one stamped ahead of this node's clock.
	if !rec.RevokedAt.IsZero() {
		return Identity{}, fail(ErrRevoked, "API token %s was revoked at %s", rec.ID, formatTime(rec.RevokedAt))
	}
	if !rec.ExpiresAt.IsZero() && !a.now().Before(rec.ExpiresAt) {
		return Identity{}, fail(ErrExpired, "API token %s expired at %s", rec.ID, formatTime(rec.ExpiresAt))
	}
	p := a.lookup(rec.Principal)
	if p == nil {
		return Identity{}, fail(ErrUnknownPrincipal, "principal %q of API token %s is no longer declared", rec.Principal, rec.ID)
	}
	return FromPrincipal(p, MethodToken), nil
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
