package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// TamperError reports history that does not match what was signed or
// verified before, with the first index that differs.
type TamperError struct {
	Index  uint64
	Reason string
	// AtOrAfter marks Index as a lower bound: without a trusted copy of
	// the earlier entries the first differing one cannot be pinned down.
	AtOrAfter bool
}

func (e *TamperError) Error() string {
	if e.AtOrAfter {
		return fmt.Sprintf("audit log tampered at or after index %d: %s", e.Index, e.Reason)
	}
	return fmt.Sprintf("audit log tampered at index %d: %s", e.Index, e.Reason)
}

// Trusted is what an auditor keeps between verifications: the last
// verified checkpoint and the leaf hashes it covers.
type Trusted struct {
	Checkpoint *Checkpoint
	Hashes     []Hash
}

// VerifyHistory checks a full download of the log (entries [0, newCP.Size))
// against its signed checkpoint, and against what was trusted before: no
// entry verified earlier may differ, none may be missing, and the old tree
// must be a prefix of the new one. consistency, if not nil, is the server's
// proof between the two checkpoints, checked with an independent
// implementation (transparency-dev/merkle). It returns the new trusted state.
func VerifyHistory(entries [][]byte, newCP *Checkpoint, old *Trusted, consistency [][]byte) (*Trusted, error) {
	if uint64(len(entries)) < newCP.Size {
		return nil, &TamperError{Index: uint64(len(entries)), Reason: fmt.Sprintf("entry missing: the checkpoint covers %d entries, %d were served", newCP.Size, len(entries))}
	}
	entries = entries[:newCP.Size]
	hashes := make([]Hash, len(entries))
	var tree Tree
	for i, e := range entries {
		hashes[i] = LeafHash(e)
	}
	tree.Append(hashes...)
	if old != nil {
		// The first differing entry explains a deletion better than the
		// shorter length it causes, so compare before checking sizes.
		for i := 0; i < len(old.Hashes) && i < len(hashes); i++ {
			if hashes[i] != old.Hashes[i] {
				return nil, &TamperError{Index: uint64(i), Reason: "entry differs from the one verified before (rewritten, deleted, reordered or forked)"}
			}
		}
		if old.Checkpoint != nil && newCP.Size < old.Checkpoint.Size {
			return nil, &TamperError{Index: newCP.Size, Reason: fmt.Sprintf("log truncated: it now has %d entries, %d were verified before", newCP.Size, old.Checkpoint.Size)}
		}
		if old.Checkpoint != nil {
			r, _ := tree.Root(old.Checkpoint.Size)
			if r != old.Checkpoint.Root {
				return nil, &TamperError{Index: firstUnverified(old), AtOrAfter: true, Reason: "the history the earlier checkpoint signed was rewritten"}
			}
			if consistency != nil {
				if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.Checkpoint.Size, newCP.Size, consistency, old.Checkpoint.Root[:], newCP.Root[:]); err != nil {
					return nil, &TamperError{Index: old.Checkpoint.Size, Reason: "consistency proof does not verify: " + err.Error()}
				}
			}
		}
	}
	root, _ := tree.Root(newCP.Size)
	if root != newCP.Root {
		idx := uint64(0)
		if old != nil {
			idx = uint64(len(old.Hashes))
		}
		return nil, &TamperError{Index: idx, AtOrAfter: true, Reason: "entries do not hash to the signed checkpoint's root"}
	}
	return &Trusted{Checkpoint: newCP, Hashes: hashes}, nil
}

func firstUnverified(t *Trusted) uint64 {
	return uint64(len(t.Hashes))
}

// VerifyInclusion checks one entry's inclusion proof against a checkpoint
// with transparency-dev/merkle.
func VerifyInclusion(entry []byte, index uint64, cp *Checkpoint, path [][]byte) error {
	return VerifyLeafInclusion(LeafHash(entry), index, cp, path)
}

