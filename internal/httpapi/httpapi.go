// Package httpapi is Airlock's HTTP/JSON channel, a thin adapter over the
// governance kernel: handlers authenticate the bearer token, decode the
// request into a kernel operation (a query, a catalog listing, an audit
// read, a revocation), and write either the released value or the refusal
// as {"error": {"code", "rule", "message", "request_id"}} with the status
// its code maps to (in exactly one place, WriteError). Every response
// carries X-Request-Id, which is also in the audit entry and the server
// log, and every request is written to the access log.
package httpapi

import (
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/airlock-dev/airlock/internal/adminop"
	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/identity"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/sqlop"
)

// Authenticator turns a bearer token into an identity.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (identity.Identity, error)
}

// Transparency is the audit log's public side: signed checkpoints and
// proofs, served to any authenticated principal.
type Transparency interface {
	Checkpoint(ctx context.Context) ([]byte, error)
	Sync(ctx context.Context) error
	Tree() *audit.Tree
}

// Server holds the HTTP handlers' dependencies.
type Server struct {
	Kernel *govern.Kernel
	SQL    *sqlop.Service
	Auth   Authenticator
	Log    *slog.Logger
	// AccessLog, if set, gets one line per request.
	AccessLog *slog.Logger
	// Leaves and Revocations back the audit-read and revocation
	// operations; Log the transparency endpoints.
	Leaves      adminop.Leaves
	Revocations adminop.Revocations
	Audit       Transparency
	// Metrics serves GET /metrics once the kernel allows the read.
	Metrics http.Handler
	// Extra registers further routes (readiness).
	Extra []func(r Router, wrap func(share.OpKind, Handler) http.Handler)
	// routes are the patterns Handler registered, in order.
	routes []string
}

// Router is where routes are registered; every pattern is recorded, so
// the API document can be checked against what is served.
type Router interface {
	Handle(pattern string, h http.Handler)
	HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request))
}

type recordingMux struct {
	*http.ServeMux
	patterns *[]string
}

func (m recordingMux) Handle(pattern string, h http.Handler) {
	*m.patterns = append(*m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m recordingMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// Routes are the patterns the last Handler registered (method and path),
// without the catch-all.
func (s *Server) Routes() []string { return s.routes }

// OpenAPI is the API's OpenAPI 3.1 document, served at GET /v1/openapi.json;
// a test holds it to the registered routes and to real responses.
//
//go:embed openapi.json
var OpenAPI []byte

// Handler is an HTTP handler that returns an error instead of writing it.
type Handler func(w http.ResponseWriter, r *http.Request, c share.Caller) error

// Handler returns the API's http.Handler.
func (s *Server) Handler() http.Handler {
	s.routes = nil
	base := http.NewServeMux()
	mux := recordingMux{base, &s.routes}
	mux.Handle("POST /v1/query", s.wrap(share.OpQuery, s.query(share.Run)))
	mux.Handle("POST /v1/query/plan", s.wrap(share.OpQuery, s.query(share.Plan)))
	mux.Handle("GET /v1/datasets", s.wrap(share.OpCatalogList, s.datasets))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(OpenAPI)
	})
	s.auditRoutes(mux)
	mux.Handle("POST /v1/agreements/{id}/revoke", s.wrap(share.OpRevoke, s.revoke))
	mux.Handle("GET /v1/whoami", s.wrap("", func(w http.ResponseWriter, r *http.Request, c share.Caller) error {
		WriteJSON(w, http.StatusOK, map[string]any{"principal": c.Principal, "org": c.Org, "roles": c.Roles, "region": c.Region, "method": c.Method})
		return nil
	}))
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.wrap(share.OpMetricsRead, func(w http.ResponseWriter, r *http.Request, c share.Caller) error {
			if _, err := s.Kernel.Do(r.Context(), govern.Request{Caller: c, Op: adminop.ReadMetrics()}); err != nil {
				return err
			}
			s.Metrics.ServeHTTP(w, r)
			return nil
		}))
	}
	for _, add := range s.Extra {
		add(mux, s.wrap)
	}
	base.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, refusal.New(refusal.NotFound, "http.route", "no such endpoint"))
	})
	return s.accessLog(securityHeaders(base))
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

type ctxKey int

const requestIDKey ctxKey = 1

