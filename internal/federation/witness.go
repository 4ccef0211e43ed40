package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/httpapi"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Cosignatures follow C2SP tlog-cosignature: a witness signs
// "cosignature/v1\ntime <unix seconds>\n" followed by the checkpoint
// body, and appends to the checkpoint note the line
// "— <witness> base64(key id ‖ timestamp ‖ signature)", its key id being
// the first four bytes of SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key).
const cosignatureAlg = 0x04

func cosignatureKeyID(name string, pub ed25519.PublicKey) []byte {
	h := sha256.Sum256(append(append([]byte(name+"\n"), cosignatureAlg), pub...))
	return h[:4]
}

func cosignedMessage(body string, t uint64) []byte {
	return []byte(fmt.Sprintf("cosignature/v1\ntime %d\n%s", t, body))
}

// Cosign returns the cosignature line on a checkpoint body.
func (k *NodeKey) Cosign(body string, at time.Time) string {
	t := uint64(at.Unix())
	sig := ed25519.Sign(k.priv, cosignedMessage(body, t))
	b := append(cosignatureKeyID(k.Name, k.Public()), binary.BigEndian.AppendUint64(nil, t)...)
	return "— " + k.Name + " " + base64.StdEncoding.EncodeToString(append(b, sig...)) + "\n"
}

// VerifyCosignature checks one cosignature line on a checkpoint body
// with a witness's pinned key, returning its time.
func VerifyCosignature(body, line string, witness *workspace.Peer) (time.Time, error) {
	name, pub, err := ParseVerifier(witness.Key)
	if err != nil {
		return time.Time{}, err
	}
	f := strings.Fields(strings.TrimSpace(line))
	if len(f) != 3 || f[0] != "—" || f[1] != name {
		return time.Time{}, errors.New("not a cosignature line of " + name)
	}
	b, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil || len(b) != 4+8+ed25519.SignatureSize || !bytes.Equal(b[:4], cosignatureKeyID(name, pub)) {
		return time.Time{}, errors.New("malformed cosignature of " + name)
	}
	t := binary.BigEndian.Uint64(b[4:12])
	if !ed25519.Verify(pub, cosignedMessage(body, t), b[12:]) {
		return time.Time{}, errors.New("the cosignature of " + name + " does not verify")
	}
	return time.Unix(int64(t), 0).UTC(), nil
}

// splitNote separates a signed note's body from its signature lines.
func splitNote(signed []byte) (string, []string) {
	body, sigs, ok := strings.Cut(string(signed), "\n\n")
	if !ok {
		return string(signed), nil
	}
	var lines []string
	for _, l := range strings.SplitAfter(sigs, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return body + "\n", lines
}

// Witness cosigns peers' checkpoints, refusing any that is not
// consistent with what it, or another witness, cosigned before.
type Witness struct {
	Key    *NodeKey
	Client *Client
	Store  store.Store
	Kernel *govern.Kernel
	Log    *slog.Logger
	// Forks counts detected forks (a metric).
	Forks func(peer string)
}

// ForkError is a detected split view: two checkpoints signed by the same
// log that no append-only history contains both of.
type ForkError struct {
	Peer   string
	Reason string
	A, B   []byte // the two signed checkpoints: evidence anyone can check
}

func (e *ForkError) Error() string {
	return fmt.Sprintf("peer %s forked its audit log: %s", e.Peer, e.Reason)
}

type checkpointMsg struct {
	Checkpoint string `json:"checkpoint"`
}

type consistencyMsg struct {
	Proof [][]byte `json:"proof"`
}

type cosignatureMsg struct {
	Checkpoint  string `json:"checkpoint"`
	Cosignature string `json:"cosignature"`
}

// WitnessPeer fetches a peer's checkpoint and cosigns it if it is
// consistent with the last one this node cosigned and with what every
// other peer reports having cosigned; the cosignature is recorded here
// and sent to the peer. A fork is audited (rule witness.fork) and
// returned as a *ForkError.
func (w *Witness) WitnessPeer(ctx context.Context, p *workspace.Peer, others []*workspace.Peer) error {
	var msg checkpointMsg
	if err := w.Client.Get(ctx, p, "/peer/v1/checkpoint", &msg); err != nil {
		return err
	}
	cp, err := audit.ParseCheckpoint([]byte(msg.Checkpoint), p.Key)
	if err != nil {
		return w.fork(ctx, &ForkError{Peer: p.Name, Reason: "its checkpoint does not verify with its pinned key: " + err.Error()}, nil)
	}
	prevSigned, err := w.Store.Witnessed(ctx, p.Name)
	if err != nil {
		return err
	}
	var prevSize uint64
	if prevSigned != nil {
		prev, err := audit.ParseCheckpoint(prevSigned, p.Key)
		if err != nil {
			return fmt.Errorf("the recorded checkpoint of %s does not verify: %w", p.Name, err)
		}
		prevSize = prev.Size
		if err := w.consistent(ctx, p, prev, cp); err != nil {
			return w.fork(ctx, err, nil)
		}
	}
	// Gossip: what the other witnesses cosigned of this log must be
	// consistent with it too; a log that showed them another history
	// is caught here.
	for _, o := range others {
		if o.Name == p.Name || o.Name == w.Key.Name {
			continue
		}
		var seen checkpointMsg
		if err := w.Client.Get(ctx, o, "/peer/v1/witnessed?log="+url.QueryEscape(p.Name), &seen); err != nil || seen.Checkpoint == "" {
			continue // an unreachable witness cannot vouch; it does not block
		}
		theirs, err := audit.ParseCheckpoint([]byte(seen.Checkpoint), p.Key)
		if err != nil {
			continue // not signed by the log: that witness's problem, not evidence
		}
		a, b := theirs, cp
		if a.Size > b.Size {
			a, b = b, a
		}
		if err := w.consistent(ctx, p, a, b); err != nil {
			return w.fork(ctx, err, o)
		}
	}
	body, _ := splitNote([]byte(msg.Checkpoint))
	line := w.Key.Cosign(body, w.Kernel.Now())
	cosigned := strings.TrimRight(msg.Checkpoint, "\n") + "\n" + line
	if cp.Size != prevSize || prevSigned == nil {
		if ok, err := w.Store.AdvanceWitnessed(ctx, p.Name, prevSize, cp.Size, []byte(cosigned)); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("another replica witnessed %s at the same time; retry", p.Name)
		}
	}
	return w.Client.postPlain(ctx, p, "/peer/v1/cosignature", cosignatureMsg{Checkpoint: msg.Checkpoint, Cosignature: line})
}

