package fedjob

import (
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/share"
)

// Use is one round of a job that read this node's data, from its own
// audit log: the contribution entry (the rows read, the ledger charged)
// and, if this node unmasked for the round, the survivors it did so for.
type Use struct {
	Index     uint64
	Time      time.Time
	Round     string
	RoundID   string
	Analyst   string
	Hash      string
	Rho       float64
	Survivors string // "" if this node did not unmask (the round failed, or it dropped)
}

// Usage lists the job's uses of this node's data among entries (the first
// at index first), with the unmaskings matched to their rounds.
func Usage(entries []audit.Entry, first uint64, job string) []Use {
	var out []Use
	byRound := map[string]int{}
	for i, e := range entries {
		if e.Extra["job"] != job {
			continue
		}
		switch e.Event {
		case share.EventCode(share.OpSecaggContribute, share.Run, true):
			byRound[e.Extra["round_id"]] = len(out)
			out = append(out, Use{Index: first + uint64(i), Time: e.Time, Round: e.Extra["round"], RoundID: e.Extra["round_id"],
				Analyst: e.Principal, Hash: e.Extra["job_hash"], Rho: e.Rho})
		case share.EventCode(share.OpSecaggStep, share.Run, true):
			if k, ok := byRound[e.Extra["round_id"]]; ok {
				out[k].Survivors = e.Extra["survivors"]
			}
		}
	}
	return out
}