// statusWriter remembers the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// accessLog gives every request an id (X-Request-Id, also in its audit
// entry) and writes one line per request: method, path (never the query
// string, which may hold filter values), status, size, time, id.
func (s *Server) accessLog(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := s.Kernel.NewRequestID()
		w.Header().Set("X-Request-Id", id)
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		h.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
		if s.AccessLog != nil {
			s.AccessLog.Info("http", "method", r.Method, "path", r.URL.Path, "status", sw.status, "bytes", sw.bytes,
				"duration_ms", float64(time.Since(start).Microseconds())/1000, "request_id", id, "remote", r.RemoteAddr)
		}
	})
}

// callerOf is the request's origin before authentication.
func callerOf(r *http.Request) share.Caller {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	id, _ := r.Context().Value(requestIDKey).(string)
	return share.Caller{Channel: "http", ClientAddr: host, RequestID: id}
}

// wrap authenticates and turns returned errors into JSON refusals. A
// credential that does not verify is audited (with the token's public id,
// never its secret) under the route's operation kind.
func (s *Server) wrap(kind share.OpKind, h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callerOf(r)
		bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		bearer = strings.TrimSpace(bearer)
		if !ok || bearer == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="airlock"`)
			WriteError(w, s.refuseAuth(r.Context(), c, refusal.New(refusal.Unauthenticated, "authn.missing", "an Authorization: Bearer token is required")))
			return
		}
		c.TokenID = identity.CredentialID(bearer)
		id, err := s.Auth.Authenticate(r.Context(), bearer)
		if err != nil && !errors.Is(err, identity.ErrUnauthenticated) {
			// The credential could not be checked: the state store is down.
			// That is not the client's fault and must not read as one.
			WriteError(w, s.refuseAuth(r.Context(), c, refusal.StoreUnavailable(err)))
			return
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="airlock", error="invalid_token"`)
			WriteError(w, s.refuseAuth(r.Context(), c, refusal.New(refusal.Unauthenticated, "authn.invalid", "%s", authMessage(err))))
			return
		}
		c.Identity = id // the credential's public id stays: which token acted
		defer s.recoverPanic(w, r, c, kind)
		if err := h(w, r, c); err != nil {
			WriteError(w, refusal.As(err))
		}
	})
}

// refuseAuth audits a failed authentication. If even the audit log is
// down the client still learns why it was refused, and the log line
// keeps the attempt.
func (s *Server) refuseAuth(ctx context.Context, c share.Caller, why *refusal.Error) *refusal.Error {
	err := refusal.As(s.Kernel.Refuse(ctx, govern.Request{Caller: c, Op: govern.Edge(share.OpAuthenticate)}, why))
	if err.Rule == "audit.unavailable" {
		out := *why
		out.RequestID = c.RequestID
		return &out
	}
	return err
}

// Panics counts the panics recovered in HTTP handlers.
var Panics atomic.Int64

