package sqlop

import (
	"context"

	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Federator plans a query over a federated dataset: an operation whose
// members answer, each under its own rules (package federation).
type Federator interface {
	Prepare(ctx context.Context, c *govern.Call, q *query.Select, sql string, params []any) (govern.Prepared, error)
}

// FederationReport is how a federated answer was made: which members
// answered, under what, with their receipts, and who is missing from a
// partial answer.
type FederationReport struct {
	Partial bool            `json:"partial"`
	Members []MemberReport  `json:"members"`
	Missing []MemberFailure `json:"missing,omitempty"`
	// Noise is each combined statistic's noise: the members' noises are
	// independent, so their variances add.
	Noise []DPColumn `json:"noise,omitempty"`
	// RowMembers names, per row, the members that released its group (a
	// member's threshold or partition selection may withhold it).
	RowMembers [][]string `json:"row_members"`
}

// MemberReport is one member's contribution to a federated answer.
type MemberReport struct {
	Node      string    `json:"node"`
	Region    string    `json:"region"`
	Access    string    `json:"access"`
	Agreement string    `json:"agreement,omitempty"`
	Rows      int       `json:"rows"`
	DP        *DPReport `json:"dp,omitempty"`
	Receipt   *Receipt  `json:"receipt"`
}

// MemberFailure is why a member is not in an answer.
type MemberFailure struct {
	Node    string `json:"node"`
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

// Receipt is a member's signed statement that it answered a request and
// recorded the answer: the audit entry's index and leaf hash, a
// checkpoint signed by the member that covers it, and the inclusion
// proof, so anyone holding the member's key can check offline that the
// entry is in the member's log.
type Receipt struct {
	Node      string `json:"node"`
	RequestID string `json:"request_id"` // the member's request id
	Nonce     string `json:"nonce"`      // the envelope's nonce
	// EnvelopeHash is SHA-256 of the signed envelope's bytes: the
	// question (principal, purpose, SQL, parameters) this answers.
	EnvelopeHash []byte   `json:"envelope_hash"`
	AuditIndex   uint64   `json:"audit_index"`
	LeafHash     []byte   `json:"leaf_hash"`
	Checkpoint   string   `json:"checkpoint"` // signed note
	Inclusion    [][]byte `json:"inclusion"`
	// AnswerHash is SHA-256 of the answer's columns and rows as JSON.
	AnswerHash []byte `json:"answer_hash"`
	Signature  []byte `json:"signature,omitempty"`
}

func federatedOf(ws *workspace.Workspace, datasets []string) (federated bool, err error) {
	n := 0
	for _, d := range datasets {
		if m := ws.Datasets[d]; m != nil && m.Source.Federation != nil {
			n++
		}
	}
	if n > 0 && n != len(datasets) {
		return true, refusal.New(refusal.AnalysisRule, "federation.shape", "a federated dataset cannot be combined with other datasets in one query")
	}
	return n > 0, nil
}
