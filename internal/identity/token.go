package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// TokenPrefix starts every Airlock API token.
const TokenPrefix = "alk_"

const (
	tokenIDBytes     = 8
	tokenSecretBytes = 32
	tokenIDLen       = 2 * tokenIDBytes                                   // lowercase hex: 16
	tokenSecretLen   = (tokenSecretBytes*8 + 5) / 6                       // unpadded base64url: 43
	tokenLen         = len(TokenPrefix) + tokenIDLen + 1 + tokenSecretLen // 64
)

// b64url is strict unpadded base64url: non-zero unused bits are an error, so
// no value has two spellings.
var b64url = base64.RawURLEncoding.Strict()

// NewToken returns a fresh API token "alk_<id>_<secret>" (id: 8 random bytes
// in lowercase hex; secret: 32 random bytes in unpadded base64url, both from
// crypto/rand), its public id and the SHA-256 hash of the whole token, which
// is all the state store keeps. The token itself is shown once and never
// stored. err is non-nil only if the system's random source fails.
func NewToken() (token, id string, hash []byte, err error) {
	var idb [tokenIDBytes]byte
	var sec [tokenSecretBytes]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", nil, err
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return "", "", nil, err
	}
	id = hex.EncodeToString(idb[:])
	token = TokenPrefix + id + "_" + b64url.EncodeToString(sec[:])
	return token, id, HashToken(token), nil
}

// HashToken returns the SHA-256 hash of a whole token string, as stored.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// CredentialID names a presented credential for the audit log without
// revealing it: an API token's public id; for something shaped like a JWT
// (three base64url parts, too long to guess) the first 16 hex digits of
// its SHA-256; anything else (a password typed by mistake could be
// brute-forced from even a truncated hash) only "malformed". Empty when
// nothing was presented.
func CredentialID(bearer string) string {
	switch {
	case bearer == "":
		return ""
	case strings.HasPrefix(bearer, TokenPrefix):
		if id, _, err := ParseToken(bearer); err == nil {
			return "token:" + id
		}
	case strings.Count(bearer, ".") == 2 && len(bearer) >= 64 && isBase64URLDots(bearer):
		h := sha256.Sum256([]byte(bearer))
		return "jwt:sha256:" + hex.EncodeToString(h[:8])
	}
	return "malformed"
}

func isBase64URLDots(s string) bool {
	for _, r := range s {
		if !(r == '.' || r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// ParseToken checks that s is a well-formed API token and returns its public
// id and its hash. The error wraps ErrUnauthenticated and ErrMalformed and
// never repeats s.
func ParseToken(s string) (id string, hash []byte, err error) {
	if len(s) != tokenLen || !strings.HasPrefix(s, TokenPrefix) {
		return "", nil, fail(ErrMalformed, "malformed API token")
	}
	body := s[len(TokenPrefix):]
	id, sep, secret := body[:tokenIDLen], body[tokenIDLen], body[tokenIDLen+1:]
	if sep != '_' || !isLowerHex(id) {
		return "", nil, fail(ErrMalformed, "malformed API token")
	}
	// The secret may itself contain '_'; only its length and alphabet matter.
	if b, err := b64(secret); err != nil || len(b) != tokenSecretBytes {
		return "", nil, fail(ErrMalformed, "malformed API token")
	}
	return id, HashToken(s), nil
}

// EqualHash compares two hashes in constant time (for equal lengths). Empty
// hashes never match.
func EqualHash(a, b []byte) bool {
	return len(a) > 0 && subtle.ConstantTimeCompare(a, b) == 1
}

// TokenMatches reports, in constant time, whether token hashes to hash.
func TokenMatches(token string, hash []byte) bool {
	return EqualHash(HashToken(token), hash)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isB64URL reports whether s uses only the unpadded base64url alphabet. (The
// standard decoder silently skips '\r' and '\n'.)
func isB64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// b64 decodes strict unpadded base64url, refusing characters the standard
// decoder would skip.
func b64(s string) ([]byte, error) {
	if !isB64URL(s) {
		return nil, errNotB64
	}
	return b64url.DecodeString(s)
}
