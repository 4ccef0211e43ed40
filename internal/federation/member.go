package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/httpapi"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/sqlop"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Skew is the clock difference tolerated between nodes.
const Skew = 30 * time.Second

// maxRequest bounds a signed request's body.
const maxRequest = 1 << 20

// Member is the peer endpoint: it answers peers' signed requests through
// the node's own kernel, so a peer's principal is decided, charged,
// audited and released exactly like a local one, under this node's
// rules only.
type Member struct {
	Kernel *govern.Kernel
	SQL    *sqlop.Service
	Audit  *audit.Log
	Store  store.Store
	Key    *NodeKey
	Log    *slog.Logger
	// Witness answers what this node has cosigned (nil: nothing).
	Witness *Witness
	// Routes are further signed operations (the clean rooms' protocol):
	// each gets a request opened and checked like a query.
	Routes map[string]Route
	// Public are further unsigned reads over the pinned channel.
	Public map[string]PublicRoute
}

// Route serves one signed peer operation. Refusals it decides itself go
// through PeerRequest.Refuse (audited once, as Kind); errors from the
// kernel are already audited.
type Route struct {
	Kind  share.OpKind
	Serve func(ctx context.Context, r *PeerRequest) (any, error)
}

// PublicRoute serves an unsigned read to a known peer.
type PublicRoute func(ctx context.Context, r *http.Request, p *workspace.Peer) (any, error)

// PeerRequest is an opened, checked signed request.
type PeerRequest struct {
	Envelope Envelope
	Caller   share.Caller
	Peer     *workspace.Peer
	// Refuse audits a refusal of this request and returns it.
	Refuse func(*refusal.Error) error
}

// MaxRouteRequest bounds a signed request to a Route (protocol messages
// carry many points).
const MaxRouteRequest = 64 << 20

// Handler serves the peer API (behind a TLS listener from ServerTLS).
func (m *Member) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /peer/v1/query", m.authenticated(m.query))
	mux.HandleFunc("GET /peer/v1/checkpoint", m.authenticated(m.checkpoint))
	mux.HandleFunc("GET /peer/v1/consistency", m.authenticated(m.consistency))
	mux.HandleFunc("POST /peer/v1/cosignature", m.authenticated(m.cosignature))
	mux.HandleFunc("GET /peer/v1/witnessed", m.authenticated(m.witnessed))
	for pattern, route := range m.Routes {
		mux.HandleFunc("POST "+pattern, m.authenticated(func(w http.ResponseWriter, r *http.Request, p *workspace.Peer) error {
			e, _, c, err := m.openLimited(w, r, p, MaxRouteRequest)
			if err != nil {
				return err
			}
			out, err := route.Serve(r.Context(), &PeerRequest{Envelope: e, Caller: c, Peer: p, Refuse: func(why *refusal.Error) error {
				return m.Kernel.Refuse(r.Context(), govern.Request{Caller: c, Purpose: e.Purpose, Op: govern.Edge(route.Kind)}, why)
			}})
			if err != nil {
				return err
			}
			httpapi.WriteJSON(w, http.StatusOK, out)
			return nil
		}))
	}
	for pattern, route := range m.Public {
		mux.HandleFunc("GET "+pattern, m.authenticated(func(w http.ResponseWriter, r *http.Request, p *workspace.Peer) error {
			out, err := route(r.Context(), r, p)
			if err != nil {
				return err
			}
			httpapi.WriteJSON(w, http.StatusOK, out)
			return nil
		}))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, refusal.New(refusal.NotFound, "peer.route", "no such peer endpoint"))
	})
	return mux
}

type peerHandler func(w http.ResponseWriter, r *http.Request, p *workspace.Peer) error

// authenticated finds the peer whose pinned key the TLS client
// certificate carries; an unknown key is refused and audited.
func (m *Member) authenticated(h peerHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := m.peerOf(r)
		if err == nil {
			err = h(w, r, p)
		}
		if err != nil {
			httpapi.WriteError(w, refusal.As(err))
		}
	}
}

