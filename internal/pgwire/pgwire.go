// Package pgwire is Airlock's Postgres wire endpoint, so analysts use psql,
// BI tools and Postgres drivers; a thin adapter over the governance
// kernel. It authenticates with user=<principal> and password=<token>,
// takes the purpose and agreement from connection options
// (options='-c airlock.purpose=research') or SET airlock.purpose, and
// turns every statement into a kernel operation: a query (Describe at
// Parse, Run at Execute), a catalog read (package catalog), or a session
// command (SET, SHOW, transaction control). Same rules and audit as HTTP;
// refusals are Postgres errors with SQLSTATE codes (mapped in one place,
// refusal.Code.SQLState) and the request id as their detail.
package pgwire

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	wire "github.com/jeroenrinzema/psql-wire"
	"github.com/jeroenrinzema/psql-wire/codes"
	pgerror "github.com/jeroenrinzema/psql-wire/errors"
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/airlock-dev/airlock/internal/catalog"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/identity"
	"github.com/airlock-dev/airlock/internal/netlimit"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/sqlop"
)

// Server is the wire endpoint.
type Server struct {
	Kernel *govern.Kernel
	SQL    *sqlop.Service
	Auth   *identity.Authenticator
	Log    *slog.Logger
	wire   *wire.Server
	limits Limits
	lis    *netlimit.Listener
	tls    *tls.Config
	// sessions counts authenticated sessions open now.
	sessions atomic.Int64
	// conns are the guarded connections by remote address (see raw).
	conns sync.Map
}

// session is one authenticated connection's own state, created when its
// session starts and carried in its context: nothing of it is found by
// address, so a new connection from a reused address shares nothing with
// an old one.
type connSession struct {
	conn    *guardedConn
	mu      sync.Mutex
	cursors map[string]*cursor
	reads   map[string]*catalogKind // exact statement text → its repeats
}

const sessionKey ctxKey = 99

func sessionOf(ctx context.Context) *connSession {
	s, _ := ctx.Value(sessionKey).(*connSession)
	return s
}

// raw is the connection a statement runs on, to send the messages
// psql-wire has no API for (NoticeResponse, COPY out). Statements run one
// at a time per connection and psql-wire writes each message whole, so a
// message written here never splits one of its own. The connection was
// bound to the session when it started.
func (s *Server) raw(ctx context.Context) *guardedConn {
	if ss := sessionOf(ctx); ss != nil {
		return ss.conn
	}
	return nil
}

// startSession binds a new session to its connection (registered by
// address at Accept; while a connection is open no other has its
// address) and gives it its own state.
func (s *Server) startSession(ctx context.Context) (context.Context, error) {
	ss := &connSession{cursors: map[string]*cursor{}, reads: map[string]*catalogKind{}}
	if addr := wire.RemoteAddress(ctx); addr != nil {
		if c, ok := s.conns.Load(addr.String()); ok {
			ss.conn = c.(*guardedConn)
		}
	}
	return context.WithValue(ctx, sessionKey, ss), nil
}

// notice sends a NoticeResponse (severity NOTICE, SQLSTATE 00000).
func (s *Server) notice(ctx context.Context, message string) {
	c := s.raw(ctx)
	if c == nil {
		return
	}
	var body []byte
	for _, f := range [][2]string{{"S", "NOTICE"}, {"V", "NOTICE"}, {"C", "00000"}, {"M", message}} {
		body = append(append(append(body, f[0][0]), f[1]...), 0)
	}
	c.writeMessage('N', append(body, 0))
}

// Sessions is the number of authenticated sessions open now.
func (s *Server) Sessions() int64 { return s.sessions.Load() }

// Limits bound the endpoint (see workspace.LimitsConfig).
type Limits struct {
	MaxConns, MaxConnsPerClient int
	HandshakeTimeout            time.Duration
	MaxMessageBytes             int
}

type ctxKey int

const (
	identityKey ctxKey = iota + 1
	credentialKey
)

