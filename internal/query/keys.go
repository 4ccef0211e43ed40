package query

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// deriveMaskKeys splits an agreement key into the inner and outer keys of the
// keyed hash, as hex text the engines can concatenate.
func deriveMaskKeys(key []byte) (inner, outer string) {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("airlock mask inner"))
	inner = hex.EncodeToString(m.Sum(nil))
	m = hmac.New(sha256.New, key)
	m.Write([]byte("airlock mask outer"))
	outer = hex.EncodeToString(m.Sum(nil))
	return inner, outer
}
