package audit

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
	"sync"
)

// Hash is a SHA-256 digest.
type Hash = [32]byte

// LeafHash is RFC 6962's leaf hash: SHA-256(0x00 || data).
func LeafHash(data []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	return Hash(h.Sum(nil))
}

// NodeHash is RFC 6962's interior hash: SHA-256(0x01 || l || r).
func NodeHash(l, r Hash) Hash {
	var buf [65]byte
	buf[0] = 1
	copy(buf[1:], l[:])
	copy(buf[33:], r[:])
	return sha256.Sum256(buf[:])
}

// emptyRoot is the hash of the empty tree, SHA-256("").
var emptyRoot = Hash(sha256.Sum256(nil))

// Tree is an in-memory RFC 6962 Merkle tree over leaf hashes. It keeps
// every complete subtree (level k holds the hashes of aligned runs of 2^k
// leaves), so roots and proofs for any size cost O(log n) hashes. Safe for
// concurrent readers and one writer.
type Tree struct {
	mu     sync.RWMutex
	levels [][]Hash
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.size()
}

func (t *Tree) size() uint64 {
	if len(t.levels) == 0 {
		return 0
	}
	return uint64(len(t.levels[0]))
}

// Append adds leaf hashes.
func (t *Tree) Append(leaves ...Hash) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range leaves {
		if len(t.levels) == 0 {
			t.levels = append(t.levels, nil)
		}
		t.levels[0] = append(t.levels[0], l)
		// Carry: every time a level gets an even count, its parent gains a node.
		for k := 0; len(t.levels[k])%2 == 0; k++ {
			n := len(t.levels[k])
			p := NodeHash(t.levels[k][n-2], t.levels[k][n-1])
			if k+1 == len(t.levels) {
				t.levels = append(t.levels, nil)
			}
			t.levels[k+1] = append(t.levels[k+1], p)
		}
	}
}

// LeafAt returns the hash of leaf i.
func (t *Tree) LeafAt(i uint64) Hash {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.levels[0][i]
}

// rangeHash is MTH(D[lo:hi]); every range the RFC's recursion asks for has
// its left part aligned to a power of two, so it is cached or split.
func (t *Tree) rangeHash(lo, hi uint64) Hash {
	n := hi - lo
	if n == 0 {
		return emptyRoot
	}
	if n&(n-1) == 0 {
		k := bits.TrailingZeros64(n)
		if lo%n == 0 && k < len(t.levels) && lo/n < uint64(len(t.levels[k])) {
			return t.levels[k][lo/n]
		}
	}
	split := largestPow2Below(n)
	return NodeHash(t.rangeHash(lo, lo+split), t.rangeHash(lo+split, hi))
}

// largestPow2Below is the largest power of two strictly less than n (n >= 2).
func largestPow2Below(n uint64) uint64 {
	return 1 << (bits.Len64(n-1) - 1)
}

// ErrRange reports a proof or root request outside the tree.
var ErrRange = errors.New("audit: index or size out of range")

// Root is the tree head for the first size leaves.
func (t *Tree) Root(size uint64) (Hash, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if size > t.size() {
		return Hash{}, fmt.Errorf("%w: size %d > %d", ErrRange, size, t.size())
	}
	return t.rangeHash(0, size), nil
}

// InclusionProof is RFC 6962 PATH(index, D[0:size]).
func (t *Tree) InclusionProof(index, size uint64) ([]Hash, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if size > t.size() || index >= size {
		return nil, fmt.Errorf("%w: index %d, size %d, tree %d", ErrRange, index, size, t.size())
	}
	var path []Hash
	var rec func(m, lo, hi uint64)
	rec = func(m, lo, hi uint64) {
		n := hi - lo
		if n <= 1 {
			return
		}
		k := largestPow2Below(n)
		if m < k {
			rec(m, lo, lo+k)
			path = append(path, t.rangeHash(lo+k, hi))
		} else {
			rec(m-k, lo+k, hi)
			path = append(path, t.rangeHash(lo, lo+k))
		}
	}
	rec(index, 0, size)
	return path, nil
}

// ConsistencyProof is RFC 6962 PROOF(from, D[0:to]).
func (t *Tree) ConsistencyProof(from, to uint64) ([]Hash, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if to > t.size() || from > to {
		return nil, fmt.Errorf("%w: from %d, to %d, tree %d", ErrRange, from, to, t.size())
	}
	if from == 0 || from == to {
		return nil, nil
	}
	var proof []Hash
	var sub func(m, lo, hi uint64, complete bool)
	sub = func(m, lo, hi uint64, complete bool) {
		n := hi - lo
		if m == n {
			if !complete {
				proof = append(proof, t.rangeHash(lo, hi))
			}
			return
		}
		k := largestPow2Below(n)
		if m <= k {
			sub(m, lo, lo+k, complete)
			proof = append(proof, t.rangeHash(lo+k, hi))
		} else {
			sub(m-k, lo+k, hi, false)
			proof = append(proof, t.rangeHash(lo, lo+k))
		}
	}
	sub(from, 0, to, true)
	return proof, nil
}
