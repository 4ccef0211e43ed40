package breaker

import (
	"errors"
	"testing"
	"time"
)

var errDown = errors.New("down")

func TestOpensBacksOffAndCloses(t *testing.T) {
	now := time.Unix(0, 0)
	b := New(100*time.Millisecond, 400*time.Millisecond, func() time.Time { return now })
	calls := 0
	down := true
	call := func() error {
		return b.Do(func() error {
			calls++
			if down {
				return errDown
			}
			return nil
		}, func(err error) bool { return errors.Is(err, errDown) })
	}
	if err := call(); !errors.Is(err, errDown) || calls != 1 {
		t.Fatalf("first failure: %v, %d calls", err, calls)
	}
	// Open: a thousand requests cost the dependency nothing.
	for range 1000 {
		if err := call(); !errors.Is(err, ErrOpen) {
			t.Fatalf("while open: %v", err)
		}
	}
	if calls != 1 {
		t.Fatalf("%d calls while open, want 1", calls)
	}
	// Probes after 100, 200, 400, 400 ms.
	for i, wait := range []time.Duration{100, 200, 400, 400} {
		now = now.Add(wait*time.Millisecond - time.Millisecond)
		if err := call(); !errors.Is(err, ErrOpen) {
			t.Fatalf("probe %d came early: %v", i, err)
		}
		now = now.Add(time.Millisecond)
		if err := call(); !errors.Is(err, errDown) {
			t.Fatalf("probe %d: %v", i, err)
		}
	}
	if calls != 5 {
		t.Fatalf("%d calls, want 5 (one failure, four probes)", calls)
	}
	// Recovery without a restart.
	down = false
	now = now.Add(400 * time.Millisecond)
	if err := call(); err != nil {
		t.Fatalf("recovery probe: %v", err)
	}
	if err := call(); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if open, trips := b.State(); open || trips != 1 {
		t.Fatalf("state open=%v trips=%d", open, trips)
	}
}

func TestAnswersAreNotFailures(t *testing.T) {
	b := New(time.Second, time.Second, nil)
	notFound := errors.New("not found")
	for range 3 {
		if err := b.Do(func() error { return notFound }, func(err error) bool { return errors.Is(err, errDown) }); err != notFound {
			t.Fatal(err)
		}
	}
	if open, _ := b.State(); open {
		t.Fatal("a not-found answer opened the breaker")
	}
}
