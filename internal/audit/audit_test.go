package audit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/store/sqlite"
	"github.com/airlock-dev/airlock/internal/store/sqlstore"
)

// naiveRoot is RFC 6962's MTH written straight from the definition.
func naiveRoot(leaves [][]byte) audit.Hash {
	switch len(leaves) {
	case 0:
		return audit.Hash(rfc6962.DefaultHasher.EmptyRoot())
	case 1:
		return audit.Hash(rfc6962.DefaultHasher.HashLeaf(leaves[0]))
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := naiveRoot(leaves[:k]), naiveRoot(leaves[k:])
	return audit.Hash(rfc6962.DefaultHasher.HashChildren(l[:], r[:]))
}

func bytesPath(p []audit.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

func TestProofsVerifyIndependently(t *testing.T) {
	const max = 100000
	leaves := make([][]byte, max)
	var tree audit.Tree
	for i := range leaves {
		leaves[i] = []byte(fmt.Sprintf("entry-%d", i))
		tree.Append(audit.LeafHash(leaves[i]))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []uint64{1, 2, 3, 4, 5, 7, 8, 9, 1023, 1024, 1025, 65536, 65537, max}
	for i := 0; i < 40; i++ {
		sizes = append(sizes, 1+rng.Uint64N(max))
	}
	for _, size := range sizes {
		root, err := tree.Root(size)
		if err != nil {
			t.Fatal(err)
		}
		if size <= 5000 || size == max {
			if want := naiveRoot(leaves[:size]); root != want {
				t.Fatalf("size %d: root differs from the definition", size)
			}
		}
		for _, idx := range []uint64{0, size - 1, rng.Uint64N(size)} {
			p, err := tree.InclusionProof(idx, size)
			if err != nil {
				t.Fatal(err)
			}
			lh := audit.LeafHash(leaves[idx])
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, size, lh[:], bytesPath(p), root[:]); err != nil {
				t.Fatalf("inclusion %d/%d: %v", idx, size, err)
			}
		}
		for _, from := range []uint64{1, size / 2, rng.Uint64N(size) + 1, size} {
			fromRoot, _ := tree.Root(from)
			p, err := tree.ConsistencyProof(from, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, from, size, bytesPath(p), fromRoot[:], root[:]); err != nil {
				t.Fatalf("consistency %d->%d: %v", from, size, err)
			}
		}
	}
}

func openLog(t *testing.T) (*audit.Log, *sqlstore.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := audit.LoadOrCreateKey(dir, "test-node")
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(context.Background(), st, skey, "airlock/test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); st.Close() })
	return l, st, vkey
}

func entry(i int) audit.Entry {
	return audit.Entry{Time: time.Unix(1700000000+int64(i), 0), Principal: "p", Decision: "allow", SQL: fmt.Sprintf("SELECT %d", i), Extra: map[string]string{"b": "2", "a": "1"}}
}

func TestCanonicalRoundTrip(t *testing.T) {
	b, err := entry(1).Canonical()
	if err != nil {
		t.Fatal(err)
	}
	e, err := audit.ParseEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := e.Canonical()
	if string(b) != string(b2) {
		t.Fatalf("not stable:\n%s\n%s", b, b2)
	}
}

func TestGroupCommitDenseIndices(t *testing.T) {
	l, st, _ := openLog(t)
	const n = 500
	seen := make([]bool, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			idx, err := l.Append(context.Background(), entry(i))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if idx >= n || seen[idx] {
				t.Errorf("index %d duplicated or out of range", idx)
				return
			}
			seen[idx] = true
		}(i)
	}
	wg.Wait()
	leaves, err := st.Leaves(context.Background(), 0, n)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := l.Tree().Root(n)
	if root != naiveRoot(leaves) {
		t.Fatal("in-memory root differs from the stored leaves")
	}
}

func TestCheckpointSignature(t *testing.T) {
	l, _, vkey := openLog(t)
	l.Append(context.Background(), entry(1))
	signed, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.ParseCheckpoint(signed, vkey)
	if err != nil || cp.Size != 1 || cp.Origin != "airlock/test" {
		t.Fatalf("got %+v, %v", cp, err)
	}
	_, otherV, _ := note.GenerateKey(nil, "test-node")
	if _, err := audit.ParseCheckpoint(signed, otherV); err == nil {
		t.Fatal("checkpoint verified with another key")
	}
	forged := []byte(string(signed[:len("airlock/test\n")]) + "2" + string(signed[len("airlock/test\n")+1:]))
	if _, err := audit.ParseCheckpoint(forged, vkey); err == nil {
		t.Fatal("modified checkpoint body verified")
	}
}

// TestTamperDetected rewrites the stored log behind the server's back in
// each way an operator could, and checks that verification against the
// auditor's earlier trusted state names the first index that differs.
func TestTamperDetected(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		sql   []string
		index uint64
	}{
		{"one byte changed", []string{"UPDATE audit_leaves SET data = CAST(replace(CAST(data AS TEXT), 'SELECT 7', 'SELECT 8') AS BLOB) WHERE idx = 7"}, 7},
		{"entry deleted", []string{"DELETE FROM audit_leaves WHERE idx = 5", "UPDATE audit_leaves SET idx = idx - 1 WHERE idx > 5", "UPDATE audit_head SET size = size - 1"}, 5},
		{"two swapped", []string{"UPDATE audit_leaves SET idx = -1 WHERE idx = 3", "UPDATE audit_leaves SET idx = 3 WHERE idx = 4", "UPDATE audit_leaves SET idx = 4 WHERE idx = -1"}, 3},
		{"tail truncated", []string{"DELETE FROM audit_leaves WHERE idx >= 15", "UPDATE audit_head SET size = 15"}, 15},
		{"forked from 10", []string{"UPDATE audit_leaves SET data = CAST('{\"fork\":' || idx || '}' AS BLOB) WHERE idx >= 10"}, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, st, vkey := openLog(t)
			for i := 0; i < 20; i++ {
				if _, err := l.Append(ctx, entry(i)); err != nil {
					t.Fatal(err)
				}
			}
			signed, _ := l.Checkpoint(ctx)
			cp, _ := audit.ParseCheckpoint(signed, vkey)
			all, _ := st.Leaves(ctx, 0, 20)
			trusted, err := audit.VerifyHistory(all, cp, nil, nil)
			if err != nil {
				t.Fatalf("clean log does not verify: %v", err)
			}
			for _, q := range tc.sql {
				if _, err := st.DB().Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			// A dishonest operator re-signs whatever is stored now.
			size, _ := st.Size(ctx)
			leaves, _ := st.Leaves(ctx, 0, size)
			var tree audit.Tree
			for _, b := range leaves {
				tree.Append(audit.LeafHash(b))
			}
			root, _ := tree.Root(size)
			newCP := &audit.Checkpoint{Origin: cp.Origin, Size: size, Root: root}
			_, err = audit.VerifyHistory(leaves, newCP, trusted, nil)
			te, ok := err.(*audit.TamperError)
			if !ok || te.Index != tc.index {
				t.Fatalf("got %v, want tampering at index %d", err, tc.index)
			}
		})
	}
}

func BenchmarkInclusionProof1M(b *testing.B) {
	var tree audit.Tree
	for i := 0; i < 1_000_000; i++ {
		tree.Append(audit.LeafHash([]byte(fmt.Sprint(i))))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		size := 1 + rng.Uint64N(1_000_000)
		if _, err := tree.InclusionProof(rng.Uint64N(size), size); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConsistencyProof1M(b *testing.B) {
	var tree audit.Tree
	for i := 0; i < 1_000_000; i++ {
		tree.Append(audit.LeafHash([]byte(fmt.Sprint(i))))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		to := 1 + rng.Uint64N(1_000_000)
		if _, err := tree.ConsistencyProof(1+rng.Uint64N(to), to); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDurableAppend(b *testing.B) {
	dir := b.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	skey, _, _ := audit.LoadOrCreateKey(dir, "bench")
	l, _ := audit.Open(context.Background(), st, skey, "bench")
	defer l.Close()
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := l.Append(context.Background(), entry(i)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}
