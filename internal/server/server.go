// Package server is Airlock's composition root: it builds every subsystem
// from a workspace directory (state store, node keys, engine, policies,
// audit log, governance kernel, authenticator, HTTP API) and runs them until the
// context ends. Only cmd/airlock (via cli) and end-to-end tests import it.
package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/airlock-dev/airlock/internal/admission"
	"github.com/airlock-dev/airlock/internal/breaker"
	"github.com/airlock-dev/airlock/internal/keys"
	"github.com/airlock-dev/airlock/internal/metrics"
	"github.com/airlock-dev/airlock/internal/netlimit"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/collab"
	"github.com/airlock-dev/airlock/internal/differencing"
	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/engine/duckdb"
	pgengine "github.com/airlock-dev/airlock/internal/engine/postgres"
	"github.com/airlock-dev/airlock/internal/exportop"
	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/fedjob"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/httpapi"
	"github.com/airlock-dev/airlock/internal/identity"
	"github.com/airlock-dev/airlock/internal/pgwire"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/refusal"
	"github.com/airlock-dev/airlock/internal/share"
	"github.com/airlock-dev/airlock/internal/sqlop"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/store/postgres"
	"github.com/airlock-dev/airlock/internal/store/sqlite"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Options configure a node.
type Options struct {
	Workspace string
	HTTPAddr  string // default 127.0.0.1:8080
	PGAddr    string // Postgres wire endpoint; empty = off
	// PeerAddr is the peer endpoint (mutual TLS); empty = the workspace's
	// federation.listen, and off if that is empty too.
	PeerAddr string
	// PGTLS, when set, is offered to Postgres wire clients (sslmode=require).
	PGTLS    *tls.Config
	StoreDSN string // postgres://...; empty = embedded SQLite in the data dir
	// StoreSchema isolates a PostgreSQL store in its own schema (tests).
	StoreSchema string
	Log         *slog.Logger
	Now         func() time.Time
	// ReloadEvery is how often workspace files are checked for changes.
	ReloadEvery time.Duration
	// AccessLog, if set, gets one line per HTTP request.
	AccessLog *slog.Logger
}

// Node is a running Airlock node.
type Node struct {
	opts  Options
	WS    *workspace.Workspace
	Store store.Store
	// storeGuard is the breaker-guarded token lookup (see guardedTokens).
	storeGuard *guardedTokens
	// Metrics is the node's Prometheus registry (GET /metrics).
	Metrics *metrics.Metrics
	httpLis *netlimit.Listener
	Engine  *duckdb.DB
	// PGEngines hold datasets governed in place, by DSN.
	PGEngines map[string]*pgengine.DB
	Audit     *audit.Log
	// Kernel is the one pipeline every operation goes through; SQL its
	// query operation.
	Kernel   *govern.Kernel
	SQL      *sqlop.Service
	Auth     *identity.Authenticator
	Verifier string // the audit log's note verifier key
	// Key is the node's identity for its peers; Peers the client that
	// calls them, Witness the cosigner of their checkpoints.
	Key     *federation.NodeKey
	Peers   *federation.Client
	Witness *federation.Witness
	// Export releases anonymised data (POST /v1/exports).
	Export *exportop.Service
	// Collab runs clean-room queries and this node's side of its
	// members' partners' queries.
	Collab *collab.Service
	// Jobs runs federated jobs' rounds (as coordinator) and this node's
	// side of its owners' approved jobs.
	Jobs     *fedjob.Service
	peerLis  net.Listener
	peerSrv  *http.Server
	log      *slog.Logger
	http     *http.Server
	listener net.Listener
	pgLis    net.Listener
	pg       *pgwire.Server
	mu       sync.Mutex
	wsNow    *workspace.Workspace
	// reloadErr is why the files on disk do not load (see reloadOrReport);
	// failedDigest their digest, so one broken edit is reported once.
	routes         []string
	forks          atomic.Int64
	reloadErr      string
	failedDigest   string
	reloadFailures int
}

// OpenStore opens the state store a workspace uses.
func OpenStore(ctx context.Context, ws *workspace.Workspace, dsn, schema string) (store.Store, error) {
	if dsn != "" {
		return postgres.Open(ctx, dsn, schema)
	}
	dir := DataDir(ws)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return sqlite.Open(ctx, filepath.Join(dir, "state.db"))
}

// DataDir is the workspace's data directory.
func DataDir(ws *workspace.Workspace) string {
	if filepath.IsAbs(ws.Config.DataDir) {
		return ws.Config.DataDir
	}
	return filepath.Join(ws.Dir, ws.Config.DataDir)
}