// New builds the endpoint; tlsConfig may be nil (plain TCP on loopback).
func New(k *govern.Kernel, sql *sqlop.Service, auth *identity.Authenticator, log *slog.Logger, tlsConfig *tls.Config, limits Limits) (*Server, error) {
	s := &Server{Kernel: k, SQL: sql, Auth: auth, Log: log, limits: limits}
	opts := []wire.OptionFn{
		// psql-wire's default is 16 MiB per connection, allocated up front.
		wire.MessageBufferSize(limits.MaxMessageBytes),
		wire.SessionAuthStrategy(wire.ClearTextPassword(s.authenticate)),
		wire.Version(ServerVersion),
		// What PostgreSQL 15 announces at startup; drivers rely on them
		// (pgx's simple protocol needs standard_conforming_strings, JDBC
		// and libpq read DateStyle and integer_datetimes).
		wire.GlobalParameters(wire.Parameters{
			"DateStyle": "ISO, MDY", "TimeZone": "UTC", "integer_datetimes": "on", "IntervalStyle": "postgres",
			"standard_conforming_strings": "on",
		}),
		wire.Logger(log),
		wire.ErrorSanitizer(s.sanitize),
		// Called when an authenticated session ends.
		wire.SessionMiddleware(s.startSession),
		wire.CloseConn(func(ctx context.Context) error {
			s.sessions.Add(-1)
			s.endCatalogReads(ctx)
			return nil
		}),
	}
	// TLS is terminated by guardedConn, below psql-wire, so that it can
	// check every message in plaintext.
	s.tls = tlsConfig
	w, err := wire.NewServer(s.parse, opts...)
	if err != nil {
		return nil, err
	}
	s.wire = w
	return s, nil
}

// Serve accepts connections until the listener closes, within the limits:
// connections over them get a FATAL too_many_connections, and one that has
// not authenticated within the handshake timeout is dropped.
func (s *Server) Serve(l net.Listener) error {
	lis, err := netlimit.Wrap(l, netlimit.Config{
		MaxConns: s.limits.MaxConns, MaxConnsPerClient: s.limits.MaxConnsPerClient,
		HandshakeTimeout: s.limits.HandshakeTimeout, Reject: rejectStartup,
	})
	if err != nil {
		return err
	}
	s.lis = lis
	return s.wire.Serve(guardListener{Listener: lis, tls: s.tls, maxMsg: s.limits.MaxMessageBytes, conns: &s.conns})
}

// Stats reports the endpoint's open and refused connections.
func (s *Server) Stats() netlimit.Stats {
	if s.lis == nil {
		return netlimit.Stats{}
	}
	return s.lis.Stats()
}

// rejectStartup answers a connection over the limits with the ErrorResponse
// PostgreSQL sends in that case (FATAL 53300), before reading anything.
func rejectStartup(c net.Conn, reason string) {
	c.Write(fatalMessage("53300", reason))
}

// fatalMessage is a FATAL ErrorResponse with a SQLSTATE and a message.
func fatalMessage(code, message string) []byte {
	var body []byte
	for _, f := range [][2]string{{"S", "FATAL"}, {"V", "FATAL"}, {"C", code}, {"M", message}} {
		body = append(append(append(body, f[0][0]), f[1]...), 0)
	}
	body = append(body, 0)
	msg := append([]byte{'E', 0, 0, 0, 0}, body...)
	binary.BigEndian.PutUint32(msg[1:5], uint32(4+len(body)))
	return msg
}

// Close stops the endpoint.
func (s *Server) Close() error { return s.wire.Close() }

// authenticate checks the password as an API token or JWT for the user
// named. A failure is audited (with the credential's public id, never the
// secret) before the client learns of it.
func (s *Server) authenticate(ctx context.Context, _, user, password string) (context.Context, bool, error) {
	id, err := s.Auth.Authenticate(ctx, password)
	if err != nil && !errors.Is(err, identity.ErrUnauthenticated) {
		// The credential could not be checked (the state store is down):
		// say so, rather than that the password is wrong.
		return ctx, false, pgError(s.refuseAuth(ctx, password, refusal.StoreUnavailable(err)))
	}
	if err == nil && id.Principal != user {
		err = errors.New("the token belongs to another principal")
	}
	if err != nil {
		s.refuseAuth(ctx, password, refusal.New(refusal.Unauthenticated, "authn.invalid", "password authentication failed for user %q", user))
		return ctx, false, nil
	}
	if s.lis != nil {
		s.lis.Authenticated(wire.RemoteAddress(ctx))
	}
	s.sessions.Add(1)
	ctx = context.WithValue(ctx, credentialKey, identity.CredentialID(password))
	return context.WithValue(ctx, identityKey, id), true, nil
}

