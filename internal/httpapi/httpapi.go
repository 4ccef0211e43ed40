// Package httpapi is Airlock's HTTP/JSON channel. Handlers authenticate the
// bearer token, hand the request to the gateway and write either the
// governed result or the refusal as {"error": {"code", "rule", "message"}}
// with the status its code maps to (in exactly one place, writeError).
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/airlock-dev/airlock/internal/gateway"
	"github.com/airlock-dev/airlock/internal/identity"
	"github.com/airlock-dev/airlock/internal/refusal"
)

// Authenticator turns a bearer token into an identity.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (identity.Identity, error)
}

// Server holds the HTTP handlers' dependencies.
type Server struct {
	Gateway *gateway.Gateway
	Auth    Authenticator
	Log     *slog.Logger
	// Extra registers further routes (audit, admin) on the mux.
	Extra []func(mux *http.ServeMux, wrap func(Handler) http.Handler)
}

// Handler is an HTTP handler that returns an error instead of writing it.
type Handler func(w http.ResponseWriter, r *http.Request, id identity.Identity) error

// Handler returns the API's http.Handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/query", s.wrap(s.query(false)))
	mux.Handle("POST /v1/query/plan", s.wrap(s.query(true)))
	mux.Handle("GET /v1/datasets", s.wrap(s.datasets))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}`))
	})
	for _, add := range s.Extra {
		add(mux, s.wrap)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, refusal.New(refusal.NotFound, "http.route", "no such endpoint"))
	})
	return securityHeaders(mux)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// wrap authenticates and turns returned errors into JSON refusals.
func (s *Server) wrap(h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || bearer == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="airlock"`)
			WriteError(w, refusal.New(refusal.Unauthenticated, "authn.missing", "an Authorization: Bearer token is required"))
			return
		}
		id, err := s.Auth.Authenticate(r.Context(), strings.TrimSpace(bearer))
		if err != nil && !errors.Is(err, identity.ErrUnauthenticated) {
			// The credential could not be checked: the state store is down.
			// That is not the client's fault and must not read as one.
			if s.Log != nil {
				s.Log.Error("authentication could not be checked", "err", err)
			}
			w.Header().Set("Retry-After", "1")
			WriteError(w, refusal.New(refusal.Unavailable, "store.unavailable", "the state store is unavailable; retry shortly"))
			return
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="airlock", error="invalid_token"`)
			WriteError(w, refusal.New(refusal.Unauthenticated, "authn.invalid", "%s", authMessage(err)))
			return
		}
		defer s.recoverPanic(w, r, id)
		if err := h(w, r, id); err != nil {
			r := refusal.As(err)
			if r.Code == refusal.Internal && s.Log != nil {
				s.Log.Error("request failed", "err", err)
			}
			WriteError(w, r)
		}
	})
}

// Panics counts the panics recovered in HTTP handlers.
var Panics atomic.Int64

// recoverPanic turns a handler's panic into an audited, logged, counted
// 500 whose body says nothing of it.
func (s *Server) recoverPanic(w http.ResponseWriter, r *http.Request, id identity.Identity) {
	p := recover()
	if p == nil {
		return
	}
	Panics.Add(1)
	if s.Log != nil {
		s.Log.Error("panic in an HTTP handler", "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	err := s.Gateway.Refuse(r.Context(), gateway.Request{Channel: "http", ClientAddr: host, Identity: id},
		refusal.Panic())
	WriteError(w, refusal.As(err))
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

const maxBody = 1 << 20

func (s *Server) query(dry bool) Handler {
	return func(w http.ResponseWriter, r *http.Request, id identity.Identity) error {
		req, params, err := DecodeQuery(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			return err
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		resp, err := s.Gateway.Query(r.Context(), gateway.Request{
			Channel: "http", ClientAddr: host, Identity: id, SQL: req.SQL, Params: params,
			Purpose: req.Purpose, Agreement: req.Agreement, DryRun: dry,
		})
		if err != nil {
			return err
		}
		WriteJSON(w, http.StatusOK, encodeResponse(resp))
		return nil
	}
}

// DecodeQuery reads a POST /v1/query body: one JSON object with known
// fields only, numbers kept exact, parameters limited to strings, numbers,
// booleans and null. Every failure is a refusal (413 for a body over the
// limit, 400 otherwise).
func DecodeQuery(body io.Reader) (QueryRequest, []any, error) {
	var req QueryRequest
	dec := json.NewDecoder(body)
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, nil, refusal.New(refusal.TooLarge, "http.body_size", "the request body exceeds %d bytes", maxBody)
		}
		return req, nil, refusal.New(refusal.BadSQL, "http.body", "the body must be JSON {\"sql\": ..., \"purpose\": ..., \"agreement\": ...}")
	}
	if dec.More() {
		return req, nil, refusal.New(refusal.BadSQL, "http.body", "the body must be one JSON object")
	}
	params, err := jsonParams(req.Params)
	return req, params, err
}

func jsonParams(ps []any) ([]any, error) {
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

// encodeResponse makes result values JSON friendly (times as RFC 3339,
// big integers as numbers).
func encodeResponse(r *gateway.Response) *gateway.Response {
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

func (s *Server) datasets(w http.ResponseWriter, r *http.Request, id identity.Identity) error {
	WriteJSON(w, http.StatusOK, map[string]any{"datasets": s.Gateway.Catalog(id)})
	return nil
}
