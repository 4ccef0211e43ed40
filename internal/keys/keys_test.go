package keys

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func secret() ([]byte, error) {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	return b, err
}

func len32(b []byte) error {
	if len(b) != 32 {
		return fmt.Errorf("%d bytes, want 32", len(b))
	}
	return nil
}

func TestCreatedOnceAndReloaded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "mask.key")
	a, err := LoadOrCreate(path, secret, len32)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(path, secret, len32)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("second load: %v, same key %v", err, bytes.Equal(a, b))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	if len(left) > 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

func TestMalformedFileIsAnErrorNotReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mask.key")
	os.WriteFile(path, []byte("short"), 0o600)
	if _, err := LoadOrCreate(path, secret, len32); !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "short" {
		t.Fatalf("the malformed file was replaced with %q", b)
	}
}

// Replicas starting together on a fresh workspace end with one key.
func TestConcurrentCreatorsAgree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	const n = 16
	got := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := LoadOrCreate(path, secret, len32)
			if err != nil {
				t.Error(err)
			}
			got[i] = b
		}()
	}
	wg.Wait()
	for i := range got {
		if !bytes.Equal(got[i], got[0]) {
			t.Fatalf("creator %d got a different key than creator 0", i)
		}
	}
}
