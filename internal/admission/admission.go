// Package admission decides whether a node takes on a request now: at most
// MaxConcurrent requests run at once on the node and MaxPerPrincipal for
// one principal, a request may wait QueueWait for a place, and each
// principal gets Rate requests a second (bursts up to Burst). Overload is
// answered at once, 503 for the node and 429 for a principal, instead of
// queuing without end: at 200 clients an unbounded node had a p99 of
// seconds and no refusal at all.
package admission

import (
	"context"
	"sync"
	"time"
)

// Config sizes a Controller. Zero fields take defaults.
type Config struct {
	MaxConcurrent   int           // default 16
	MaxPerPrincipal int           // default MaxConcurrent/2, at least 1
	QueueWait       time.Duration // default 250ms
	Rate            float64       // requests per second per principal; default 200
	Burst           int           // default 2×Rate
	Now             func() time.Time
}

// CheckAndSetDefaults fills unset fields.
func (c *Config) CheckAndSetDefaults() {
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 16
	}
	if c.MaxPerPrincipal <= 0 {
		c.MaxPerPrincipal = max(1, c.MaxConcurrent/2)
	}
	if c.QueueWait <= 0 {
		c.QueueWait = 250 * time.Millisecond
	}
	if c.Rate <= 0 {
		c.Rate = 200
	}
	if c.Burst <= 0 {
		c.Burst = int(2 * c.Rate)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Verdict is why a request was not admitted.
type Verdict int

// The verdicts.
const (
	Admitted      Verdict = iota
	NodeBusy              // every place on the node stayed taken for QueueWait
	PrincipalBusy         // the principal's places stayed taken
	PrincipalRate         // the principal is over its rate
)

// Controller admits requests.
type Controller struct {
	cfg  Config
	node chan struct{}

	mu         sync.Mutex
	principals map[string]*principal
	refused    [4]uint64
}

type principal struct {
	slots  chan struct{}
	tokens float64
	last   time.Time
}

// New returns a controller.
func New(cfg Config) *Controller {
	cfg.CheckAndSetDefaults()
	return &Controller{cfg: cfg, node: make(chan struct{}, cfg.MaxConcurrent), principals: map[string]*principal{}}
}

// Admit takes a place for who, or says why not. The caller must call
// release once the request is done, if admitted.
func (c *Controller) Admit(ctx context.Context, who string) (release func(), v Verdict) {
	p := c.principal(who)
	if !c.takeToken(p) {
		return c.refuse(PrincipalRate)
	}
	wait, cancel := context.WithTimeout(ctx, c.cfg.QueueWait)
	defer cancel()
	select {
	case p.slots <- struct{}{}:
	case <-wait.Done():
		return c.refuse(PrincipalBusy)
	}
	select {
	case c.node <- struct{}{}:
	case <-wait.Done():
		<-p.slots
		return c.refuse(NodeBusy)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-c.node
			<-p.slots
		})
	}, Admitted
}

// Refused reports how many requests were refused, by verdict.
func (c *Controller) Refused() map[Verdict]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return map[Verdict]uint64{NodeBusy: c.refused[NodeBusy], PrincipalBusy: c.refused[PrincipalBusy], PrincipalRate: c.refused[PrincipalRate]}
}

func (c *Controller) refuse(v Verdict) (func(), Verdict) {
	c.mu.Lock()
	c.refused[v]++
	c.mu.Unlock()
	return func() {}, v
}

func (c *Controller) principal(who string) *principal {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.principals[who]
	if p == nil {
		p = &principal{slots: make(chan struct{}, c.cfg.MaxPerPrincipal), tokens: float64(c.cfg.Burst), last: c.cfg.Now()}
		c.principals[who] = p
	}
	return p
}

// takeToken spends one of the principal's rate tokens, refilled at Rate.
func (c *Controller) takeToken(p *principal) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	p.tokens = min(float64(c.cfg.Burst), p.tokens+now.Sub(p.last).Seconds()*c.cfg.Rate)
	p.last = now
	if p.tokens < 1 {
		return false
	}
	p.tokens--
	return true
}
