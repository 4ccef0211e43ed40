package fedjob

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-dev/airlock/internal/federation"
)

// Approval is a data owner's word on a job, kept on its own node: its
// node's signature over the job's hash, and the owner's row filter, a
// predicate over its dataset that the job's reads on this node obey.
// Approving another version of the job replaces it; a withdrawn approval
// stops the node's participation at the next round.
type Approval struct {
	Job       string    `json:"job"`
	Hash      string    `json:"hash"`
	Node      string    `json:"node"`
	RowFilter string    `json:"row_filter,omitempty"`
	Signature []byte    `json:"signature,omitempty"`
	At        time.Time `json:"at"`
	Withdrawn bool      `json:"withdrawn,omitempty"`
}

const approveLabel = "federated job"

func approvalMessage(job, hash, node, filter string) []byte {
	return fmt.Appendf(nil, "%s\n%s\n%s\n%s\n", job, hash, node, filter)
}

// Dir is where a workspace keeps approved jobs.
func Dir(workspace string) string { return filepath.Join(workspace, "jobs") }

func approvalPath(workspace, job, node string) string {
	return filepath.Join(Dir(workspace), job+"."+node+".approval.json")
}

// Approve signs the job's hash with the node key and keeps the job and
// the approval in the workspace.
func Approve(workspace string, j *Job, node string, key *federation.NodeKey, rowFilter string, now time.Time) (*Approval, error) {
	if _, m := j.Member(node); m == nil {
		return nil, fmt.Errorf("node %s serves no member of job %s", node, j.ID)
	}
	a := &Approval{Job: j.ID, Hash: j.Hash(), Node: node, RowFilter: rowFilter, At: now.UTC()}
	a.Signature = key.Sign(approveLabel, approvalMessage(a.Job, a.Hash, a.Node, a.RowFilter))
	if err := os.MkdirAll(Dir(workspace), 0o755); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(Dir(workspace), j.ID+".yaml"), j.Bytes()); err != nil {
		return nil, err
	}
	return a, writeApproval(workspace, a)
}

// Withdraw records that the owner no longer takes part.
func Withdraw(workspace, job, node string, now time.Time) error {
	a, err := ReadApproval(workspace, job, node)
	if err != nil {
		return err
	}
	a.Withdrawn, a.Signature, a.At = true, nil, now.UTC()
	return writeApproval(workspace, a)
}

// ReadApproval reads this node's approval of a job (none: an error).
func ReadApproval(workspace, job, node string) (*Approval, error) {
	if !validID.MatchString(job) {
		return nil, fmt.Errorf("job id %q is not a lower-case name", job)
	}
	b, err := os.ReadFile(approvalPath(workspace, job, node))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no approval of job %s on this node", job)
	}
	if err != nil {
		return nil, err
	}
	var a Approval
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("approval of %s: %w", job, err)
	}
	return &a, nil
}

// Verify checks the approval's signature with the node's key.
func (a *Approval) Verify(key string) bool {
	_, pub, err := federation.ParseVerifier(key)
	return err == nil && !a.Withdrawn && federation.Verify(pub, approveLabel, approvalMessage(a.Job, a.Hash, a.Node, a.RowFilter), a.Signature)
}

func writeApproval(workspace string, a *Approval) error {
	b, _ := json.MarshalIndent(a, "", "  ")
	return writeFile(approvalPath(workspace, a.Job, a.Node), append(b, '\n'))
}

func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