// Open builds a node; nothing listens until Serve.
func Open(ctx context.Context, opts Options) (*Node, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = "127.0.0.1:8080"
	}
	if opts.ReloadEvery == 0 {
		opts.ReloadEvery = 2 * time.Second
	}
	ws, err := workspace.Load(opts.Workspace)
	if err != nil {
		return nil, fmt.Errorf("workspace %s:\n%w", opts.Workspace, err)
	}
	n := &Node{opts: opts, WS: ws, wsNow: ws, log: opts.Log.With("component", "server")}
	ok := false
	defer func() {
		if !ok {
			n.Close()
		}
	}()
	if n.Store, err = OpenStore(ctx, ws, opts.StoreDSN, opts.StoreSchema); err != nil {
		return nil, fmt.Errorf("state store: %w", err)
	}
	dir := DataDir(ws)
	skey, vkey, err := audit.LoadOrCreateKey(dir, ws.Config.Node.Name)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	n.Verifier = vkey
	if n.Key, err = federation.ParseSigner(skey, vkey); err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	maskSecret, err := loadOrCreateSecret(filepath.Join(dir, "mask.key"))
	if err != nil {
		return nil, fmt.Errorf("mask key: %w", err)
	}
	if err := checkSharedKeys(ctx, n.Store, vkey, maskSecret); err != nil {
		return nil, err
	}
	if n.Engine, err = LoadEngine(ctx, ws, n.log); err != nil {
		return nil, err
	}
	n.PGEngines = map[string]*pgengine.DB{}
	for _, m := range sortedDatasets(ws) {
		if dsn := m.Source.Postgres; dsn != "" && n.PGEngines[dsn] == nil {
			pe, err := pgengine.Open(ctx, dsn)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", m.File, err)
			}
			n.PGEngines[dsn] = pe
		}
	}
	pol, err := policy.Load(ws.Policies)
	if err != nil {
		return nil, err
	}
	// One breaker for the store, shared by the token lookup every request
	// makes first and the audit log's appends: while the store is down,
	// both fail fast (a failed authentication is still refused, and its
	// audit attempt costs no connection).
	storeBreaker := breaker.New(100*time.Millisecond, 5*time.Second, opts.Now)
	n.storeGuard = &guardedTokens{lookup: n.Store, b: storeBreaker}
	if n.Audit, err = audit.Open(ctx, guardedLeaves{n.Store, storeBreaker}, skey, ws.Config.Node.Origin); err != nil {
		return nil, err
	}
	lim := ws.Config.Limits
	n.Metrics = metrics.New()
	n.Audit.ObserveCommits(n.Metrics.Commit)
	n.Kernel, err = govern.New(&govern.Snapshot{WS: ws, Policy: pol}, govern.Config{
		Audit: n.Audit, Ledger: n.Store, Metrics: n.Metrics, Log: opts.Log.With("component", "govern"), Now: opts.Now,
		Admission: admission.New(admission.Config{MaxConcurrent: lim.MaxConcurrentQueries, MaxPerPrincipal: lim.MaxConcurrentPerPrincipal,
			QueueWait: lim.QueueWait, Rate: lim.PrincipalRate, Now: opts.Now}),
	})
	if err != nil {
		return nil, err
	}
	n.registerLiveMetrics()
	n.SQL = sqlop.New(n.Engine, n.Store, maskSecret)
	n.SQL.Route = func(m *workspace.Manifest) (engine.Engine, string) {
		if m.Source.Postgres != "" {
			return n.PGEngines[m.Source.Postgres], qualifiedName(m.Source.Table)
		}
		return n.Engine, query.QuoteIdent(m.Name)
	}
	n.Export = &exportop.Service{Route: func(m *workspace.Manifest) (engine.Engine, string) { return n.SQL.Route(m) }, Key: n.Key,
		Registry: n.Store, Noise: dp.NewSampler(rand.Reader), WorkspaceDir: ws.Dir}
	n.Peers = &federation.Client{Key: n.Key, Now: opts.Now, Window: ws.Config.Federation.Window}
	n.SQL.Federation = &federation.Federator{Client: n.Peers}
	n.Collab = &collab.Service{Route: n.SQL.Route, Key: n.Key, Client: n.Peers, Kernel: n.Kernel, Noise: dp.NewSampler(rand.Reader)}
	n.Jobs = &fedjob.Service{Route: n.SQL.Route, Key: n.Key, Client: n.Peers, Kernel: n.Kernel, Noise: dp.NewSampler(rand.Reader)}
	n.Witness = &federation.Witness{Key: n.Key, Client: n.Peers, Store: n.Store, Kernel: n.Kernel, Log: opts.Log.With("component", "witness"),
		Forks: func(string) { n.forks.Add(1) }}
	n.Auth = &identity.Authenticator{
		Tokens:    n.storeGuard,
		Principal: func(name string) *workspace.Principal { return n.Kernel.Snapshot().WS.Principals[name] },
		Now:       opts.Now,
	}
	if j := ws.Config.Auth.JWT; j != nil {
		path := j.JWKSFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(ws.Dir, path)
		}
		if n.Auth.JWT, err = identity.NewJWTVerifier(*j, path); err != nil {
			return nil, err
		}
	}
	ok = true
	return n, nil
}

