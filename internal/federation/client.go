package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// maxAnswer bounds a peer's response body: a member's answer is already
// bounded by its own max_result_rows, this bounds a misbehaving one.
const maxAnswer = 64 << 20

// Client calls peers: one pinned mutual-TLS transport per peer key.
type Client struct {
	Key *NodeKey
	Now func() time.Time
	// Window is how long a signed request stays valid.
	Window time.Duration

	mu         sync.Mutex
	transports map[string]*http.Transport // by peer key
}

func (c *Client) transport(p *workspace.Peer) (*http.Transport, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.transports[p.Key]; t != nil {
		return t, nil
	}
	_, pub, err := ParseVerifier(p.Key)
	if err != nil {
		return nil, err
	}
	cfg, err := c.Key.ClientTLS(c.Now(), pub)
	if err != nil {
		return nil, err
	}
	t := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 0}
	if c.transports == nil {
		c.transports = map[string]*http.Transport{}
	}
	c.transports[p.Key] = t
	return t, nil
}

// Close drops idle connections.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.transports {
		t.CloseIdleConnections()
	}
}

// PeerError is why a peer did not answer: unreachable, too slow, a
// refusal of its own, or an answer that does not check out.
type PeerError struct {
	Peer string
	// Rule is federation.member_unreachable, federation.member_timeout,
	// federation.member_invalid, or the member's own rule when it refused.
	Rule    string
	Message string
	// Refused is the member's own refusal, when it refused.
	Refused *refusal.Error
}

func (e *PeerError) Error() string { return fmt.Sprintf("member %s: %s", e.Peer, e.Message) }

// Post sends a signed request to a peer and decodes its JSON answer
// into out. It returns the envelope as signed (its hash is what a
// receipt must name).
func (c *Client) Post(ctx context.Context, p *workspace.Peer, path string, env Envelope, out any) (Envelope, []byte, error) {
	now := c.Now()
	env.From, env.To = c.Key.Name, p.Name
	env.Nonce, env.IssuedAt, env.NotAfter = NewNonce(), now.UTC(), now.Add(c.Window).UTC()
	req, err := c.Key.Seal(env)
	if err != nil {
		return env, nil, err
	}
	body, _ := json.Marshal(req)
	return env, req.Envelope, c.do(ctx, p, http.MethodPost, path, body, out)
}

// Get fetches a peer's public resource (its checkpoint, a consistency
// proof, what it witnessed) over the pinned channel.
func (c *Client) Get(ctx context.Context, p *workspace.Peer, path string, out any) error {
	return c.do(ctx, p, http.MethodGet, path, nil, out)
}

func (c *Client) do(ctx context.Context, p *workspace.Peer, method, path string, body []byte, out any) error {
	t, err := c.transport(p)
	if err != nil {
		return &PeerError{Peer: p.Name, Rule: "federation.member_invalid", Message: "its pinned key is malformed"}
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(p.URL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return &PeerError{Peer: p.Name, Rule: "federation.member_invalid", Message: "its url is malformed"}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &PeerError{Peer: p.Name, Rule: "federation.member_timeout", Message: "did not answer before the deadline"}
		}
		if strings.Contains(err.Error(), "pinned node key") {
			return &PeerError{Peer: p.Name, Rule: "federation.member_key", Message: "its TLS certificate does not carry its pinned node key"}
		}
		return &PeerError{Peer: p.Name, Rule: "federation.member_unreachable", Message: "is unreachable"}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &PeerError{Peer: p.Name, Rule: "federation.member_timeout", Message: "did not answer before the deadline"}
		}
		return &PeerError{Peer: p.Name, Rule: "federation.member_unreachable", Message: "closed the connection mid-answer"}
	}
	if len(b) > maxAnswer {
		return &PeerError{Peer: p.Name, Rule: "federation.member_invalid", Message: fmt.Sprintf("answered more than %d bytes", maxAnswer)}
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code, Rule, Message, RequestID string `json:",omitempty"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error.Rule == "" {
			return &PeerError{Peer: p.Name, Rule: "federation.member_invalid", Message: fmt.Sprintf("answered HTTP %d without a refusal", resp.StatusCode)}
		}
		r := refusal.New(refusal.Code(e.Error.Code), e.Error.Rule, "%s", e.Error.Message)
		return &PeerError{Peer: p.Name, Rule: e.Error.Rule, Message: fmt.Sprintf("refused (rule %s): %s", e.Error.Rule, e.Error.Message), Refused: r}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &PeerError{Peer: p.Name, Rule: "federation.member_invalid", Message: "answered something that does not decode"}
	}
	return nil
}