func (s *Server) refuseAuth(ctx context.Context, password string, why *refusal.Error) error {
	c := callerOf(ctx, share.Identity{})
	c.TokenID = identity.CredentialID(password)
	return s.Kernel.Refuse(ctx, govern.Request{Caller: c, Op: govern.Edge(share.OpAuthenticate)}, why)
}

// databaseOf is the database the client asked for (any name is accepted).
func databaseOf(ctx context.Context) string {
	if db := wire.ClientParameters(ctx)["database"]; db != "" {
		return db
	}
	return "airlock"
}

func identityOf(ctx context.Context) (identity.Identity, bool) {
	id, ok := ctx.Value(identityKey).(identity.Identity)
	return id, ok
}

// callerOf is a statement's origin on this connection.
func callerOf(ctx context.Context, id share.Identity) share.Caller {
	c := share.Caller{Identity: id, Channel: "pgwire"}
	c.TokenID, _ = ctx.Value(credentialKey).(string)
	if addr := wire.RemoteAddress(ctx); addr != nil {
		c.ClientAddr, _, _ = net.SplitHostPort(addr.String())
	}
	return c
}

// request is a kernel request from this session: its purpose and
// agreement come from the connection's options or SET.
func request(ctx context.Context, id share.Identity, mode share.Mode, op govern.Op) govern.Request {
	return govern.Request{Caller: callerOf(ctx, id), Purpose: setting(ctx, "purpose"), Agreement: setting(ctx, "agreement"), Mode: mode, Op: op}
}

// setting reads airlock.<name>: a SET in this session wins over the
// connection's options.
func setting(ctx context.Context, name string) string {
	if v, ok := wire.GetAttribute(ctx, "airlock."+name); ok {
		return v.(string)
	}
	opts := wire.ClientParameters(ctx)["options"]
	fields := strings.Fields(opts)
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		if f == "-c" && i+1 < len(fields) {
			i++
			f = fields[i]
		}
		f = strings.TrimPrefix(strings.TrimPrefix(f, "-c"), "--")
		if k, v, ok := strings.Cut(f, "="); ok && k == "airlock."+name {
			return v
		}
	}
	return ""
}

// statement is a prepared statement whose handler cannot crash the node:
// psql-wire runs handlers through iter.Pull, which re-panics in the
// connection's goroutine, so a panic becomes an audited refusal here.
func (s *Server) statement(fn wire.PreparedStatementFn, opts ...wire.PreparedOptionFn) *wire.PreparedStatement {
	return wire.NewStatement(func(ctx context.Context, w wire.DataWriter, params []wire.Parameter) (err error) {
		id, _ := identityOf(ctx)
		defer s.recoverPanic(ctx, request(ctx, id, share.Run, govern.Edge(share.OpQuery)), &err)
		return fn(ctx, w, params)
	}, opts...)
}

// Panics counts the panics recovered on this endpoint.
var Panics atomic.Int64

