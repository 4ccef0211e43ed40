package httpapi

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"

	"github.com/airlock-dev/airlock/internal/refusal"
)

// FuzzDecodeQuery: any body is either a request whose parameters are
// strings, int64s, finite float64s, booleans or nil, or a refusal with a
// rule; nothing panics, and a decoded request re-encodes to one that
// decodes the same.
func FuzzDecodeQuery(f *testing.F) {
	for _, seed := range []string{
		`{"sql": "SELECT 1", "purpose": "research"}`,
		`{"sql": "SELECT $1", "purpose": "r", "params": [1, 2.5, "x", true, null, 9223372036854775807, 1e308]}`,
		`{"sql": "x", "params": [[1], {"a": 1}]}`, // nested: refused
		`{"sql": "x", "extra": 1}`,                // unknown field: refused
		`{"sql": "x"} {"sql": "y"}`,               // two objects: refused
		`{"sql": "x", "params": [1e400]}`,         // out of range
		"", "null", "[]", `{"sql": "\u0000"}`, `{"sql": 5}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, params, err := DecodeQuery(bytes.NewReader(body))
		if err != nil {
			if r, ok := err.(*refusal.Error); !ok || r.Rule == "" {
				t.Fatalf("failure is not a refusal with a rule: %v", err)
			}
			return
		}
		for i, p := range params {
			switch x := p.(type) {
			case string, int64, bool, nil:
			case float64:
				if math.IsNaN(x) || math.IsInf(x, 0) {
					t.Fatalf("parameter %d is %v", i, x)
				}
			default:
				t.Fatalf("parameter %d has type %T", i, p)
			}
		}
		again, _ := json.Marshal(req)
		req2, params2, err := DecodeQuery(bytes.NewReader(again))
		if err != nil || req2.SQL != req.SQL || req2.Purpose != req.Purpose || len(params2) != len(params) {
			t.Fatalf("re-encoded request does not decode the same: %v", err)
		}
	})
}
