// Package keys keeps a node's secret key files: created exactly once,
// atomically, and never silently replaced.
//
// A key file is written to a temporary file in the same directory, synced,
// and then hard-linked to its name. The link is atomic and fails if the
// name exists, so two processes starting together on a fresh workspace
// agree on one key (the loser reads the winner's), a crash never leaves a
// half-written key, and a key file that exists but does not parse is an
// error: replacing it would change every pseudonym and signature.
package keys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrMalformed reports a key file that exists but is not a valid key.
var ErrMalformed = errors.New("keys: malformed key file")

// LoadOrCreate returns the contents of the key file at path, creating it
// with generate's output if it does not exist. valid checks a file's
// contents; a file that fails it is an error wrapping ErrMalformed.
func LoadOrCreate(path string, generate func() ([]byte, error), valid func([]byte) error) ([]byte, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return checked(path, b, valid)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("keys: %w", err)
	}
	b, err = generate()
	if err != nil {
		return nil, fmt.Errorf("keys: generating %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	tmp, err := writeTemp(path, b, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			// Another process created it first: use its key.
			won, rerr := os.ReadFile(path)
			if rerr != nil {
				return nil, fmt.Errorf("keys: %w", rerr)
			}
			return checked(path, won, valid)
		}
		return nil, fmt.Errorf("keys: %w", err)
	}
	return b, syncDir(filepath.Dir(path))
}

// WriteFile replaces the file at path atomically (temporary file, sync,
// rename); for files derived from a key, such as a public key.
func WriteFile(path string, b []byte, mode os.FileMode) error {
	tmp, err := writeTemp(path, b, mode)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keys: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func checked(path string, b []byte, valid func([]byte) error) ([]byte, error) {
	if err := valid(b); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (restore it from a backup; deleting it changes every key-derived value)", ErrMalformed, path, err)
	}
	return b, nil
}

func writeTemp(path string, b []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("keys: %w", err)
	}
	name := f.Name()
	if err := f.Chmod(mode); err == nil {
		if _, err = f.Write(b); err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			return name, nil
		}
	}
	f.Close()
	os.Remove(name)
	return "", fmt.Errorf("keys: writing %s: %w", path, err)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	return nil
}