// LocalKernel is a kernel over a workspace's state without serving: for
// the CLI's operations on the node itself (revocation), so they are
// decided and audited like any other.
func LocalKernel(ws *workspace.Workspace, st store.Store, lg *audit.Log) (*govern.Kernel, error) {
	pol, err := policy.Load(ws.Policies)
	if err != nil {
		return nil, err
	}
	return govern.New(&govern.Snapshot{WS: ws, Policy: pol}, govern.Config{Audit: lg, Ledger: st})
}

// LoadEngine loads every file-backed dataset into a fresh embedded DuckDB
// and locks it down, logging each load's progress and figures.
func LoadEngine(ctx context.Context, ws *workspace.Workspace, log *slog.Logger) (*duckdb.DB, error) {
	eng, err := duckdb.Open(duckdb.Config{MemoryLimit: ws.Config.Limits.MemoryLimit, Threads: ws.Config.Limits.Threads})
	if err != nil {
		return nil, err
	}
	for _, m := range sortedDatasets(ws) {
		if m.Source.File == "" {
			continue // governed in place in the owner's PostgreSQL
		}
		cols := loadSpecs(m)
		file := m.Source.File
		if !filepath.IsAbs(file) {
			file = filepath.Join(ws.Dir, file)
		}
		if err := loadLogged(ctx, eng, m, file, cols, log); err != nil {
			eng.Close()
			return nil, fmt.Errorf("%s: %w", m.File, err)
		}
	}
	if err := eng.Lockdown(); err != nil {
		eng.Close()
		return nil, err
	}
	return eng, nil
}

// loadLogged loads one dataset, saying so while it runs (every 10 s: the
// time so far and, from the file's size and the previous datasets'
// throughput, an estimate of what is left) and with its figures when done.
func loadLogged(ctx context.Context, eng *duckdb.DB, m *workspace.Manifest, file string, cols []duckdb.ColumnSpec, log *slog.Logger) error {
	var size int64
	if fi, err := os.Stat(file); err == nil {
		size = fi.Size()
	}
	log.Info("loading dataset", "dataset", m.Name, "file", m.Source.File, "mb", size>>20)
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				args := []any{"dataset", m.Name, "elapsed_s", int(time.Since(start).Seconds())}
				if bps := loadThroughput.Load(); bps > 0 && size > 0 {
					eta := time.Duration(float64(size)/float64(bps)*float64(time.Second)) - time.Since(start)
					args = append(args, "eta_s", int(max(0, eta.Seconds())))
				}
				log.Info("still loading", args...)
			}
		}
	}()
	err := eng.LoadTable(ctx, m.Name, file, cols)
	close(done)
	if err != nil {
		return err
	}
	took := time.Since(start)
	rows, _ := eng.RowCount(ctx, m.Name)
	if took > 0 && size > 0 {
		loadThroughput.Store(int64(float64(size) / took.Seconds()))
	}
	log.Info("loaded dataset", "dataset", m.Name, "rows", rows, "seconds", fmt.Sprintf("%.1f", took.Seconds()),
		"rows_per_s", int(float64(rows)/max(took.Seconds(), 1e-3)))
	return nil
}

// loadThroughput is the bytes per second of the last load, for estimates.
var loadThroughput atomic.Int64

// loadSpecs is how a manifest's columns load into DuckDB; the privacy unit
// also gets its hidden surrogate id.
func loadSpecs(m *workspace.Manifest) []duckdb.ColumnSpec {
	var cols []duckdb.ColumnSpec
	for _, c := range m.Columns {
		cols = append(cols, duckdb.ColumnSpec{Name: c.Name, Type: c.Type, Unit: c.Name == m.PrivacyUnit})
	}
	return cols
}

func sortedDatasets(ws *workspace.Workspace) []*workspace.Manifest {
	var out []*workspace.Manifest
	for _, name := range slices.Sorted(maps.Keys(ws.Datasets)) {
		out = append(out, ws.Datasets[name])
	}
	return out
}