// recoverPanic turns a panic in a statement into an audited, logged,
// counted generic refusal; the client never sees its text.
func (s *Server) recoverPanic(ctx context.Context, req govern.Request, err *error) {
	p := recover()
	if p == nil {
		return
	}
	Panics.Add(1)
	s.Log.Error("panic in a wire statement", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	*err = pgError(s.Kernel.Refuse(ctx, req, refusal.Panic()))
}

// sanitize is the last word on every error the wire library sends: ours
// (refusals with their SQLSTATE) and the protocol's own pass; anything
// else, such as a panic the library recovered, is logged and counted and
// leaves as a generic error without its text.
func (s *Server) sanitize(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	// The library's own recovered panics (cache.go, command.go of psql-wire).
	if strings.HasPrefix(msg, "unexpected panic") || strings.HasPrefix(msg, "panic during execution") {
		Panics.Add(1)
		s.Log.Error("panic recovered by the wire library", "err", msg)
		return pgError(refusal.Panic())
	}
	return err
}

func oidName(oid uint32) string {
	for name, o := range typeOID {
		if o == oid {
			return name
		}
	}
	return fmt.Sprintf("type %d", oid)
}

// pgerrorCode is a Postgres error with a SQLSTATE of the protocol's own
// (not a refusal's).
func pgerrorCode(msg, code string) error {
	return pgerror.WithSeverity(pgerror.WithCode(errors.New(msg), codes.Code(code)), pgerror.LevelError)
}

// pgError turns a refusal into a Postgres error with its SQLSTATE.
func pgError(err error) error {
	r := refusal.As(err)
	msg := r.Message
	if r.Rule != "" {
		msg = fmt.Sprintf("%s (rule %s)", r.Message, r.Rule)
	}
	e := pgerror.WithCode(errors.New(msg), codes.Code(r.Code.SQLState()))
	if r.RequestID != "" {
		e = pgerror.WithDetail(e, "request_id="+r.RequestID)
	}
	return pgerror.WithSeverity(e, pgerror.LevelError)
}

func (s *Server) parse(ctx context.Context, q wire.Query) (stmts wire.PreparedStatements, err error) {
	id, _ := identityOf(ctx)
	defer s.recoverPanic(ctx, request(ctx, id, share.Run, govern.Edge(share.OpQuery)), &err)
	id, ok := identityOf(ctx)
	if !ok {
		return nil, pgError(refusal.New(refusal.Unauthenticated, "authn.missing", "not authenticated"))
	}
	text := strings.TrimSpace(q.Query)
	for strings.HasSuffix(text, ";") {
		text = strings.TrimSpace(strings.TrimSuffix(text, ";"))
	}
	if tree, err := pg.Parse(text); text == "" || err == nil && len(tree.Stmts) == 0 {
		// Nothing but comments: pgx's Ping sends "-- ping".
		return wire.Prepared(s.statement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error { return w.Empty() })), nil
	}
	if cols, ok := sessionQuery(text, sessionInfo{user: id.Principal, database: databaseOf(ctx), setting: func(n string) string { return showSetting(ctx, n) }}); ok {
		if _, err := s.Kernel.Do(ctx, request(ctx, id, share.Run, sessionOp(text))); err != nil {
			return nil, pgError(err)
		}
		return s.sessionStatement(cols), nil
	}
	if isSessionCommand(text) && strings.Contains(text, ";") {
		// "SET a = b; SELECT ..." would set a to "b; SELECT ..." and drop
		// the query: a session command stands alone.
		return nil, pgError(s.Kernel.Refuse(ctx, request(ctx, id, share.Run, sessionOp(text)),
			refusal.New(refusal.BadSQL, "sql.single_statement", "send a session command (SET, RESET, SHOW, BEGIN, COMMIT) as a statement of its own")))
	}
	if st, handled := s.sessionCommand(ctx, text); handled {
		if _, err := s.Kernel.Do(ctx, request(ctx, id, share.Run, sessionOp(text))); err != nil {
			return nil, pgError(err)
		}
		return st, nil
	}
	if tree, err := pg.Parse(text); err == nil && len(tree.Stmts) == 1 {
		stmt := tree.Stmts[0].Stmt
		if cp := stmt.GetCopyStmt(); cp != nil {
			return s.copyOut(ctx, id, text, cp)
		}
		if st, handled, err := s.cursorCommand(ctx, id, text, stmt); handled {
			return st, err
		}
	}
	if catalog.IsQuery(text) {
		return s.catalogQuery(ctx, id, text)
	}
	return s.governed(ctx, id, text, q)
}

// isSessionCommand reports whether text starts like a command
// sessionCommand handles.
func isSessionCommand(text string) bool {
	f := strings.Fields(strings.ToUpper(text))
	if len(f) == 0 {
		return false
	}
	switch strings.TrimRight(f[0], ";") {
	case "SET", "RESET", "SHOW", "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT":
		return true
	}
	return false
}