// recoverPanic turns a handler's panic into an audited, logged, counted
// 500 whose body says nothing of it.
func (s *Server) recoverPanic(w http.ResponseWriter, r *http.Request, c share.Caller, kind share.OpKind) {
	p := recover()
	if p == nil {
		return
	}
	Panics.Add(1)
	if s.Log != nil {
		s.Log.Error("panic in an HTTP handler", "path", r.URL.Path, "request_id", c.RequestID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	}
	WriteError(w, refusal.As(s.Kernel.Refuse(r.Context(), govern.Request{Caller: c, Op: govern.Edge(kind)}, refusal.Panic())))
}

func authMessage(err error) string {
	msg := err.Error()
	if errors.Is(err, identity.ErrUnauthenticated) {
		return msg
	}
	return "invalid credentials"
}

// WriteError writes a refusal as JSON with its HTTP status.
func WriteError(w http.ResponseWriter, r *refusal.Error) {
	if after, ok := r.Details["retry_after"]; ok {
		w.Header().Set("Retry-After", fmt.Sprint(after))
	}
	body := map[string]any{"code": r.Code, "rule": r.Rule, "message": r.Message}
	if r.RequestID != "" {
		body["request_id"] = r.RequestID
	}
	for k, v := range r.Details {
		body[k] = v
	}
	WriteJSON(w, r.Code.HTTPStatus(), map[string]any{"error": body})
}

// WriteJSON writes v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// QueryRequest is the body of POST /v1/query.
type QueryRequest struct {
	SQL       string `json:"sql"`
	Purpose   string `json:"purpose"`
	Agreement string `json:"agreement,omitempty"`
	Params    []any  `json:"params,omitempty"`
}

// MaxBody is the largest request body the API reads.
const MaxBody = 1 << 20

func (s *Server) query(mode share.Mode) Handler {
	return func(w http.ResponseWriter, r *http.Request, c share.Caller) error {
		req, params, err := DecodeQuery(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			// A body that does not decode is refused and audited like any query.
			return s.Kernel.Refuse(r.Context(), govern.Request{Caller: c, Purpose: req.Purpose, Agreement: req.Agreement, Mode: mode, Op: govern.Edge(share.OpQuery)}, refusal.As(err))
		}
		res, err := s.Kernel.Do(r.Context(), govern.Request{Caller: c, Purpose: req.Purpose, Agreement: req.Agreement, Mode: mode, Op: s.SQL.Query(req.SQL, params)})
		if err != nil {
			return err
		}
		WriteJSON(w, http.StatusOK, EncodeResponse(sqlop.Answer(res)))
		return nil
	}
}

// DecodeQuery reads a POST /v1/query body: one JSON object with known
// fields only, numbers kept exact, parameters limited to strings, numbers,
// booleans and null. Every failure is a refusal (413 for a body over the
// limit, 400 otherwise).
func DecodeQuery(body io.Reader) (QueryRequest, []any, error) {
	var req QueryRequest
	if err := DecodeJSON(body, &req, "JSON {\"sql\": ..., \"purpose\": ..., \"agreement\": ...}"); err != nil {
		return req, nil, err
	}
	params, err := JSONParams(req.Params)
	return req, params, err
}

// DecodeJSON reads a request body (behind http.MaxBytesReader with
// MaxBody) into v: one JSON object with known fields only, numbers kept
// exact. Every failure is a refusal: 413 for a body over the limit, 400
// naming shape, what the body must be, otherwise.
func DecodeJSON(body io.Reader, v any, shape string) error {
	dec := json.NewDecoder(body)
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return refusal.New(refusal.TooLarge, "http.body_size", "the request body exceeds %d bytes", MaxBody)
		}
		return refusal.New(refusal.BadSQL, "http.body", "the body must be %s", shape)
	}
	if dec.More() {
		return refusal.New(refusal.BadSQL, "http.body", "the body must be one JSON object")
	}
	return nil
}

// JSONParams turns JSON-decoded parameters (numbers as json.Number) into
// query parameters, refusing what is not a string, number, boolean or null.
func JSONParams(ps []any) ([]any, error) {
	out := make([]any, len(ps))
	for i, p := range ps {
		switch x := p.(type) {
		case json.Number:
			if n, err := x.Int64(); err == nil {
				out[i] = n
			} else if f, err := x.Float64(); err == nil {
				out[i] = f
			} else {
				return nil, refusal.New(refusal.BadSQL, "sql.parameter", "parameter %d is not a number", i+1)
			}
		case string, bool, nil:
			out[i] = x
		default:
			return nil, refusal.New(refusal.BadSQL, "sql.parameter", "parameter %d must be a string, number, boolean or null", i+1)
		}
	}
	return out, nil
}

// EncodeResponse makes result values JSON friendly (times as RFC 3339,
// big integers as numbers).
func EncodeResponse(r *sqlop.Response) *sqlop.Response {
	for _, row := range r.Rows {
		for i, v := range row {
			switch x := v.(type) {
			case time.Time:
				if x.Hour() == 0 && x.Minute() == 0 && x.Second() == 0 && x.Nanosecond() == 0 {
					row[i] = x.Format("2006-01-02")
				} else {
					row[i] = x.Format(time.RFC3339Nano)
				}
			case *big.Int:
				row[i] = json.RawMessage(x.String())
			}
		}
	}
	return r
}

func (s *Server) datasets(w http.ResponseWriter, r *http.Request, c share.Caller) error {
	res, err := s.Kernel.Do(r.Context(), govern.Request{Caller: c, Op: s.SQL.CatalogList()})
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, map[string]any{"datasets": res.Value, "request_id": res.RequestID})
	return nil
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, c share.Caller) error {
	res, err := s.Kernel.Do(r.Context(), govern.Request{Caller: c, Op: adminop.Revoke(s.Revocations, r.PathValue("id"), r.URL.Query().Get("reason"), false)})
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, res.Value)
	return nil
}

func queryUint(r *http.Request, name string, def uint64) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, refusal.New(refusal.BadSQL, "http.parameter", "%s must be a non-negative integer", name)
	}
	return n, nil
}