// qualifiedName quotes a possibly schema-qualified table name.
func qualifiedName(table string) string {
	parts := strings.Split(table, ".")
	for i, p := range parts {
		parts[i] = query.QuoteIdent(p)
	}
	return strings.Join(parts, ".")
}

// checkSharedKeys makes replicas that share a state store share keys: the
// first node records its audit verifier key and a check value of its mask
// key in the store, and a node whose keys differ refuses to start (its
// checkpoints would not verify against the others', its pseudonyms would
// not match theirs). The mask key itself never leaves the node.
func checkSharedKeys(ctx context.Context, st store.Store, verifier string, maskSecret []byte) error {
	m := hmac.New(sha256.New, maskSecret)
	m.Write([]byte("airlock mask key check"))
	for _, c := range []struct{ name, value, file string }{
		{"audit.verifier_key", verifier, "node.key"},
		{"mask.key_check", hex.EncodeToString(m.Sum(nil)), "mask.key"},
	} {
		got, err := st.Claim(ctx, c.name, c.value)
		if err != nil {
			return fmt.Errorf("state store: %w", err)
		}
		if got != c.value {
			return fmt.Errorf("%s of this node differs from the one the nodes sharing this state store use: copy <data_dir>/%s from a running replica", c.file, c.file)
		}
	}
	return nil
}

func loadOrCreateSecret(path string) ([]byte, error) {
	return keys.LoadOrCreate(path, func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	}, func(b []byte) error {
		if len(b) != 32 {
			return fmt.Errorf("%d bytes, want 32", len(b))
		}
		return nil
	})
}

// Listen binds the HTTP address (so callers learn the port before Serve).
func (n *Node) Listen() (net.Addr, error) {
	l, err := net.Listen("tcp", n.opts.HTTPAddr)
	if err != nil {
		return nil, err
	}
	n.listener = l
	return l.Addr(), nil
}

// ListenPG binds the Postgres wire address; nil if the endpoint is off.
func (n *Node) ListenPG() (net.Addr, error) {
	if n.opts.PGAddr == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", n.opts.PGAddr)
	if err != nil {
		return nil, err
	}
	lim := n.WS.Config.Limits
	srv, err := pgwire.New(n.Kernel, n.SQL, n.Auth, n.opts.Log.With("component", "pgwire"), n.opts.PGTLS, pgwire.Limits{
		MaxConns: lim.MaxConnections, MaxConnsPerClient: lim.MaxConnectionsPerClient,
		HandshakeTimeout: lim.HandshakeTimeout, MaxMessageBytes: lim.WireMessageBytes,
	})
	if err != nil {
		l.Close()
		return nil, err
	}
	n.pgLis, n.pg = l, srv
	return l.Addr(), nil
}

// ListenPeer binds the peer endpoint (mutual TLS with the node key); nil
// if it is off.
func (n *Node) ListenPeer() (net.Addr, error) {
	addr := n.opts.PeerAddr
	if addr == "" {
		addr = n.WS.Config.Federation.Listen
	}
	if addr == "" {
		return nil, nil
	}
	cfg, err := n.Key.ServerTLS(n.opts.Now())
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	lim := n.WS.Config.Limits
	bounded, err := netlimit.Wrap(l, netlimit.Config{MaxConns: lim.MaxConnections, MaxConnsPerClient: lim.MaxConnectionsPerClient,
		Reject: func(c net.Conn, _ string) {}})
	if err != nil {
		l.Close()
		return nil, err
	}
	member := &federation.Member{Kernel: n.Kernel, SQL: n.SQL, Audit: n.Audit, Store: n.Store, Key: n.Key,
		Log: n.opts.Log.With("component", "peer"), Witness: n.Witness, Routes: n.peerRoutes(), Public: n.Collab.PublicRoutes()}
	n.peerLis = tls.NewListener(bounded, cfg)
	n.peerSrv = &http.Server{Handler: member.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: lim.HTTPReadTimeout,
		WriteTimeout: lim.QueryTimeout + 30*time.Second, IdleTimeout: lim.HTTPIdleTimeout, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(n.opts.Log.With("component", "peer").Handler(), slog.LevelDebug)}
	return l.Addr(), nil
}

// WitnessPeers cosigns every peer's current checkpoint once (see
// federation.Witness); errors are per peer.
func (n *Node) WitnessPeers(ctx context.Context) map[string]error {
	peers := n.Kernel.Snapshot().WS.Peers
	var all []*workspace.Peer
	for _, name := range slices.Sorted(maps.Keys(peers)) {
		all = append(all, peers[name])
	}
	out := map[string]error{}
	for _, p := range all {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := n.Witness.WitnessPeer(pctx, p, all); err != nil {
			out[p.Name] = err
		}
		cancel()
	}
	return out
}