// sessionCommand handles SET/RESET/SHOW and transaction control, which
// change nothing on a read-only governed session.
func (s *Server) sessionCommand(ctx context.Context, text string) (wire.PreparedStatements, bool) {
	upper := strings.ToUpper(text)
	complete := func(tag string) wire.PreparedStatements {
		return wire.Prepared(s.statement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error { return w.Complete(tag) }))
	}
	switch {
	case strings.HasPrefix(upper, "SET "), strings.HasPrefix(upper, "SET SESSION "):
		body := strings.TrimSpace(text[strings.Index(upper, "SET ")+4:])
		body = strings.TrimPrefix(strings.TrimPrefix(body, "SESSION "), "session ")
		name, val := splitSet(body)
		if strings.HasPrefix(strings.ToLower(name), "airlock.") {
			wire.SetAttribute(ctx, strings.ToLower(name), val)
		}
		return complete("SET"), true
	case strings.HasPrefix(upper, "RESET "):
		name := strings.ToLower(strings.TrimSpace(text[6:]))
		if strings.HasPrefix(name, "airlock.") {
			wire.SetAttribute(ctx, name, "")
		}
		return complete("RESET"), true
	case upper == "BEGIN" || strings.HasPrefix(upper, "BEGIN ") || upper == "START TRANSACTION":
		return complete("BEGIN"), true
	case upper == "COMMIT" || upper == "END" || upper == "ROLLBACK" || upper == "ABORT":
		return complete(strings.Fields(upper)[0]), true
	case strings.HasPrefix(upper, "SHOW "):
		name := strings.ToLower(strings.TrimSpace(text[5:]))
		val := showSetting(ctx, name)
		cols := wire.Columns{{Name: name, Oid: oidText, Width: -1}}
		return wire.Prepared(s.statement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
			if err := w.Row([]any{val}); err != nil {
				return err
			}
			return w.Complete("SHOW")
		}, wire.WithColumns(cols))), true
	}
	return nil, false
}

// showSetting is a setting as SHOW and current_setting() answer it: what
// PostgreSQL 15 would say to a client, the session's airlock.* settings,
// and "" for anything else (the node's own configuration is not shown).
func showSetting(ctx context.Context, name string) string {
	return map[string]string{"transaction_isolation": "read committed", "default_transaction_isolation": "read committed",
		"server_version": ServerVersion, "server_version_num": "150008", "standard_conforming_strings": "on", "datestyle": "ISO, MDY",
		"integer_datetimes": "on", "transaction isolation level": "read committed", "server_encoding": "UTF8", "search_path": "public",
		"max_identifier_length": "63", "client_encoding": "UTF8", "timezone": "UTC", "default_transaction_read_only": "on",
		"transaction_read_only": "on", "lc_collate": "C", "lc_ctype": "C", "application_name": wire.ClientParameters(ctx)["application_name"],
		"airlock.purpose": setting(ctx, "purpose"), "airlock.agreement": setting(ctx, "agreement")}[strings.ToLower(name)]
}

func splitSet(body string) (string, string) {
	var name, val string
	if i := strings.Index(body, "="); i >= 0 {
		name, val = body[:i], body[i+1:]
	} else if f := strings.Fields(body); len(f) >= 3 && strings.EqualFold(f[1], "TO") {
		name, val = f[0], strings.Join(f[2:], " ")
	} else {
		return strings.TrimSpace(body), ""
	}
	val = strings.TrimSpace(val)
	val = strings.Trim(val, `'"`)
	return strings.TrimSpace(name), val
}

// PostgreSQL type OIDs of the columns the endpoint describes.
const (
	oidBool        = 16
	oidInt8        = 20
	oidInt4        = 23
	oidNumeric     = 1700
	oidText        = 25
	oidFloat8      = 701
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestampTZ = 1184
)

var typeOID = map[string]uint32{
	"integer": oidInt8, "double": oidFloat8, "date": oidDate, "timestamp": oidTimestamp,
	"boolean": oidBool, "text": oidText,
}

// catalogKind is one distinct catalog statement of a session.
type catalogKind struct {
	repeats int
}

// seenRead records a catalog read and reports whether the session has
// made exactly this read before (same text after normalisation: comments
// and layout do not count, constants do, so no other read hides behind
// an audited one).
func seenRead(ctx context.Context, text string) bool {
	ss := sessionOf(ctx)
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if k, ok := ss.reads[text]; ok {
		k.repeats++
		return true
	}
	ss.reads[text] = &catalogKind{}
	return false
}

// endCatalogReads sums up a finished session's repeated reads, one entry
// per statement.
func (s *Server) endCatalogReads(ctx context.Context) {
	ss := sessionOf(ctx)
	if ss == nil {
		return
	}
	ss.mu.Lock()
	reads := ss.reads
	ss.reads = nil
	ss.mu.Unlock()
	id, _ := identityOf(ctx)
	texts := make([]string, 0, len(reads))
	for t, k := range reads {
		if k.repeats > 0 {
			texts = append(texts, t)
		}
	}
	sort.Strings(texts)
	for _, t := range texts {
		s.Kernel.Summarize(context.WithoutCancel(ctx), govern.Request{Caller: callerOf(ctx, id), Op: govern.Edge(share.OpCatalogRepeat)},
			t, fmt.Sprintf("%d more catalog read(s) of this statement in the session", reads[t].repeats))
	}
}