func (m *Member) peerOf(r *http.Request) (*workspace.Peer, error) {
	var pub ed25519.PublicKey
	var err error
	if r.TLS == nil {
		err = errors.New("no TLS")
	} else {
		pub, err = certKey(r.TLS.PeerCertificates)
	}
	if err == nil {
		for _, p := range m.Kernel.Snapshot().WS.Peers {
			if _, k, kerr := ParseVerifier(p.Key); kerr == nil && k.Equal(pub) {
				return p, nil
			}
		}
	}
	return nil, m.refuse(r.Context(), peerCaller(r, nil), Envelope{},
		refusal.New(refusal.Unauthenticated, "peer.unknown", "the client certificate's key is not a known peer's node key"))
}

// peerCaller is who a peer's request comes from before its envelope is
// open: the peer node itself (nil: a key no peer has).
func peerCaller(r *http.Request, p *workspace.Peer) share.Caller {
	c := share.Caller{Channel: "peer", ClientAddr: r.RemoteAddr}
	if p != nil {
		c.Peer, c.Identity = p.Name, share.Identity{Principal: "peer:" + p.Name, Method: "peer"}
	}
	return c
}

// refuse audits a refusal of a peer's request before its operation.
func (m *Member) refuse(ctx context.Context, c share.Caller, e Envelope, why *refusal.Error) error {
	return m.Kernel.Refuse(ctx, govern.Request{Caller: c, Purpose: e.Purpose, Agreement: e.Agreement, Op: govern.Edge(share.OpPeer)}, why)
}

// open checks everything about a signed request before its operation:
// the signature with the sending peer's key, sender and recipient, the
// window, the nonce, and that the peer may act for the principal's org.
func (m *Member) open(w http.ResponseWriter, r *http.Request, p *workspace.Peer) (Envelope, []byte, share.Caller, error) {
	return m.openLimited(w, r, p, maxRequest)
}

func (m *Member) openLimited(w http.ResponseWriter, r *http.Request, p *workspace.Peer, limit int64) (Envelope, []byte, share.Caller, error) {
	c := peerCaller(r, p)
	var sr SignedRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sr); err != nil {
		return Envelope{}, nil, c, m.refuse(r.Context(), c, Envelope{}, refusal.New(refusal.BadSQL, "peer.body", "the body must be a signed request {envelope, signature}"))
	}
	_, pub, _ := ParseVerifier(p.Key)
	e, err := Open(sr, pub)
	if err != nil {
		return e, nil, c, m.refuse(r.Context(), c, Envelope{}, refusal.New(refusal.Unauthenticated, "peer.signature", "%s", err.Error()))
	}
	c.PeerRequest = e.RequestID
	// The peer vouches for its principal, region included; the peer's
	// own region comes from the peers file.
	region := e.Principal.Region
	c.PeerRegion = p.Region
	c.Identity = share.Identity{Principal: e.Principal.Name, Org: e.Principal.Org, Roles: e.Principal.Roles, Country: e.Principal.Country,
		Clearance: e.Principal.Clearance, Attributes: e.Principal.Attributes, Region: region, Method: "peer"}
	ws := m.Kernel.Snapshot().WS
	self, window := ws.Config.Node.Name, ws.Config.Federation.Window
	now := m.Kernel.Now()
	var why *refusal.Error
	switch {
	case e.From != p.Name:
		why = refusal.New(refusal.Unauthenticated, "peer.impersonation", "peer %s signed a request as %q", p.Name, e.From)
	case e.To != self:
		why = refusal.New(refusal.Forbidden, "peer.recipient", "the request is addressed to node %q, not %s", e.To, self)
	case e.NotAfter.Sub(e.IssuedAt) > window+Skew || !e.NotAfter.After(e.IssuedAt):
		why = refusal.New(refusal.Unauthenticated, "peer.window", "the request's validity window exceeds %s", window)
	case now.Before(e.IssuedAt.Add(-Skew)):
		why = refusal.New(refusal.Unauthenticated, "peer.window", "the request is issued in the future (check the peer's clock)")
	case now.After(e.NotAfter.Add(Skew)):
		why = refusal.New(refusal.Unauthenticated, "peer.expired", "the request expired at %s", e.NotAfter.UTC().Format(time.RFC3339))
	case len(e.Nonce) < 16:
		why = refusal.New(refusal.Unauthenticated, "peer.nonce", "the request has no nonce")
	case e.Principal.Name == "" || e.Principal.Org == "" || e.Principal.Region == "":
		// A principal without a region would be judged where the peer is,
		// not where the answer goes: residency fails closed instead.
		why = refusal.New(refusal.Unauthenticated, "peer.principal", "the request must name its principal, org and region")
	case !p.MayRepresent(e.Principal.Org):
		why = refusal.New(refusal.Forbidden, "peer.represent", "peer %s may not act for org %s", p.Name, e.Principal.Org)
	case ownsData(ws, e.Principal.Org):
		// Whatever the peers file says, no peer speaks for the orgs whose
		// data this node holds: their stewards read rows as stored.
		why = refusal.New(refusal.Forbidden, "peer.represent", "peer %s may not act for org %s, which owns data on this node", p.Name, e.Principal.Org)
	}
	if why == nil {
		fresh, err := m.Store.UseNonce(r.Context(), p.Name, e.Nonce, e.NotAfter.Add(Skew), now)
		switch {
		case err != nil:
			why = refusal.StoreUnavailable(err)
		case !fresh:
			why = refusal.New(refusal.Unauthenticated, "peer.replay", "the request's nonce was used before (a replay)")
		}
	}
	if why != nil {
		return e, nil, c, m.refuse(r.Context(), c, e, why)
	}
	return e, sr.Envelope, c, nil
}

