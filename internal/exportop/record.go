package exportop

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/store"
)

// Label separates release-record signatures from the node's other ones.
const Label = "export-record"

// Record is what a release was, as the node signs it.
type Record struct {
	V           int       `json:"v"`
	ID          string    `json:"id"`
	RequestID   string    `json:"request_id"`
	Issued      time.Time `json:"issued"`
	Node        string    `json:"node"`
	Dataset     string    `json:"dataset"`
	Owner       string    `json:"owner"`
	Tier        string    `json:"tier"`
	Workspace   string    `json:"workspace_version"`
	Requester   string    `json:"requester"`
	Agreement   string    `json:"agreement,omitempty"`
	Purpose     string    `json:"purpose"`
	Destination Dest      `json:"destination"`
	Method      string    `json:"method"`
	Params      Params    `json:"params"`
	// QuasiIdentifiers and Levels are a k-anonymous release's
	// generalisation; Hierarchies the SHA-256 of each hierarchy used.
	QuasiIdentifiers []string          `json:"quasi_identifiers,omitempty"`
	Levels           []int             `json:"levels,omitempty"`
	Hierarchies      map[string]string `json:"hierarchies,omitempty"`
	Columns          []string          `json:"columns"`
	Rows             int               `json:"rows"`
	Suppressed       int               `json:"suppressed"`
	SHA256           string            `json:"sha256"`
	Risk             *RiskReport       `json:"risk,omitempty"`
	Licence          json.RawMessage   `json:"licence"`
	Lineage          json.RawMessage   `json:"lineage"`
}

// Dest is where a release goes.
type Dest struct {
	Org    string `json:"org"`
	Region string `json:"region"`
}

// Params are a release's method parameters.
type Params struct {
	K              int     `json:"k,omitempty"`
	L              int     `json:"l,omitempty"`
	MaxSuppression float64 `json:"max_suppression,omitempty"`
	Epsilon        float64 `json:"epsilon,omitempty"`
	Delta          float64 `json:"delta,omitempty"`
}

// RiskReport is the re-identification risk of a release.
type RiskReport struct {
	Highest          float64 `json:"prosecutor_highest"`
	Average          float64 `json:"prosecutor_average"`
	AtRisk           float64 `json:"records_at_risk"`
	SampleUniques    float64 `json:"sample_uniqueness"`
	PopulationModel  string  `json:"population_model"`
	PopulationUnique float64 `json:"population_uniqueness"`
	// JoinedK is the least class size when this release is joined with the
	// recipient's earlier releases of the dataset.
	JoinedK int `json:"joined_k,omitempty"`
}

// Signed is a record and the node's signature over its bytes.
type Signed struct {
	Record    json.RawMessage `json:"record"`
	Signature []byte          `json:"signature"`
	// Key is the node's verifier key (node.pub).
	Key string `json:"key"`
}

// Sign signs a record with the node key.
func Sign(key *federation.NodeKey, r Record) (Signed, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return Signed{}, err
	}
	return Signed{Record: b, Signature: key.Sign(Label, b), Key: key.Verifier}, nil
}

// Verification errors.
var (
	ErrSignature = errors.New("export: the record's signature does not verify with the node key")
	ErrTampered  = errors.New("export: the file's SHA-256 differs from the signed record's")
)

// Verify checks a released file against its signed record with the
// node's verifier key (the one the recipient pinned, not the record's own).
func Verify(file []byte, s Signed, verifierKey string) (Record, error) {
	_, pub, err := federation.ParseVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return Record{}, err
	}
	// The signed bytes are json.Marshal's (compact); a record file that was
	// pretty-printed since compacts back to them.
	var compact bytes.Buffer
	if err := json.Compact(&compact, s.Record); err != nil {
		return Record{}, ErrSignature
	}
	if !federation.Verify(ed25519.PublicKey(pub), Label, compact.Bytes(), s.Signature) {
		return Record{}, ErrSignature
	}
	var r Record
	if err := json.Unmarshal(s.Record, &r); err != nil {
		return Record{}, err
	}
	sum := sha256.Sum256(file)
	if hex.EncodeToString(sum[:]) != r.SHA256 {
		return r, ErrTampered
	}
	return r, nil
}

// Releases is the registry: the state store's table of signed release
// records by dataset and recipient organisation, shared by replicas.
type Releases interface {
	ExportReleases(ctx context.Context, dataset, org string) ([]store.ExportRelease, error)
	PutExportRelease(ctx context.Context, r store.ExportRelease, after int) (bool, error)
}

// registered reads a dataset's releases to an org (every org for "")
// from the registry, as signed and as decoded.
func registered(ctx context.Context, reg Releases, dataset, org string) ([]Signed, []Record, error) {
	rs, err := reg.ExportReleases(ctx, dataset, org)
	if err != nil {
		return nil, nil, err
	}
	signed, recs := make([]Signed, 0, len(rs)), make([]Record, 0, len(rs))
	for _, r := range rs {
		var s Signed
		var rec Record
		if json.Unmarshal(r.Record, &s) != nil || json.Unmarshal(s.Record, &rec) != nil {
			return nil, nil, fmt.Errorf("export: registry entry %s does not decode", r.ID)
		}
		signed, recs = append(signed, s), append(recs, rec)
	}
	return signed, recs, nil
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