func (s *Server) auditRoutes(mux Router) {
	// Decoded entries for stewards (their datasets) and auditors (all).
	mux.Handle("GET /v1/audit", s.wrap(share.OpAuditRead, func(w http.ResponseWriter, r *http.Request, c share.Caller) error {
		refuse := func(err error) error {
			return s.Kernel.Refuse(r.Context(), govern.Request{Caller: c, Op: govern.Edge(share.OpAuditRead)}, refusal.As(err))
		}
		limit, err := queryUint(r, "limit", 100)
		if err != nil {
			return refuse(err)
		}
		f := audit.Filter{Principal: r.URL.Query().Get("principal"), Dataset: r.URL.Query().Get("dataset"), Decision: r.URL.Query().Get("decision"), Rule: r.URL.Query().Get("rule")}
		if v := r.URL.Query().Get("since"); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return refuse(refusal.New(refusal.BadSQL, "http.parameter", "since must be RFC 3339"))
			}
			f.From = t
		}
		res, err := s.Kernel.Do(r.Context(), govern.Request{Caller: c, Op: adminop.ReadEntries(s.Leaves, f, limit)})
		if err != nil {
			return err
		}
		WriteJSON(w, http.StatusOK, res.Value)
		return nil
	}))
	mux.Handle("GET /v1/audit/entries", s.wrap(share.OpAuditRead, func(w http.ResponseWriter, r *http.Request, c share.Caller) error {
		start, err := queryUint(r, "start", 0)
		if err == nil {
			var end uint64
			if end, err = queryUint(r, "end", 0); err == nil {
				res, err := s.Kernel.Do(r.Context(), govern.Request{Caller: c, Op: adminop.ReadRaw(s.Leaves, start, end)})
				if err != nil {
					return err
				}
				WriteJSON(w, http.StatusOK, res.Value)
				return nil
			}
		}
		return s.Kernel.Refuse(r.Context(), govern.Request{Caller: c, Op: govern.Edge(share.OpAuditRead)}, refusal.As(err))
	}))
	// The transparency-log API: checkpoint and proofs for any principal.
	// They are hashes only, and monitors poll them, so they are not
	// audited (an entry per poll would grow the log it checks).
	mux.Handle("GET /v1/audit/checkpoint", s.wrap("", func(w http.ResponseWriter, r *http.Request, _ share.Caller) error {
		signed, err := s.Audit.Checkpoint(r.Context())
		if err != nil {
			return refusal.AuditUnavailable().WithCause(err)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(signed)
		return nil
	}))
	mux.Handle("GET /v1/audit/proof/inclusion", s.wrap("", func(w http.ResponseWriter, r *http.Request, _ share.Caller) error {
		if err := s.Audit.Sync(r.Context()); err != nil {
			return refusal.AuditUnavailable().WithCause(err)
		}
		idx, err := queryUint(r, "index", 0)
		if err != nil {
			return err
		}
		size, err := queryUint(r, "size", s.Audit.Tree().Size())
		if err != nil {
			return err
		}
		p, err := s.Audit.Tree().InclusionProof(idx, size)
		if err != nil {
			return refusal.New(refusal.BadSQL, "audit.range", "index %d is not in a tree of size %d", idx, size)
		}
		WriteJSON(w, http.StatusOK, map[string]any{"index": idx, "size": size, "proof": encodeHashes(p)})
		return nil
	}))
	mux.Handle("GET /v1/audit/proof/consistency", s.wrap("", func(w http.ResponseWriter, r *http.Request, _ share.Caller) error {
		if err := s.Audit.Sync(r.Context()); err != nil {
			return refusal.AuditUnavailable().WithCause(err)
		}
		from, err := queryUint(r, "from", 0)
		if err != nil {
			return err
		}
		to, err := queryUint(r, "to", s.Audit.Tree().Size())
		if err != nil {
			return err
		}
		p, err := s.Audit.Tree().ConsistencyProof(from, to)
		if err != nil {
			return refusal.New(refusal.BadSQL, "audit.range", "no consistency proof from %d to %d", from, to)
		}
		WriteJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "proof": encodeHashes(p)})
		return nil
	}))
}

func encodeHashes(p []audit.Hash) []string {
	out := make([]string, len(p))
	for i := range p {
		out[i] = base64.StdEncoding.EncodeToString(p[i][:])
	}
	return out
}