func (n *Node) witnessLoop(ctx context.Context) {
	t := time.NewTicker(n.WS.Config.Federation.WitnessEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for peer, err := range n.WitnessPeers(ctx) {
				n.log.Warn("witnessing a peer failed", "peer", peer, "err", err)
			}
		}
	}
}

// Handler is the node's HTTP handler.
func (n *Node) Handler() http.Handler {
	api := &httpapi.Server{Kernel: n.Kernel, SQL: n.SQL, Auth: n.Auth, Log: n.opts.Log.With("component", "http"),
		AccessLog: n.opts.AccessLog, Leaves: n.Store, Revocations: n.Store, Audit: n.Audit, Metrics: n.Metrics.Handler()}
	api.Extra = append(api.Extra, n.readinessRoute, n.cosignedRoute, n.exportRoute, n.collabRoute, n.jobsRoute)
	h := api.Handler()
	n.routes = api.Routes()
	return h
}

// Routes are the HTTP routes the node serves (method and path pattern).
func (n *Node) Routes() []string { return n.routes }

// registerLiveMetrics exposes the counters the edge keeps, read at each
// scrape (listeners and the breaker exist only once the node serves).
func (n *Node) registerLiveMetrics() {
	m := n.Metrics
	for _, l := range []struct {
		name  string
		stats func() netlimit.Stats
	}{
		{"http", func() netlimit.Stats {
			if n.httpLis == nil {
				return netlimit.Stats{}
			}
			return n.httpLis.Stats()
		}},
		{"wire", func() netlimit.Stats {
			if n.pg == nil {
				return netlimit.Stats{}
			}
			return n.pg.Stats()
		}},
	} {
		labels := prometheus.Labels{"listener": l.name}
		m.Gauge("airlock_connections_open", "Connections a listener holds.", labels, func() float64 { return float64(l.stats().Open) })
		m.Counter("airlock_connections_refused_total", "Connections refused over a listener's limits.", labels, func() float64 { return float64(l.stats().Rejected) })
	}
	m.Gauge("airlock_workspace_reload_failing", "1 while the workspace files on disk do not load (the previous workspace stays in force).", nil, func() float64 {
		if n.ReloadError() != "" {
			return 1
		}
		return 0
	})
	m.Counter("airlock_workspace_reload_failures_total", "Workspace edits that did not load.", nil, func() float64 {
		n.mu.Lock()
		defer n.mu.Unlock()
		return float64(n.reloadFailures)
	})
	history := func(f func(differencing.Stats) int) func() float64 {
		return func() float64 {
			if n.SQL == nil || n.SQL.History == nil {
				return 0
			}
			return float64(f(n.SQL.History.Stats()))
		}
	}
	m.Gauge("airlock_differencing_history_answers", "Aggregation answers the differencing check holds in memory, over all agreements.", nil, history(func(s differencing.Stats) int { return s.Answers }))
	m.Gauge("airlock_differencing_history_cells", "Distinct released cells the differencing check compares against.", nil, history(func(s differencing.Stats) int { return s.Cells }))
	m.Gauge("airlock_differencing_history_bytes", "Memory of the differencing check's sketches.", nil, history(func(s differencing.Stats) int { return s.Bytes }))
	m.Counter("airlock_witness_forks_total", "Peers' audit logs found forked while witnessing them.", nil, func() float64 { return float64(n.forks.Load()) })
	m.Gauge("airlock_wire_sessions", "Authenticated Postgres wire sessions open now.", nil, func() float64 {
		if n.pg == nil {
			return 0
		}
		return float64(n.pg.Sessions())
	})
	for v, reason := range map[admission.Verdict]string{admission.NodeBusy: "node", admission.PrincipalBusy: "principal_concurrency", admission.PrincipalRate: "principal_rate"} {
		m.Counter("airlock_admission_refused_total", "Requests refused by admission control.", prometheus.Labels{"reason": reason},
			func() float64 { return float64(n.Kernel.Admission().Refused()[v]) })
	}
	m.Counter("airlock_panics_total", "Panics recovered in a channel's handlers.", prometheus.Labels{"channel": "http"}, func() float64 { return float64(httpapi.Panics.Load()) })
	m.Counter("airlock_panics_total", "Panics recovered in a channel's handlers.", prometheus.Labels{"channel": "wire"}, func() float64 { return float64(pgwire.Panics.Load()) })
	m.Gauge("airlock_store_breaker_open", "1 while the state store's circuit breaker is open.", nil, func() float64 {
		if open, _ := n.storeGuard.b.State(); open {
			return 1
		}
		return 0
	})
	m.Counter("airlock_store_breaker_trips_total", "Times the state store's circuit breaker opened.", nil, func() float64 {
		_, trips := n.storeGuard.b.State()
		return float64(trips)
	})
}