// VerifyLeafInclusion checks that the leaf hash h is entry index of the
// tree a checkpoint signs, for a verifier that holds the hash but not
// the entry (a federation receipt).
func VerifyLeafInclusion(h Hash, index uint64, cp *Checkpoint, path [][]byte) error {
	return proof.VerifyInclusion(rfc6962.DefaultHasher, index, cp.Size, h[:], path, cp.Root[:])
}

// SaveTrusted writes the trusted state: the signed checkpoint at path and
// the leaf hashes at path+".hashes".
func SaveTrusted(path string, t *Trusted) error {
	if err := os.WriteFile(path, t.Checkpoint.Signed, 0o644); err != nil {
		return err
	}
	buf := make([]byte, 0, 32*len(t.Hashes))
	for _, h := range t.Hashes {
		buf = append(buf, h[:]...)
	}
	return os.WriteFile(path+".hashes", buf, 0o644)
}

// LoadTrusted reads a trusted state written by SaveTrusted; a missing
// hashes file leaves Hashes empty (the checkpoint alone still pins the root).
func LoadTrusted(path, verifierKey string) (*Trusted, error) {
	signed, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cp, err := ParseCheckpoint(signed, verifierKey)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t := &Trusted{Checkpoint: cp}
	b, err := os.ReadFile(path + ".hashes")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if len(b)%32 != 0 {
		return nil, fmt.Errorf("%s.hashes is malformed", path)
	}
	for i := 0; i+32 <= len(b); i += 32 {
		t.Hashes = append(t.Hashes, Hash(b[i:i+32]))
	}
	return t, nil
}

// Filter selects entries for export.
type Filter struct {
	From, To  time.Time
	Principal string
	Dataset   string
	Decision  string
	Rule      string // the rule that refused (e.g. aggregation.differencing)
}

// Match reports whether an entry passes the filter.
func (f Filter) Match(e Entry) bool {
	if !f.From.IsZero() && e.Time.Before(f.From) {
		return false
	}
	if !f.To.IsZero() && !e.Time.Before(f.To) {
		return false
	}
	if f.Principal != "" && e.Principal != f.Principal {
		return false
	}
	if f.Decision != "" && e.Decision != f.Decision {
		return false
	}
	if f.Rule != "" && e.Rule != f.Rule {
		return false
	}
	if f.Dataset != "" {
		found := false
		for _, d := range e.Datasets {
			found = found || d == f.Dataset
		}
		return found
	}
	return true
}

// ExportJSONL writes matching entries as JSON lines ({"index": i, "entry": {...}}).
func ExportJSONL(w io.Writer, first uint64, entries [][]byte, f Filter) error {
	bw := bufio.NewWriter(w)
	for i, raw := range entries {
		e, err := ParseEntry(raw)
		if err != nil {
			return fmt.Errorf("entry %d: %w", first+uint64(i), err)
		}
		if !f.Match(e) {
			continue
		}
		// The entry's canonical bytes go out verbatim (json.Marshal would
		// re-escape them), so an export can be verified offline.
		fmt.Fprintf(bw, `{"index":%d,"entry":`, first+uint64(i))
		bw.Write(raw)
		bw.WriteString("}\n")
	}
	return bw.Flush()
}

// ReadExport reads a JSON-lines export back into canonical entries. It
// must be a complete export (no filter): entries are checked to be dense
// from index 0.
func ReadExport(r io.Reader) ([][]byte, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var out [][]byte
	for sc.Scan() {
		var line struct {
			Index uint64          `json:"index"`
			Entry json.RawMessage `json:"entry"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, fmt.Errorf("export line %d: %w", len(out)+1, err)
		}
		if line.Index != uint64(len(out)) {
			return nil, &TamperError{Index: uint64(len(out)), Reason: fmt.Sprintf("export jumps to index %d (filtered or incomplete export)", line.Index)}
		}
		out = append(out, append([]byte(nil), line.Entry...))
	}
	return out, sc.Err()
}
