package collab

import (
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/share"
)

// Use is one use of this member's data in a collaboration, read back
// from its own audit log, with the verdict of checking it against what
// the member signed.
type Use struct {
	Index        uint64    `json:"index"`
	Time         time.Time `json:"time"`
	Role         string    `json:"role"` // "queried" (this node's member asked) or "contributed"
	Querier      string    `json:"querier"`
	Template     string    `json:"template,omitempty"`
	TemplateHash string    `json:"template_hash,omitempty"`
	Hash         string    `json:"collaboration_hash"`
	Verdict      string    `json:"verdict"`
}

// Verdicts of a use.
const (
	UseApproved   = "approved template"
	UseAdHoc      = "ad-hoc query under an aggregation rule"
	UseEarlier    = "under an earlier version of the collaboration"
	UseUnapproved = "NOT APPROVED"
)

// Usage lists every allowed entry of the collaboration in a member's log
// (entries from index first on) and checks each against the member's
// current statement: a template this member approved, or ad-hoc SQL over
// its table under an aggregation rule; uses under an earlier hash are
// named as such (their approvals were for that hash).
func Usage(entries []audit.Entry, first uint64, c *Collaboration, st *Statement, self *Member) []Use {
	queried, contributed := share.EventCode(share.OpCollabQuery, share.Run, true), share.EventCode(share.OpCollabJoin, share.Run, true)
	var out []Use
	for i, e := range entries {
		if e.Extra["collaboration"] != c.ID || (e.Event != queried && e.Event != contributed) {
			continue
		}
		u := Use{Index: first + uint64(i), Time: e.Time, Role: "contributed", Querier: e.Extra["querier"], Template: e.Extra["template"],
			TemplateHash: e.Extra["template_hash"], Hash: e.Extra["collaboration_hash"]}
		if e.Event == queried {
			u.Role = "queried"
		}
		t := c.Tables[e.Extra["table"]]
		switch {
		case u.Hash != c.Hash():
			u.Verdict = UseEarlier
		case u.Template != "" && approvedHere(st, c, u.Template, u.TemplateHash):
			u.Verdict = UseApproved
		case u.Template == "" && t != nil && t.Member == self.Org && t.Rule == RuleAggregation:
			u.Verdict = UseAdHoc
		default:
			u.Verdict = UseUnapproved
		}
		out = append(out, u)
	}
	return out
}

func approvedHere(st *Statement, c *Collaboration, name, hash string) bool {
	if st == nil || st.Hash != c.Hash() {
		return false
	}
	for _, a := range st.Approvals {
		if a.Template == name && a.Hash == hash {
			return true
		}
	}
	return false
}