// guardedTokens is the token lookup every request makes first, behind a
// circuit breaker: while the state store is down, requests are answered 503
// at once (identity reports a failed lookup, not a bad token) instead of
// each opening a store connection, and probes back off up to 5 s.
type guardedTokens struct {
	lookup identity.TokenLookup
	b      *breaker.Breaker
}

func (g *guardedTokens) TokenByHash(ctx context.Context, hash []byte) (store.Token, error) {
	var tok store.Token
	err := g.b.Do(func() error {
		var err error
		tok, err = g.lookup.TokenByHash(ctx, hash)
		return err
	}, func(err error) bool { return !errors.Is(err, store.ErrNotFound) })
	return tok, err
}

// guardedLeaves is the audit log's store behind the store's breaker.
type guardedLeaves struct {
	store.Store
	b *breaker.Breaker
}

func (g guardedLeaves) AppendLeaves(ctx context.Context, data [][]byte, hashes [][32]byte) (uint64, error) {
	var first uint64
	err := g.b.Do(func() error {
		var err error
		first, err = g.Store.AppendLeaves(ctx, data, hashes)
		return err
	}, func(error) bool { return true })
	return first, err
}

// readinessRoute serves GET /readyz: 200 when the state store answers a
// lookup, 503 naming the store while it does not. /healthz stays 200 as
// long as the process serves.
func (n *Node) readinessRoute(mux httpapi.Router, _ func(share.OpKind, httpapi.Handler) http.Handler) {
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		var probe [32]byte
		rand.Read(probe[:])
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := n.storeGuard.TokenByHash(ctx, probe[:]); err != nil && !errors.Is(err, store.ErrNotFound) {
			w.Header().Set("Retry-After", "1")
			httpapi.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "store": "unreachable"})
			return
		}
		body := map[string]any{"status": "ready", "workspace_version": n.Kernel.Snapshot().Version()}
		if e := n.ReloadError(); e != "" {
			// Still ready: the previous workspace serves. Operators see why
			// their edit is not in force.
			body["workspace_reload_error"] = e
		}
		httpapi.WriteJSON(w, http.StatusOK, body)
	})
}

// cosignedRoute serves GET /v1/audit/checkpoint/cosigned: the latest
// checkpoint peers have cosigned, with their cosignature lines (404 if
// none yet). Like the checkpoint, it is public and not audited.
func (n *Node) cosignedRoute(mux httpapi.Router, wrap func(share.OpKind, httpapi.Handler) http.Handler) {
	mux.Handle("GET /v1/audit/checkpoint/cosigned", wrap("", func(w http.ResponseWriter, r *http.Request, _ share.Caller) error {
		signed, err := federation.CosignedCheckpoint(r.Context(), n.Audit, n.Store, n.Verifier)
		if err != nil {
			return refusal.AuditUnavailable().WithCause(err)
		}
		if signed == nil {
			return refusal.New(refusal.NotFound, "witness.none", "no peer has cosigned a checkpoint of this node yet")
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(signed)
		return nil
	}))
}

// exportRoute serves POST /v1/exports: a governed release of a dataset,
// decided, charged and audited by the kernel like a query.
func (n *Node) exportRoute(mux httpapi.Router, wrap func(share.OpKind, httpapi.Handler) http.Handler) {
	mux.Handle("POST /v1/exports", wrap(share.OpExport, func(w http.ResponseWriter, r *http.Request, c share.Caller) error {
		var body exportop.Body
		if err := httpapi.DecodeJSON(http.MaxBytesReader(w, r.Body, httpapi.MaxBody), &body, "one JSON export request (see docs/export.md)"); err != nil {
			return n.Kernel.Refuse(r.Context(), govern.Request{Caller: c, Op: govern.Edge(share.OpExport)}, refusal.As(err))
		}
		res, err := n.Kernel.Do(r.Context(), govern.Request{Caller: c, Purpose: body.Purpose, Agreement: body.Agreement, Op: n.Export.Export(body.Request)})
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"release": res.Value, "request_id": res.RequestID, "audit_index": res.AuditIndex})
		return nil
	}))
	mux.Handle("GET /v1/exports", wrap(share.OpExportList, func(w http.ResponseWriter, r *http.Request, c share.Caller) error {
		res, err := n.Kernel.Do(r.Context(), govern.Request{Caller: c, Op: n.Export.List(r.URL.Query().Get("dataset"))})
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"releases": res.Value, "request_id": res.RequestID})
		return nil
	}))
}