// consistent checks that checkpoint b extends checkpoint a (a.Size ≤
// b.Size), with the log's own consistency proof.
func (w *Witness) consistent(ctx context.Context, p *workspace.Peer, a, b *audit.Checkpoint) error {
	switch {
	case b.Size < a.Size:
		return &ForkError{Peer: p.Name, Reason: fmt.Sprintf("its log shrank from %d to %d entries", a.Size, b.Size), A: a.Signed, B: b.Signed}
	case a.Size == b.Size:
		if a.Root != b.Root {
			return &ForkError{Peer: p.Name, Reason: fmt.Sprintf("two different trees of %d entries", a.Size), A: a.Signed, B: b.Signed}
		}
		return nil
	case a.Size == 0:
		return nil
	}
	var pr consistencyMsg
	if err := w.Client.Get(ctx, p, fmt.Sprintf("/peer/v1/consistency?from=%d&to=%d", a.Size, b.Size), &pr); err != nil {
		return err
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.Size, b.Size, pr.Proof, a.Root[:], b.Root[:]); err != nil {
		return &ForkError{Peer: p.Name, Reason: fmt.Sprintf("its tree of %d entries does not extend its tree of %d", b.Size, a.Size), A: a.Signed, B: b.Signed}
	}
	return nil
}

// fork audits a detected fork with both checkpoints as evidence.
func (w *Witness) fork(ctx context.Context, err error, via *workspace.Peer) error {
	var f *ForkError
	if !errors.As(err, &f) {
		return err
	}
	if w.Forks != nil {
		w.Forks(f.Peer)
	}
	msg := f.Error()
	if via != nil {
		msg += " (against what " + via.Name + " cosigned)"
	}
	w.Log.Error("audit log fork detected", "peer", f.Peer, "reason", f.Reason)
	r := govern.Request{Caller: share.Caller{Channel: "peer", Peer: f.Peer, Identity: share.Identity{Principal: "witness:" + w.Key.Name}}, Op: govern.Edge(share.OpWitness)}
	why := refusal.New(refusal.Forbidden, "witness.fork", "%s", msg)
	why.Details = map[string]any{"checkpoint_a": string(f.A), "checkpoint_b": string(f.B)}
	_ = w.Kernel.Refuse(ctx, r, why)
	return f
}

// postPlain posts an unsigned JSON body (its content is self-certifying:
// a cosignature verifies under the witness's pinned key).
func (c *Client) postPlain(ctx context.Context, p *workspace.Peer, path string, body any) error {
	b, _ := json.Marshal(body)
	var out struct{}
	return c.do(ctx, p, http.MethodPost, path, b, &out)
}

// The log's side of witnessing, on the peer endpoint.

