package identity

import (
	"errors"
	"fmt"
)

// ErrUnauthenticated is wrapped by every authentication failure, whatever its
// reason. Test for it with errors.Is; test for the precise reason with the
// Err* reason sentinels below, which every failure also wraps.
//
// The message of a failure says why it failed ("unauthenticated: JWT expired
// at ...") and is safe to show the client: it never repeats the token or any
// part of its secret (an API token's public id may appear).
var ErrUnauthenticated = errors.New("unauthenticated")

// Reasons an authentication fails. Every error Authenticate returns for a bad
// credential wraps ErrUnauthenticated and exactly one of these.
var (
	// ErrMalformed: the bearer string is neither a well-formed API token nor a
	// well-formed compact JWT, or a JWT part or claim does not decode.
	ErrMalformed = errors.New("malformed credential")
	// ErrNotConfigured: a kind of credential was presented that this node
	// does not verify (a JWT without auth.jwt, an API token without a store).
	ErrNotConfigured = errors.New("credential kind not configured")
	// ErrUnknownToken: no API token with this hash exists (this includes a
	// right token id with a wrong secret).
	ErrUnknownToken = errors.New("unknown API token")
	// ErrRevoked: the API token was revoked.
	ErrRevoked = errors.New("credential revoked")
	// ErrExpired: the API token or JWT is past its expiry.
	ErrExpired = errors.New("credential expired")
	// ErrNotYetValid: the JWT's nbf or iat lies in the future beyond the leeway.
	ErrNotYetValid = errors.New("credential not yet valid")
	// ErrUnsupportedAlg: the JWT's alg is "none", HMAC, not supported, or does
	// not match the key named by its kid (or that key cannot verify).
	ErrUnsupportedAlg = errors.New("unsupported algorithm")
	// ErrUnknownKey: the JWT's kid names no key of the key set.
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrBadSignature: the JWT's signature does not verify.
	ErrBadSignature = errors.New("bad signature")
	// ErrWrongIssuer: the JWT's iss is not the configured issuer.
	ErrWrongIssuer = errors.New("wrong issuer")
	// ErrWrongAudience: the JWT's aud does not contain the configured audience.
	ErrWrongAudience = errors.New("wrong audience")
	// ErrMissingClaim: a required JWT claim (exp, the principal claim, or org
	// for an undeclared principal) is absent or has the wrong type.
	ErrMissingClaim = errors.New("missing claim")
	// ErrUnknownPrincipal: the API token names a principal the workspace no
	// longer declares.
	ErrUnknownPrincipal = errors.New("unknown principal")
)

// authError is an authentication failure: ErrUnauthenticated, a reason
// sentinel and a message for the client.
type authError struct {
	reason error
	msg    string
}

func (e *authError) Error() string { return ErrUnauthenticated.Error() + ": " + e.msg }

// Unwrap makes errors.Is match both ErrUnauthenticated and the reason.
func (e *authError) Unwrap() []error { return []error{ErrUnauthenticated, e.reason} }

// fail builds an authentication failure. The message must never contain the
// token or its secret.
func fail(reason error, format string, args ...any) error {
	return &authError{reason: reason, msg: fmt.Sprintf(format, args...)}
}
