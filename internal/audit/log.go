package audit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/airlock-dev/airlock/internal/keys"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// LeafStore is the durable storage the log needs (store.Store has it).
type LeafStore interface {
	AppendLeaves(ctx context.Context, data [][]byte, hashes [][32]byte) (first uint64, err error)
	LeafHashes(ctx context.Context, start, end uint64) ([][32]byte, error)
	Leaves(ctx context.Context, start, end uint64) ([][]byte, error)
	Size(ctx context.Context) (uint64, error)
	PutCheckpoint(ctx context.Context, size uint64, signed []byte) error
	LatestCheckpoint(ctx context.Context) ([]byte, error)
}

// Log is the audit log of one node.
type Log struct {
	store  LeafStore
	tree   Tree
	signer note.Signer
	origin string
	// VerifierKey is the note verifier key ("name+hash+base64") auditors
	// pin to check checkpoints.
	VerifierKey string

	reqs   chan appendReq
	done   chan struct{}
	syncMu sync.Mutex // serializes catch-up from the store
	closed sync.Once
	// observe, if set, is told each group commit's size and time.
	observe atomic.Pointer[func(entries int, took time.Duration)]
}

// ObserveCommits sets a function told each group commit's size and time
// (the node's metrics).
func (l *Log) ObserveCommits(f func(entries int, took time.Duration)) { l.observe.Store(&f) }

// commitTimeout bounds one group commit: a stuck store fails the appends
// waiting on it (their requests are refused) instead of hanging them.
const commitTimeout = 30 * time.Second

type appendReq struct {
	data []byte
	hash Hash
	resp chan appendResp
}

type appendResp struct {
	index uint64
	err   error
}

// maxBatch caps one group commit.
const maxBatch = 1024

// Open loads the tree from the store and starts the committer.
func Open(ctx context.Context, st LeafStore, signerKey, origin string) (*Log, error) {
	s, err := note.NewSigner(signerKey)
	if err != nil {
		return nil, fmt.Errorf("audit: signer key: %w", err)
	}
	l := &Log{store: st, signer: s, origin: origin, reqs: make(chan appendReq, 4096), done: make(chan struct{})}
	if err := l.Sync(ctx); err != nil {
		return nil, err
	}
	go l.commitLoop()
	return l, nil
}

// Origin is the checkpoint origin line.
func (l *Log) Origin() string { return l.origin }

// Tree exposes the in-memory tree (read-only use).
func (l *Log) Tree() *Tree { return &l.tree }

// Sync loads leaves other replicas appended since the tree was last synced.
func (l *Log) Sync(ctx context.Context) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	n, err := l.store.Size(ctx)
	if err != nil {
		return fmt.Errorf("audit: store size: %w", err)
	}
	return l.loadUpTo(ctx, n)
}

// loadUpTo appends stored leaf hashes [tree size, n) to the tree. Callers
// hold syncMu.
func (l *Log) loadUpTo(ctx context.Context, n uint64) error {
	const page = 50000
	for cur := l.tree.Size(); cur < n; cur = l.tree.Size() {
		end := min(cur+page, n)
		hs, err := l.store.LeafHashes(ctx, cur, end)
		if err != nil {
			return fmt.Errorf("audit: load leaves: %w", err)
		}
		if uint64(len(hs)) != end-cur {
			return fmt.Errorf("audit: store returned %d leaf hashes for [%d, %d)", len(hs), cur, end)
		}
		l.tree.Append(hs...)
	}
	return nil
}

// Append durably records an entry and returns its index. Concurrent calls
// are committed together.
func (l *Log) Append(ctx context.Context, e Entry) (uint64, error) {
	b, err := e.Canonical()
	if err != nil {
		return 0, err
	}
	r := appendReq{data: b, hash: LeafHash(b), resp: make(chan appendResp, 1)}
	select {
	case l.reqs <- r:
	case <-l.done:
		return 0, errors.New("audit: log closed")
	}
	// The entry is committed or failed by the committer; waiting does not
	// depend on ctx so a cancelled client cannot leave a half-known state.
	resp := <-r.resp
	return resp.index, resp.err
}