// collabRoute serves POST /v1/collaborations/{id}/query: a member's
// clean-room query, run with the partner's node by the private join.
func (n *Node) collabRoute(mux httpapi.Router, wrap func(share.OpKind, httpapi.Handler) http.Handler) {
	mux.Handle("POST /v1/collaborations/{id}/query", wrap(share.OpCollabQuery, func(w http.ResponseWriter, r *http.Request, c share.Caller) error {
		var body collab.QueryRequest
		if err := httpapi.DecodeJSON(http.MaxBytesReader(w, r.Body, httpapi.MaxBody), &body, "one JSON query {sql | template, params, purpose} (see docs/cleanrooms.md)"); err != nil {
			return n.Kernel.Refuse(r.Context(), govern.Request{Caller: c, Op: govern.Edge(share.OpCollabQuery)}, refusal.As(err))
		}
		body.Collaboration = r.PathValue("id")
		res, err := n.Kernel.Do(r.Context(), govern.Request{Caller: c, Purpose: body.Purpose, Op: n.Collab.Query(body)})
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"result": res.Value, "request_id": res.RequestID, "audit_index": res.AuditIndex})
		return nil
	}))
}

// peerRoutes are every signed peer operation beyond federated SQL.
func (n *Node) peerRoutes() map[string]federation.Route {
	routes := n.Collab.PeerRoutes()
	maps.Copy(routes, n.Jobs.PeerRoutes())
	return routes
}

// jobsRoute serves POST /v1/jobs/run: a federated job run by this node as
// its coordinator, its progress streamed as one JSON object per line (a
// round's result, then the end with the model and the privacy spent per
// member). A refusal before the first round is an ordinary error answer;
// a later one ends the stream with an error line.
func (n *Node) jobsRoute(mux httpapi.Router, wrap func(share.OpKind, httpapi.Handler) http.Handler) {
	mux.Handle("POST /v1/jobs/run", wrap(share.OpSecaggRound, func(w http.ResponseWriter, r *http.Request, c share.Caller) error {
		var body struct {
			Job     string `json:"job"`
			Purpose string `json:"purpose"`
		}
		if err := httpapi.DecodeJSON(http.MaxBytesReader(w, r.Body, httpapi.MaxBody), &body, "one JSON object {job: the job file's text, purpose}"); err != nil {
			return n.Kernel.Refuse(r.Context(), govern.Request{Caller: c, Op: govern.Edge(share.OpSecaggRound)}, refusal.As(err))
		}
		j, err := fedjob.Parse([]byte(body.Job))
		if err != nil {
			return n.Kernel.Refuse(r.Context(), govern.Request{Caller: c, Purpose: body.Purpose, Op: govern.Edge(share.OpSecaggRound)},
				refusal.New(refusal.BadSQL, "job.file", "%s", err.Error()))
		}
		started := false
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		err = n.Jobs.RunJob(r.Context(), c, body.Purpose, j, func(e fedjob.Event) error {
			// A job outlives one query's write timeout; each line extends it.
			http.NewResponseController(w).SetWriteDeadline(time.Now().Add(n.WS.Config.Limits.QueryTimeout + 30*time.Second))
			if !started {
				w.Header().Set("Content-Type", "application/x-ndjson")
				w.WriteHeader(http.StatusOK)
				started = true
			}
			if err := enc.Encode(e); err != nil {
				return err
			}
			if flusher != nil {
				flusher.Flush()
			}
			return nil
		})
		if err != nil && started {
			re := refusal.As(err)
			enc.Encode(map[string]any{"error": map[string]any{"code": re.Code, "rule": re.Rule, "message": re.Message}, "request_id": c.RequestID})
			return nil
		}
		return err
	}))
}