// catalogQuery answers a system-catalog query through the kernel; a kind
// of read the session has made before is answered without a new entry
// (counted, and summed up at the session's end).
func (s *Server) catalogQuery(ctx context.Context, id share.Identity, text string) (wire.PreparedStatements, error) {
	req := request(ctx, id, share.Run, catalog.Read(s.SQL, text))
	req.Quiet = seenRead(ctx, catalog.Normalize(text))
	res, err := s.Kernel.Do(ctx, req)
	if err != nil {
		return nil, pgError(err)
	}
	rows := res.Value.(*catalog.Rows)
	var cols wire.Columns
	for _, c := range rows.Columns {
		cols = append(cols, wire.Column{Name: c, Oid: oidText, Width: -1})
	}
	return wire.Prepared(s.statement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
		for _, r := range rows.Rows {
			out := make([]any, len(r))
			for i, v := range r {
				if v != nil {
					out[i] = encode(v, nil, i)
				}
			}
			if err := w.Row(out); err != nil {
				return err
			}
		}
		return w.Complete(fmt.Sprintf("SELECT %d", len(rows.Rows)))
	}, wire.WithColumns(cols))), nil
}

// governed prepares a query: a Describe through the kernel now (its
// columns and parameter types, judged against the caller's view; a
// refusal is audited then), the governed run at Execute.
func (s *Server) governed(ctx context.Context, id share.Identity, text string, q wire.Query) (wire.PreparedStatements, error) {
	res, err := s.Kernel.Do(ctx, request(ctx, id, share.Describe, s.SQL.Query(text, nil)))
	if err != nil {
		return nil, pgError(err)
	}
	d := sqlop.Answer(res)
	nparams := len(d.Plan.ParamTypes)
	paramOIDs := make([]uint32, nparams)
	for i, t := range d.Plan.ParamTypes {
		paramOIDs[i] = oidText
		if o, ok := typeOID[t]; ok {
			paramOIDs[i] = o
		}
		if i < len(q.ParameterOIDs) && q.ParameterOIDs[i] != 0 {
			paramOIDs[i] = q.ParameterOIDs[i]
		}
	}
	var cols wire.Columns
	types := d.Plan.Types
	for i, name := range d.Columns {
		t := "text"
		if i < len(types) {
			t = types[i]
		}
		cols = append(cols, wire.Column{Name: name, Oid: typeOID[t], Width: -1})
	}
	run := func(ctx context.Context, w wire.DataWriter, params []wire.Parameter) (err error) {
		edge := request(ctx, id, share.Run, govern.Edge(share.OpQuery))
		defer s.recoverPanic(ctx, edge, &err)
		if len(params) != nparams {
			return pgError(s.Kernel.Refuse(ctx, edge, refusal.New(refusal.BadSQL, "sql.parameter", "the statement takes %d parameter(s); %d were bound", nparams, len(params))))
		}
		bound := make([]any, len(params))
		for i, p := range params {
			v, err := p.Scan(paramOIDs[i])
			if err != nil && p.Format() == wire.TextFormat {
				v, err = lenientTime(paramOIDs[i], string(p.Value()))
			}
			if err != nil {
				return pgError(s.Kernel.Refuse(ctx, edge, refusal.New(refusal.BadSQL, "sql.parameter", "parameter $%d cannot be decoded as %s", i+1, oidName(paramOIDs[i]))))
			}
			bound[i] = normalizeParam(v)
		}
		res, err := s.Kernel.Do(ctx, request(ctx, id, share.Run, s.SQL.Query(text, bound)))
		if err != nil {
			return pgError(err)
		}
		resp := sqlop.Answer(res)
		// What the answer is, beside its rows: the client's notices.
		for _, n := range answerNotes(resp) {
			s.notice(ctx, n)
		}
		for _, row := range resp.Rows {
			out := make([]any, len(row))
			for i, v := range row {
				out[i] = encode(v, types, i)
			}
			if err := w.Row(out); err != nil {
				return err
			}
		}
		return w.Complete(fmt.Sprintf("SELECT %d", len(resp.Rows)))
	}
	return wire.Prepared(s.statement(run, wire.WithColumns(cols), wire.WithParameters(paramOIDs))), nil
}

