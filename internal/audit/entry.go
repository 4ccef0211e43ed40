// Package audit is Airlock's verifiable audit log: every decision is an
// Entry, serialized canonically and appended as a leaf of an RFC 6962 Merkle
// tree kept in the state store, in the manner of Certificate Transparency,
// Trillian and Tessera. The node's ed25519 key signs checkpoints in the C2SP
// tlog-checkpoint format; inclusion and consistency proofs let anyone check,
// without trusting the operator, that an entry is in the log and that the
// log was only ever appended to.
//
// Appends are group-committed: concurrent requests share one store
// transaction, and each Append returns only once its entry is durable.
package audit

import (
	"bytes"
	"encoding/json"
	"time"
)

// Entry is one audit record. Its JSON field order is fixed by the struct, so
// Canonical is stable and an entry's leaf hash is reproducible.
type Entry struct {
	Time           time.Time         `json:"time"`
	Principal      string            `json:"principal"`
	Org            string            `json:"org"`
	Agreement      string            `json:"agreement"`
	Purpose        string            `json:"purpose"`
	Channel        string            `json:"channel"`
	ClientAddr     string            `json:"client_addr"`
	Datasets       []string          `json:"datasets"`
	Columns        []string          `json:"columns"`
	QueryKind      string            `json:"query_kind"`
	SQL            string            `json:"sql"`
	Fingerprint    string            `json:"fingerprint"`
	Decision       string            `json:"decision"`
	Code           string            `json:"code"`
	Rule           string            `json:"rule"`
	Message        string            `json:"message"`
	PolicyVersion  string            `json:"policy_version"`
	RowsReturned   int64             `json:"rows_returned"`
	RowsSuppressed int64             `json:"rows_suppressed"`
	Epsilon        float64           `json:"epsilon,omitempty"`
	Delta          float64           `json:"delta,omitempty"`
	Rho            float64           `json:"rho,omitempty"`
	Extra          map[string]string `json:"extra,omitempty"` // encoding/json sorts map keys
	// ChargeID links a "reserve" entry, appended before a budget or row
	// quota is charged, to the ledger's charge record and to the entry that
	// decides the request; QuotaRows is a row-quota charge's size.
	ChargeID  string `json:"charge_id,omitempty"`
	QuotaRows int64  `json:"quota_rows,omitempty"`
	// Event is the stable code of the entry's kind and outcome
	// (share.EventCode); RequestID is also in the response and the server
	// log. Params are the bound parameter values in canonical form.
	// Credential names a refused credential (a token's public id, never
	// its secret).
	Event      string   `json:"event,omitempty"`
	RequestID  string   `json:"request_id,omitempty"`
	Params     []string `json:"params,omitempty"`
	Credential string   `json:"credential,omitempty"`
	// WorkspaceVersion is the digest of every workspace file the decision
	// was made under (policy_version covers the policies only).
	WorkspaceVersion string `json:"workspace_version,omitempty"`
}

// DecisionReserve marks an entry appended before a charge: it explains the
// charge even if the process dies before the request is decided.
const DecisionReserve = "reserve"

// DecisionIntent marks an entry appended before an operation changes
// governance state (a revocation): the change is explained by the log
// even if the deciding entry cannot be appended after it.
const DecisionIntent = "intent"

// Canonical returns the entry's canonical bytes: compact JSON, fixed field
// order, sorted map keys, no HTML escaping, UTC times.
func (e Entry) Canonical() ([]byte, error) {
	e.Time = e.Time.UTC()
	if e.Datasets == nil {
		e.Datasets = []string{}
	}
	if e.Columns == nil {
		e.Columns = []string{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ParseEntry decodes canonical bytes.
func ParseEntry(b []byte) (Entry, error) {
	var e Entry
	err := json.Unmarshal(b, &e)
	return e, err
}