func (m *Member) checkpoint(w http.ResponseWriter, r *http.Request, _ *workspace.Peer) error {
	signed, err := m.Audit.Checkpoint(r.Context())
	if err != nil {
		return refusal.AuditUnavailable()
	}
	httpapi.WriteJSON(w, http.StatusOK, checkpointMsg{Checkpoint: string(signed)})
	return nil
}

func (m *Member) consistency(w http.ResponseWriter, r *http.Request, _ *workspace.Peer) error {
	from, err1 := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
	to, err2 := strconv.ParseUint(r.URL.Query().Get("to"), 10, 64)
	if err1 != nil || err2 != nil || from > to || to > m.Audit.Tree().Size() {
		return refusal.New(refusal.BadSQL, "audit.range", "no consistency proof for that range")
	}
	hs, err := m.Audit.Tree().ConsistencyProof(from, to)
	if err != nil {
		return refusal.New(refusal.BadSQL, "audit.range", "no consistency proof for that range")
	}
	out := consistencyMsg{Proof: [][]byte{}}
	for _, h := range hs {
		out.Proof = append(out.Proof, h[:])
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// cosignature records a peer's cosignature on one of this node's
// checkpoints, after checking it is this node's and verifies under the
// witness's pinned key; the line is stored re-encoded, never as sent.
// Refusals are audited.
func (m *Member) cosignature(w http.ResponseWriter, r *http.Request, p *workspace.Peer) error {
	c := peerCaller(r, p)
	refuse := func(why *refusal.Error) error {
		return m.Kernel.Refuse(r.Context(), govern.Request{Caller: c, Op: govern.Edge(share.OpWitness)}, why)
	}
	var msg cosignatureMsg
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&msg); err != nil {
		return refuse(refusal.New(refusal.BadSQL, "peer.body", "the body must be {checkpoint, cosignature}"))
	}
	cp, err := audit.ParseCheckpoint([]byte(msg.Checkpoint), m.Key.Verifier)
	if err != nil {
		return refuse(refusal.New(refusal.BadSQL, "witness.checkpoint", "not a checkpoint of this node"))
	}
	if root, err := m.Audit.Tree().Root(cp.Size); err != nil || root != cp.Root {
		return refuse(refusal.New(refusal.BadSQL, "witness.checkpoint", "not a checkpoint of this node's log"))
	}
	body, _ := splitNote([]byte(msg.Checkpoint))
	if _, err := VerifyCosignature(body, msg.Cosignature, p); err != nil {
		return refuse(refusal.New(refusal.Unauthenticated, "witness.cosignature", "%s", err.Error()))
	}
	line := "— " + p.Name + " " + strings.Fields(msg.Cosignature)[2] + "\n"
	if err := m.Store.PutCosignature(r.Context(), cp.Size, p.Name, []byte(line)); err != nil {
		return refusal.StoreUnavailable(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (m *Member) witnessed(w http.ResponseWriter, r *http.Request, _ *workspace.Peer) error {
	var signed []byte
	if m.Witness != nil {
		var err error
		if signed, err = m.Store.Witnessed(r.Context(), r.URL.Query().Get("log")); err != nil {
			return refusal.StoreUnavailable(err)
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, checkpointMsg{Checkpoint: string(signed)})
	return nil
}

// CosignedCheckpoint is this node's latest checkpoint that peers have
// cosigned, as a note with every cosignature line appended (nil if none).
func CosignedCheckpoint(ctx context.Context, l *audit.Log, st store.Store, key string) ([]byte, error) {
	size, lines, err := st.MostCosigned(ctx)
	if err != nil || len(lines) == 0 { // size 0 is a tree that can be cosigned too
		return nil, err
	}
	signed, err := l.CheckpointAt(size)
	if err != nil {
		return nil, err
	}
	out := strings.TrimRight(string(signed), "\n") + "\n"
	for _, name := range slices.Sorted(maps.Keys(lines)) {
		out += string(lines[name])
	}
	return []byte(out), nil
}

// VerifyCosigned checks a cosigned checkpoint: the log's signature with
// its key, and each cosignature line with the pinned key of the peer it
// names. It returns the checkpoint and the peers whose cosignatures
// verify; lines of unknown witnesses are ignored, bad ones are errors.
func VerifyCosigned(signed []byte, logKey string, peers map[string]*workspace.Peer) (*audit.Checkpoint, []string, error) {
	cp, err := audit.ParseCheckpoint(signed, logKey)
	if err != nil {
		return nil, nil, err
	}
	logName, _, _ := ParseVerifier(logKey)
	body, lines := splitNote(signed)
	var ok []string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 || f[1] == logName { // the log's own note signature
			continue
		}
		p := peers[f[1]]
		if p == nil {
			continue
		}
		if _, err := VerifyCosignature(body, l, p); err != nil {
			return nil, nil, err
		}
		ok = append(ok, p.Name)
	}
	return cp, ok, nil
}