// answerNotes are what a governed answer says of itself: its notes, and
// for a DP answer what it cost, what is left and each column's noise.
func answerNotes(r *sqlop.Response) []string {
	out := append([]string(nil), r.Notes...)
	if dp := r.DP; dp != nil {
		spent := fmt.Sprintf("differential privacy: this answer spent ε=%.3g, δ=%.3g", dp.Epsilon, dp.Delta)
		if dp.Cached {
			spent = "differential privacy: answered from a stored noisy result at no new cost"
		}
		out = append(out, fmt.Sprintf("%s; ε left %.4g of %.4g until %s; %s", spent, dp.RemainingEps, dp.BudgetEpsilon, dp.BudgetRefresh.Format(time.RFC3339), dp.ContribBounds))
		for _, c := range dp.Columns {
			line := fmt.Sprintf("%s: %s", c.Column, c.Mechanism)
			if c.Sigma > 0 {
				line += fmt.Sprintf(", σ=%.4g, 95%% interval ±%.4g", c.Sigma, c.CI95)
			}
			if c.Note != "" {
				line += "; " + c.Note
			}
			out = append(out, line)
		}
		out = append(out, dp.BoundingBias)
	}
	return out
}

// sessionOp audits a session command (SET, RESET, SHOW, transaction
// control): it changes nothing on the data, but what a session set is part
// of what it did.
func sessionOp(text string) govern.Op { return session(text) }

type session string

func (session) Kind() share.OpKind { return share.OpSession }
func (session) Light()             {}
func (o session) Prepare(ctx context.Context, c *govern.Call) (govern.Prepared, error) {
	c.Entry.SQL = string(o)
	return govern.Answer(nil), nil
}

// Text forms of dates and timestamps that drivers send and pgtype does
// not parse (pgJDBC's setDate sends "2024-01-31 +00").
var timeLayouts = []string{
	"2006-01-02", "2006-01-02 -07", "2006-01-02 -07:00", "2006-01-02 15:04:05", "2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04:05-07", "2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05-07:00", "2006-01-02 15:04:05.999999999-07:00",
	time.RFC3339Nano,
}

// lenientTime decodes a text date or timestamp parameter in any of
// timeLayouts: a date as its day, a timestamp as UTC.
func lenientTime(oid uint32, text string) (any, error) {
	if oid != oidDate && oid != oidTimestamp && oid != oidTimestampTZ {
		return nil, errors.New("not a time")
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, strings.TrimSpace(text)); err == nil {
			if oid == oidDate {
				return t.Format("2006-01-02"), nil
			}
			return t.UTC().Format("2006-01-02 15:04:05.999999"), nil
		}
	}
	return nil, errors.New("not a time")
}

func normalizeParam(v any) any {
	switch x := v.(type) {
	case pgtype.Numeric:
		// A decimal parameter (JDBC setBigDecimal): its exact text, which
		// the planner reads as a numeric literal.
		if !x.Valid {
			return nil
		}
		if f, err := x.Float64Value(); err == nil && f.Valid && !x.NaN && x.InfinityModifier == pgtype.Finite {
			if x.Exp >= 0 && x.Int.IsInt64() {
				i, _ := x.Int64Value()
				return i.Int64
			}
			return f.Float64
		}
		return nil
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case float32:
		return float64(x)
	case time.Time:
		return x.Format("2006-01-02 15:04:05.999999")
	}
	return v
}

// encode converts a result value to what its declared column type expects.
func encode(v any, types []string, i int) any {
	if v == nil {
		return nil
	}
	t := "text"
	if i < len(types) {
		t = types[i]
	}
	switch t {
	case "integer":
		switch x := v.(type) {
		case int64:
			return x
		case float64:
			return int64(x)
		case *big.Int:
			if x.IsInt64() {
				return x.Int64()
			}
		}
	case "double":
		switch x := v.(type) {
		case float64:
			return x
		case int64:
			return float64(x)
		case *big.Int:
			f, _ := new(big.Float).SetInt(x).Float64()
			return f
		}
	case "date", "timestamp":
		if x, ok := v.(time.Time); ok {
			return x
		}
	case "boolean":
		if x, ok := v.(bool); ok {
			return x
		}
	}
	switch x := v.(type) {
	case time.Time:
		return x.Format(time.RFC3339)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}
