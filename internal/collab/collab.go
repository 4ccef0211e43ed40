// Package collab is the clean room across organisations: a collaboration
// is a file every member keeps (members and their nodes, each member's
// contributed tables under that member's rule, abilities, approved
// analysis templates, budgets), in force only while every member has
// signed its content hash with its node key. Queries over it join
// members' tables on identifiers by the private join of package psi, so
// each table stays at its owner's node and only governed, noisy cells
// leave.
package collab

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Collaboration is the parsed file.
type Collaboration struct {
	ID          string   `yaml:"id"`
	Description string   `yaml:"description,omitempty"`
	Purpose     string   `yaml:"purpose"`
	Members     []Member `yaml:"members"`
	// Tables are keyed "<member org>.<table>", the name queries use.
	Tables    map[string]*Table `yaml:"tables"`
	Templates []Template        `yaml:"templates,omitempty"`

	hash string
}

// Ability names what a member may do.
const (
	CanQuery          = "can_query"
	CanReceiveResults = "can_receive_results"
)

// Member is one organisation and its node.
type Member struct {
	Org string `yaml:"org"`
	// Node is the member's node name (node.name there; a peer here).
	Node string `yaml:"node"`
	// Key is the node's verifier key: the hash binds it, so a collaboration
	// signed for one node key is not in force with another.
	Key       string   `yaml:"key"`
	Abilities []string `yaml:"abilities,omitempty"`
	// Queriers are the member's principals who may run queries (with
	// can_query).
	Queriers []string `yaml:"queriers,omitempty"`
	// Budget is what this member's data may spend in the collaboration.
	Budget *Budget `yaml:"budget,omitempty"`
}

// Budget is a member's privacy budget in the collaboration.
type Budget struct {
	Epsilon float64       `yaml:"epsilon"`
	Delta   float64       `yaml:"delta"`
	Period  time.Duration `yaml:"period,omitempty"`
}

// Rule kinds of a contributed table.
const (
	RuleAggregation = "aggregation" // governed SQL of the shape plan.go accepts
	RuleCustom      = "custom"      // only approved templates
)

// Table is a member's contribution and the member's rule for it.
type Table struct {
	Member  string `yaml:"member"`
	Dataset string `yaml:"dataset"` // the dataset's name at the member's node
	Rule    string `yaml:"rule"`
	// JoinKeys are the columns other members may join on.
	JoinKeys []string `yaml:"join_keys"`
	// Filters are the columns a WHERE may test.
	Filters []string `yaml:"filters,omitempty"`
	// Dimensions are the columns results may be grouped by, each with its
	// public domain (a value outside it counts under "other").
	Dimensions map[string][]string `yaml:"dimensions,omitempty"`
	// Values are the columns that may be summed, each unit's sum clamped
	// to its bounds (the sensitivity of the noise).
	Values map[string]Bounds `yaml:"values,omitempty"`
	// MinMatched is the threshold on matched identifiers per released
	// cell, applied to the noisy count.
	MinMatched int `yaml:"min_matched"`
	// Epsilon is what one query spends of the member's budget.
	Epsilon float64 `yaml:"epsilon"`
}

// Bounds clamp a unit's sum.
type Bounds struct {
	Min int64 `yaml:"min"`
	Max int64 `yaml:"max"`
}

// Template is a parameterised analysis; it runs under a custom rule only
// once every owner of a table it reads has approved its hash.
type Template struct {
	Name   string   `yaml:"name"`
	SQL    string   `yaml:"sql"`
	Params []string `yaml:"params,omitempty"` // parameter names, $1…
}

// Hash is the template's content hash.
func (t Template) Hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "airlock template v1\n%s\n%q\n", t.SQL, t.Params)
	return hex.EncodeToString(h.Sum(nil))
}

// Hash is the collaboration's content hash: SHA-256 of the file's bytes,
// so any change at all, a comment included, needs every signature again.
func (c *Collaboration) Hash() string { return c.hash }

// Dir is where a workspace keeps its collaborations.
func Dir(workspace string) string { return filepath.Join(workspace, "collaborations") }

var validID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Load reads and checks <workspace>/collaborations/<id>.yaml.
func Load(workspace, id string) (*Collaboration, error) {
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("collaboration id %q is not a lower-case name", id)
	}
	b, err := os.ReadFile(filepath.Join(Dir(workspace), id+".yaml"))
	if err != nil {
		return nil, err
	}
	return Parse(b, id)
}