func (l *Log) commitLoop() {
	for {
		var batch []appendReq
		select {
		case r := <-l.reqs:
			batch = append(batch, r)
		case <-l.done:
			// Appends queued before Close fail rather than wait forever.
			for {
				select {
				case r := <-l.reqs:
					r.resp <- appendResp{err: errors.New("audit: log closed")}
				default:
					return
				}
			}
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		l.commit(batch)
	}
}

func (l *Log) commit(batch []appendReq) {
	data := make([][]byte, len(batch))
	hashes := make([][32]byte, len(batch))
	for i, r := range batch {
		data[i], hashes[i] = r.data, r.hash
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	first, err := l.store.AppendLeaves(ctx, data, hashes)
	if err == nil {
		l.syncMu.Lock()
		// Another replica may have appended before us: load the gap first.
		err = l.loadUpTo(ctx, first)
		if err == nil && l.tree.Size() == first {
			l.tree.Append(hashes...)
		}
		l.syncMu.Unlock()
	}
	if f := l.observe.Load(); f != nil {
		(*f)(len(batch), time.Since(start))
	}
	for i, r := range batch {
		r.resp <- appendResp{index: first + uint64(i), err: err}
	}
}

// Close stops the committer; appends still queued fail.
func (l *Log) Close() {
	l.closed.Do(func() { close(l.done) })
}

// Checkpoint signs the current tree head, stores and returns it.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	if err := l.Sync(ctx); err != nil {
		return nil, err
	}
	size := l.tree.Size()
	root, err := l.tree.Root(size)
	if err != nil {
		return nil, err
	}
	body := FormatCheckpoint(l.origin, size, root)
	signed, err := note.Sign(&note.Note{Text: body}, l.signer)
	if err != nil {
		return nil, err
	}
	if err := l.store.PutCheckpoint(ctx, size, signed); err != nil {
		return nil, err
	}
	return signed, nil
}

// CheckpointAt signs the tree head of an earlier size (ed25519 is
// deterministic: the same note as when it was first signed).
func (l *Log) CheckpointAt(size uint64) ([]byte, error) {
	root, err := l.tree.Root(size)
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: FormatCheckpoint(l.origin, size, root)}, l.signer)
}

// RunCheckpointer signs a checkpoint every interval while the tree grows,
// until ctx ends.
func (l *Log) RunCheckpointer(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := l.tree.Size(); n != last {
				if _, err := l.Checkpoint(ctx); err == nil {
					last = n
				}
			}
		}
	}
}

// FormatCheckpoint is the tlog-checkpoint body.
func FormatCheckpoint(origin string, size uint64, root Hash) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]))
}

// Checkpoint is a parsed, signature-verified tree head.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   Hash
	Signed []byte
}

// ParseCheckpoint verifies a signed checkpoint with the node's verifier key.
func ParseCheckpoint(signed []byte, verifierKey string) (*Checkpoint, error) {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w", err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint signature: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		return nil, errors.New("audit: malformed checkpoint")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return nil, errors.New("audit: malformed checkpoint size")
	}
	rb, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rb) != 32 {
		return nil, errors.New("audit: malformed checkpoint root")
	}
	return &Checkpoint{Origin: lines[0], Size: size, Root: Hash(rb), Signed: signed}, nil
}

// LoadOrCreateKey reads the node's note signer key from dir/node.key,
// creating one named name on first use, and returns it with its verifier key.
func LoadOrCreateKey(dir, name string) (signer, verifier string, err error) {
	path := filepath.Join(dir, "node.key")
	b, err := keys.LoadOrCreate(path, func() ([]byte, error) {
		skey, vkey, err := note.GenerateKey(rand.Reader, name)
		return []byte(skey + "\n" + vkey + "\n"), err
	}, func(b []byte) error {
		parts := strings.Fields(string(b))
		if len(parts) != 2 {
			return errors.New("want a signer key and a verifier key")
		}
		if _, err := note.NewSigner(parts[0]); err != nil {
			return err
		}
		_, err := note.NewVerifier(parts[1])
		return err
	})
	if err != nil {
		return "", "", err
	}
	parts := strings.Fields(string(b))
	if err := keys.WriteFile(filepath.Join(dir, "node.pub"), []byte(parts[1]+"\n"), 0o644); err != nil {
		return "", "", err
	}
	return parts[0], parts[1], nil
}
