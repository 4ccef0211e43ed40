package collab

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-dev/airlock/internal/federation"
)

// Statement is what one member's node says about a collaboration: its
// signature over the collaboration hash, its approvals of templates, or
// that it left. Each node keeps its own in <id>.<node>.json next to the
// file and serves it to the other members, who ask on every query: a
// leave takes effect at the next query anywhere.
type Statement struct {
	Collaboration string     `json:"collaboration"`
	Node          string     `json:"node"`
	Hash          string     `json:"hash,omitempty"`
	Signature     []byte     `json:"signature,omitempty"`
	Approvals     []Approval `json:"approvals,omitempty"`
	// Left is when the member left; a statement with Left signs no hash.
	Left *time.Time `json:"left,omitempty"`
}

// Approval is a member's signature over a template's hash.
type Approval struct {
	Template  string `json:"template"`
	Hash      string `json:"hash"`
	Signature []byte `json:"signature"`
}

const (
	signLabel    = "collaboration"
	approveLabel = "collaboration template"
)

func signed(id, hash string) []byte { return fmt.Appendf(nil, "%s\n%s\n", id, hash) }

func approved(id, hash, template, thash string) []byte {
	return fmt.Appendf(nil, "%s\n%s\n%s\n%s\n", id, hash, template, thash)
}

func statementPath(workspace, id, node string) string {
	return filepath.Join(Dir(workspace), id+"."+node+".json")
}

// ReadStatement reads this node's statement (none yet: an empty one).
func ReadStatement(workspace, id, node string) (*Statement, error) {
	b, err := os.ReadFile(statementPath(workspace, id, node))
	if errors.Is(err, os.ErrNotExist) {
		return &Statement{Collaboration: id, Node: node}, nil
	}
	if err != nil {
		return nil, err
	}
	var s Statement
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("statement of %s: %w", id, err)
	}
	return &s, nil
}

func writeStatement(workspace string, s *Statement) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	path := statementPath(workspace, s.Collaboration, s.Node)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Sign signs the collaboration's current hash with the node key; earlier
// approvals of templates survive only if they were for this hash.
func Sign(workspace string, c *Collaboration, key *federation.NodeKey) (*Statement, error) {
	if c.MemberOfNode(key.Name) == nil {
		return nil, fmt.Errorf("node %s serves no member of collaboration %s", key.Name, c.ID)
	}
	s, err := ReadStatement(workspace, c.ID, key.Name)
	if err != nil {
		return nil, err
	}
	if s.Left != nil {
		return nil, fmt.Errorf("this node left collaboration %s on %s; a new collaboration needs a new id", c.ID, s.Left.Format(time.RFC3339))
	}
	if s.Hash != c.Hash() {
		s.Approvals = nil
	}
	s.Hash, s.Signature = c.Hash(), key.Sign(signLabel, signed(c.ID, c.Hash()))
	return s, writeStatement(workspace, s)
}

// Approve signs a template's hash (under the current collaboration hash).
func Approve(workspace string, c *Collaboration, template string, key *federation.NodeKey) (*Statement, error) {
	t := c.Template(template)
	if t == nil {
		return nil, fmt.Errorf("collaboration %s has no template %s", c.ID, template)
	}
	s, err := Sign(workspace, c, key)
	if err != nil {
		return nil, err
	}
	th := t.Hash()
	kept := s.Approvals[:0]
	for _, a := range s.Approvals {
		if a.Template != template {
			kept = append(kept, a)
		}
	}
	s.Approvals = append(kept, Approval{Template: template, Hash: th, Signature: key.Sign(approveLabel, approved(c.ID, c.Hash(), template, th))})
	return s, writeStatement(workspace, s)
}

// Leave withdraws the node's signature at once: from now on its node
// refuses every request of the collaboration and tells the others it left.
func Leave(workspace string, c *Collaboration, key *federation.NodeKey, now time.Time) (*Statement, error) {
	if c.MemberOfNode(key.Name) == nil {
		return nil, fmt.Errorf("node %s serves no member of collaboration %s", key.Name, c.ID)
	}
	t := now.UTC()
	s := &Statement{Collaboration: c.ID, Node: key.Name, Left: &t}
	return s, writeStatement(workspace, s)
}

// Refusal is a reason a collaboration is not in force or an analysis is
// not approved, with the rule it names.
type Refusal struct {
	Rule, Message string
	// Shape marks a refusal of the query's shape under the collaboration's
	// rules (the planner's), as opposed to who may ask or what is signed.
	Shape bool
}

func (r *Refusal) Error() string { return r.Message }

func refuse(rule, format string, args ...any) *Refusal {
	return &Refusal{Rule: rule, Message: fmt.Sprintf(format, args...)}
}

// InForce checks every member's statement: each must sign this very
// hash with the member's node key as the file names it; none may have
// left.
func (c *Collaboration) InForce(statements map[string]*Statement) error {
	for _, m := range c.Members {
		s := statements[m.Node]
		if s == nil || (s.Left == nil && s.Hash == "") {
			return refuse("collab.unsigned", "member %s has not signed collaboration %s", m.Org, c.ID)
		}
		if s.Left != nil {
			return refuse("collab.member_left", "member %s left collaboration %s on %s", m.Org, c.ID, s.Left.Format(time.RFC3339))
		}
		if s.Hash != c.Hash() {
			return refuse("collab.stale", "member %s signed another version of collaboration %s (hash %.12s…, this node has %.12s…)", m.Org, c.ID, s.Hash, c.Hash())
		}
		pub, err := verifier(m.Key)
		if err != nil || !federation.Verify(pub, signLabel, signed(c.ID, c.Hash()), s.Signature) {
			return refuse("collab.signature", "member %s's signature of collaboration %s does not verify with its node key", m.Org, c.ID)
		}
	}
	return nil
}

// Approved checks that every owner of a table the template reads has
// approved its hash under this collaboration hash.
func (c *Collaboration) Approved(t *Template, owners []string, statements map[string]*Statement) error {
	th := t.Hash()
	for _, org := range owners {
		m := c.Member(org)
		s := statements[m.Node]
		ok := false
		if s != nil {
			pub, err := verifier(m.Key)
			for _, a := range s.Approvals {
				if err == nil && a.Template == t.Name && a.Hash == th && federation.Verify(pub, approveLabel, approved(c.ID, c.Hash(), t.Name, th), a.Signature) {
					ok = true
				}
			}
		}
		if !ok {
			return refuse("collab.template_unapproved", "template %s (hash %.12s…) is not approved by %s, which owns a table it reads", t.Name, th, org)
		}
	}
	return nil
}

func verifier(key string) (ed25519.PublicKey, error) {
	_, pub, err := federation.ParseVerifier(key)
	return pub, err
}