// Parse decodes and checks a collaboration file.
func Parse(b []byte, id string) (*Collaboration, error) {
	var c Collaboration
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("collaboration %s: %w", id, err)
	}
	sum := sha256.Sum256(b)
	c.hash = hex.EncodeToString(sum[:])
	if err := c.check(id); err != nil {
		return nil, fmt.Errorf("collaboration %s: %w", id, err)
	}
	return &c, nil
}

func (c *Collaboration) check(id string) error {
	if c.ID != id {
		return fmt.Errorf("the file names id %q", c.ID)
	}
	if c.Purpose == "" {
		return fmt.Errorf("no purpose")
	}
	if len(c.Members) < 2 {
		return fmt.Errorf("a collaboration needs at least two members")
	}
	orgs := map[string]bool{}
	for _, m := range c.Members {
		if m.Org == "" || m.Node == "" || m.Key == "" {
			return fmt.Errorf("every member needs org, node and key")
		}
		if orgs[m.Org] {
			return fmt.Errorf("member %s is listed twice", m.Org)
		}
		orgs[m.Org] = true
		for _, a := range m.Abilities {
			if a != CanQuery && a != CanReceiveResults {
				return fmt.Errorf("member %s: unknown ability %q", m.Org, a)
			}
		}
		if len(m.Queriers) > 0 && !slices.Contains(m.Abilities, CanQuery) {
			return fmt.Errorf("member %s names queriers without can_query", m.Org)
		}
		if b := m.Budget; b != nil && (b.Epsilon <= 0 || b.Delta <= 0 || b.Delta >= 1) {
			return fmt.Errorf("member %s: a budget needs ε > 0 and 0 < δ < 1", m.Org)
		}
	}
	for name, t := range c.Tables {
		if t.Member+"."+t.Dataset != name && !validTableName(name, t.Member) {
			return fmt.Errorf("table %s must be named <member>.<table>", name)
		}
		m := c.Member(t.Member)
		switch {
		case m == nil:
			return fmt.Errorf("table %s: %s is not a member", name, t.Member)
		case m.Budget == nil:
			return fmt.Errorf("table %s: member %s contributes data without a budget", name, t.Member)
		case t.Rule != RuleAggregation && t.Rule != RuleCustom:
			return fmt.Errorf("table %s: rule must be %s or %s", name, RuleAggregation, RuleCustom)
		case len(t.JoinKeys) == 0:
			return fmt.Errorf("table %s: no join_keys", name)
		case t.MinMatched < 1:
			return fmt.Errorf("table %s: min_matched must be at least 1", name)
		case !(t.Epsilon > 0 && t.Epsilon <= m.Budget.Epsilon):
			return fmt.Errorf("table %s: epsilon must lie in (0, %g], the member's budget", name, m.Budget.Epsilon)
		}
		for col, d := range t.Dimensions {
			if len(d) == 0 || len(d) > 256 {
				return fmt.Errorf("table %s: dimension %s needs 1 to 256 values", name, col)
			}
		}
		for col, b := range t.Values {
			if b.Min > b.Max || b.Min < -1e9 || b.Max > 1e9 {
				return fmt.Errorf("table %s: value %s needs -1e9 ≤ min ≤ max ≤ 1e9", name, col)
			}
		}
	}
	names := map[string]bool{}
	for _, t := range c.Templates {
		if t.Name == "" || t.SQL == "" || names[t.Name] {
			return fmt.Errorf("every template needs a unique name and its sql")
		}
		names[t.Name] = true
	}
	return nil
}

func validTableName(name, member string) bool {
	rest, ok := strings.CutPrefix(name, member+".")
	return ok && rest != "" && !strings.ContainsAny(rest, ". ")
}

// Member finds a member by org.
func (c *Collaboration) Member(org string) *Member {
	for i := range c.Members {
		if c.Members[i].Org == org {
			return &c.Members[i]
		}
	}
	return nil
}

// MemberOfNode finds the member a node serves.
func (c *Collaboration) MemberOfNode(node string) *Member {
	for i := range c.Members {
		if c.Members[i].Node == node {
			return &c.Members[i]
		}
	}
	return nil
}

// Template finds a template by name.
func (c *Collaboration) Template(name string) *Template {
	for i := range c.Templates {
		if c.Templates[i].Name == name {
			return &c.Templates[i]
		}
	}
	return nil
}

// Has reports whether a member holds an ability.
func (m *Member) Has(ability string) bool { return slices.Contains(m.Abilities, ability) }

// List names the collaborations in a workspace.
func List(workspace string) []string {
	files, _ := filepath.Glob(filepath.Join(Dir(workspace), "*.yaml"))
	var out []string
	for _, f := range files {
		out = append(out, filepath.Base(f[:len(f)-len(".yaml")]))
	}
	sort.Strings(out)
	return out
}
