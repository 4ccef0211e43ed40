// Package breaker is a circuit breaker for one dependency (the state
// store): after a failure it answers at once with ErrOpen instead of
// calling the dependency again, lets one probe through after a backoff that
// doubles with every failed probe, and closes again on the first success.
// So an outage costs each request microseconds and the dependency one
// connection attempt per backoff, not one per request, and recovery needs
// no restart.
package breaker

import (
	"errors"
	"sync"
	"time"
)

// ErrOpen is returned while the breaker is open.
var ErrOpen = errors.New("breaker: dependency unavailable")

// Breaker guards calls to one dependency. The zero value is not usable;
// use New.
type Breaker struct {
	min, max time.Duration
	now      func() time.Time

	mu      sync.Mutex
	open    bool
	probing bool
	backoff time.Duration
	retryAt time.Time
	trips   uint64
}

// New returns a closed breaker whose backoff starts at min and doubles up
// to max; now is the clock (nil for time.Now).
func New(min, max time.Duration, now func() time.Time) *Breaker {
	if now == nil {
		now = time.Now
	}
	return &Breaker{min: min, max: max, now: now}
}

// Do calls fn unless the breaker is open. failed says which of fn's errors
// mean the dependency is down (others, such as "not found", are answers).
func (b *Breaker) Do(fn func() error, failed func(error) bool) error {
	b.mu.Lock()
	if b.open {
		if b.probing || b.now().Before(b.retryAt) {
			b.mu.Unlock()
			return ErrOpen
		}
		b.probing = true // this call is the probe
	}
	b.mu.Unlock()
	err := fn()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if err != nil && failed(err) {
		if !b.open {
			b.open, b.backoff = true, b.min
			b.trips++
		} else {
			b.backoff = min(2*b.backoff, b.max)
		}
		b.retryAt = b.now().Add(b.backoff)
		return err
	}
	b.open = false
	return err
}

// State reports whether the breaker is open and how often it has tripped.
func (b *Breaker) State() (open bool, trips uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open, b.trips
}