func (m *Member) query(w http.ResponseWriter, r *http.Request, p *workspace.Peer) error {
	e, envelopeBytes, c, err := m.open(w, r, p)
	if err != nil {
		return err
	}
	if e.Op != string(share.OpQuery) {
		return m.refuse(r.Context(), c, e, refusal.New(refusal.BadSQL, "peer.op", "operation %q is not offered to peers", e.Op))
	}
	params, err := httpapi.JSONParams(e.Params)
	if err != nil {
		return m.refuse(r.Context(), c, e, refusal.As(err))
	}
	res, err := m.Kernel.Do(r.Context(), govern.Request{Caller: c, Purpose: e.Purpose, Agreement: e.Agreement, Op: m.SQL.Query(e.SQL, params)})
	if err != nil {
		return err // audited by the kernel
	}
	resp := httpapi.EncodeResponse(sqlop.Answer(res))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(struct {
		Columns   []string        `json:"columns"`
		Rows      [][]any         `json:"rows"`
		Access    string          `json:"access"`
		Agreement string          `json:"agreement,omitempty"`
		Notes     []string        `json:"notes,omitempty"`
		DP        *sqlop.DPReport `json:"dp,omitempty"`
	}{resp.Columns, resp.Rows, resp.Access, resp.Agreement, resp.Notes, resp.DP}); err != nil {
		return err
	}
	answer := bytes.TrimRight(buf.Bytes(), "\n")
	rec, err := m.receipt(r.Context(), res, e, envelopeBytes, answer)
	if err != nil {
		// The answer is recorded; without a receipt the coordinator
		// cannot show it was, so it is not sent.
		m.Log.Error("receipt", "err", err, "request_id", res.RequestID)
		return refusal.AuditUnavailable()
	}
	httpapi.WriteJSON(w, http.StatusOK, memberAnswer{Answer: answer, Receipt: *rec})
	return nil
}

// receipt signs a checkpoint covering the answer's audit entry and
// binds entry, checkpoint and answer under the node key.
func (m *Member) receipt(ctx context.Context, res *govern.Result, e Envelope, envelope, answer []byte) (*sqlop.Receipt, error) {
	signed, err := m.Audit.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	tree := m.Audit.Tree()
	cp, err := audit.ParseCheckpoint(signed, m.Key.Verifier)
	if err != nil {
		return nil, err
	}
	path, err := tree.InclusionProof(res.AuditIndex, cp.Size)
	if err != nil {
		return nil, err
	}
	leaf := tree.LeafAt(res.AuditIndex)
	h := sha256.Sum256(answer)
	eh := sha256.Sum256(envelope)
	rec := &sqlop.Receipt{Node: m.Key.Name, RequestID: res.RequestID, Nonce: e.Nonce, EnvelopeHash: eh[:], AuditIndex: res.AuditIndex, LeafHash: leaf[:],
		Checkpoint: string(signed), AnswerHash: h[:]}
	for _, p := range path {
		rec.Inclusion = append(rec.Inclusion, p[:])
	}
	rec.Signature = m.Key.sign(receiptLabel, receiptBytes(*rec))
	return rec, nil
}

func ownsData(ws *workspace.Workspace, org string) bool {
	for _, d := range ws.Datasets {
		if d.Owner == org {
			return true
		}
	}
	return false
}