// Serve runs the HTTP server, the checkpointer and the reloader until ctx
// ends, then shuts down gracefully.
func (n *Node) Serve(ctx context.Context) error {
	if n.listener == nil {
		if _, err := n.Listen(); err != nil {
			return err
		}
	}
	lim := n.WS.Config.Limits
	// A slow or idle client is dropped: the header within 10 s, the whole
	// request (body at most 1 MiB) within the read timeout, the answer
	// within the query timeout plus a margin, an idle keep-alive
	// connection after the idle timeout.
	n.http = &http.Server{Handler: n.Handler(), ReadHeaderTimeout: min(10*time.Second, lim.HTTPReadTimeout), ReadTimeout: lim.HTTPReadTimeout,
		WriteTimeout: lim.QueryTimeout + 30*time.Second, IdleTimeout: lim.HTTPIdleTimeout, MaxHeaderBytes: 64 << 10}
	httpLis, err := netlimit.Wrap(n.listener, netlimit.Config{MaxConns: lim.MaxConnections, MaxConnsPerClient: lim.MaxConnectionsPerClient,
		Reject: func(c net.Conn, _ string) {
			body := `{"error":{"code":"unavailable","rule":"limit.connections","message":"too many connections; retry"}}`
			fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go n.Audit.RunCheckpointer(ctx, n.WS.Config.Node.CheckpointInterval)
	go n.reloadLoop(ctx)
	errc := make(chan error, 2)
	n.httpLis = httpLis
	go func() { errc <- n.http.Serve(httpLis) }()
	if n.pg != nil {
		go func() { errc <- n.pg.Serve(n.pgLis) }()
	}
	if n.peerSrv != nil {
		go func() { errc <- n.peerSrv.Serve(n.peerLis) }()
		go n.witnessLoop(ctx)
	}
	select {
	case <-ctx.Done():
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		n.http.Shutdown(sctx)
		if n.peerSrv != nil {
			n.peerSrv.Shutdown(sctx)
		}
		n.Peers.Close()
		if n.pg != nil {
			n.pg.Close()
		}
		n.Audit.Checkpoint(sctx)
		return nil
	case err := <-errc:
		return err
	}
}

// Reload re-reads the workspace and swaps policies, agreements and
// principals in. Dataset changes need a restart (the engine is locked).
func (n *Node) Reload() error {
	ws, err := workspace.Load(n.opts.Workspace)
	if err != nil {
		return err
	}
	pol, err := policy.Load(ws.Policies)
	if err != nil {
		return err
	}
	n.mu.Lock()
	prev := n.wsNow
	n.wsNow = ws
	n.mu.Unlock()
	for name, m := range ws.Datasets {
		if old := prev.Datasets[name]; old == nil || fmt.Sprint(*old) != fmt.Sprint(*m) {
			n.log.Warn("dataset manifests changed; restart the server to reload data", "dataset", name)
		}
	}
	// Keep the loaded manifests: the engine still holds the old tables.
	ws.Datasets = n.WS.Datasets
	snap := &govern.Snapshot{WS: ws, Policy: pol}
	n.Kernel.Swap(snap)
	n.setReloadError(nil)
	n.log.Info("workspace reloaded", "workspace_version", snap.Version(), "policy_version", pol.Version())
	return nil
}

// setReloadError records why the workspace on disk does not load (nil:
// it does, or it is the one in force), for /readyz and the metrics.
func (n *Node) setReloadError(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err == nil {
		n.reloadErr = ""
		return
	}
	n.reloadErr = err.Error()
	n.reloadFailures++
}

// ReloadError is why the workspace files on disk do not load, or "".
func (n *Node) ReloadError() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reloadErr
}

// reloadOrReport reloads the workspace if its files changed (or always,
// on SIGHUP). A change that does not load is logged once per distinct
// content, with each problem's file and line, and shown by /readyz and the
// metrics until fixed; the previous workspace stays in force meanwhile.
func (n *Node) reloadOrReport(force bool) {
	ws, err := workspace.Load(n.opts.Workspace)
	n.mu.Lock()
	digest := ""
	if ws != nil {
		digest = ws.Digest
	}
	changed := digest != n.wsNow.Digest && digest != n.failedDigest
	if err != nil {
		n.failedDigest = digest
	}
	n.mu.Unlock()
	if !changed && !force {
		return
	}
	if err == nil {
		err = n.Reload()
	}
	if err != nil {
		n.setReloadError(err)
		n.log.Error("the workspace on disk does not load; the previous one stays in force until it is fixed", "problems", err.Error())
	}
}

func (n *Node) reloadLoop(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(n.opts.ReloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			n.reloadOrReport(true)
		case <-t.C:
			n.reloadOrReport(false)
		}
	}
}

// Close releases everything.
func (n *Node) Close() {
	if n.listener != nil {
		n.listener.Close()
	}
	if n.peerLis != nil {
		n.peerLis.Close()
	}
	if n.Audit != nil {
		n.Audit.Close()
	}
	if n.Engine != nil {
		n.Engine.Close()
	}
	for _, e := range n.PGEngines {
		e.Close()
	}
	if n.Store != nil {
		n.Store.Close()
	}
}
