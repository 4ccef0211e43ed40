// Package cli is the airlock command line: a table of subcommands, their
// flags and exit codes (0 ok, 1 failure or refusal, 2 usage).
package cli

import (
	"log/slog"

	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"github.com/airlock-dev/airlock/internal/adminop"
	"github.com/airlock-dev/airlock/internal/govern"
	"github.com/airlock-dev/airlock/internal/share"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/identity"
	"github.com/airlock-dev/airlock/internal/policy"
	"github.com/airlock-dev/airlock/internal/server"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

type command struct {
	name, summary string
	run           func(args []string, out, errw io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the server: serve --workspace DIR [--http ADDR] [--pg ADDR] [--pg-tls-cert PEM --pg-tls-key PEM] [--store DSN]", serve},
		{"token create", "mint an API token: token create --workspace DIR --principal NAME [--ttl 720h]", tokenCreate},
		{"token revoke", "revoke an API token: token revoke --workspace DIR --id ID", tokenRevoke},
		{"query", "ask a question: query --server URL --token T --purpose P [--agreement A] [--plan] [--json] SQL", runQuery},
		{"validate", "check a workspace against its data: validate DIR", validate},
		{"agreement revoke", "revoke an agreement at once: agreement revoke --workspace DIR [--by NAME] [--reason R] ID", agreementRevoke},
		{"policy test", "run policy test cases: policy test DIR", policyTest},
		{"audit verify", "verify the audit log: audit verify (--server URL --token T | --workspace DIR | --log EXPORT.jsonl --checkpoint CP) --since FILE [--pubkey KEY|FILE]", auditVerify},
		{"audit reconcile", "check that every budget and quota charge is explained by an audit entry: audit reconcile --workspace DIR [--store DSN]", auditReconcile},
		{"audit export", "export the audit log as JSON lines: audit export --workspace DIR [--checkpoint FILE] [--principal P] [--dataset D] [--decision allow|deny] [--since RFC3339]", auditExport},
		{"demo init", "write the demo workspace: demo init DIR", demoInit},
	}
}

// Main runs the command line and returns the exit code.
func Main(args []string, out, errw io.Writer) int {
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			err := c.run(args[len(words):], out, errw)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp):
				fmt.Fprintf(errw, "usage: airlock %s\n", c.summary)
				return 2
			default:
				fmt.Fprintln(errw, "airlock:", err)
				return 1
			}
		}
	}
	fmt.Fprintln(errw, "airlock — governed access to sensitive data\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(errw, "  %-18s %s\n", c.name, c.summary)
	}
	return 2
}

func flags(name string, errw io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(errw)
	return fs
}

// parse allows flags after positional arguments too.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func serve(args []string, out, errw io.Writer) error {
	fs := flags("serve", errw)
	dir := fs.String("workspace", "", "workspace directory")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP listen address")
	pgAddr := fs.String("pg", "127.0.0.1:5433", "Postgres wire listen address (empty = off)")
	dsn := fs.String("store", "", "state store DSN (postgres://...); default: embedded SQLite in the data dir")
	certFile := fs.String("pg-tls-cert", "", "PEM certificate for TLS on the Postgres wire endpoint")
	keyFile := fs.String("pg-tls-key", "", "PEM private key for --pg-tls-cert")
	accessLog := fs.String("access-log", "text", "HTTP access log on stderr: text, json or off")
	if _, err := parse(fs, args); err != nil || *dir == "" || (*certFile == "") != (*keyFile == "") {
		return errUsage
	}
	var access *slog.Logger
	switch *accessLog {
	case "text":
		access = slog.New(slog.NewTextHandler(errw, nil))
	case "json":
		access = slog.New(slog.NewJSONHandler(errw, nil))
	case "off":
	default:
		return errUsage
	}
	var pgTLS *tls.Config
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("--pg-tls-cert: %w", err)
		}
		pgTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := server.Open(ctx, server.Options{Workspace: *dir, HTTPAddr: *httpAddr, PGAddr: *pgAddr, PGTLS: pgTLS, StoreDSN: *dsn, AccessLog: access})
	if err != nil {
		return err
	}
	defer n.Close()
	addr, err := n.Listen()
	if err != nil {
		return err
	}
	pgA, err := n.ListenPG()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "airlock %s listening on http://%s (workspace %s, policy %s)\n", n.WS.Config.Node.Name, addr, *dir, n.Kernel.Snapshot().Policy.Version()[:19])
	if pgA != nil {
		fmt.Fprintf(out, "postgres wire on %s: psql \"host=%s port=%d user=PRINCIPAL password=TOKEN options='-c airlock.purpose=research'\"\n", pgA, pgA.(*net.TCPAddr).IP, pgA.(*net.TCPAddr).Port)
	}
	fmt.Fprintf(out, "audit log verifier key: %s\n\nget a token for a principal with:\n", n.Verifier)
	for _, p := range sortedPrincipals(n.WS) {
		fmt.Fprintf(out, "  airlock token create --workspace %s --principal %s\n", *dir, p)
	}
	fmt.Fprintf(out, "then: airlock query --server http://%s --token TOKEN --purpose research \"SELECT diagnosis, count(*) FROM visits GROUP BY diagnosis\"\n", addr)
	return n.Serve(ctx)
}

func sortedPrincipals(ws *workspace.Workspace) []string {
	var out []string
	for name := range ws.Principals {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// openState loads a workspace and its state store, for offline commands.
func openState(dir, dsn string) (*workspace.Workspace, store.Store, error) {
	ws, err := workspace.Load(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("workspace %s:\n%w", dir, err)
	}
	st, err := server.OpenStore(context.Background(), ws, dsn, "")
	return ws, st, err
}

func tokenCreate(args []string, out, errw io.Writer) error {
	fs := flags("token create", errw)
	dir := fs.String("workspace", "", "workspace directory")
	name := fs.String("principal", "", "principal name")
	ttl := fs.Duration("ttl", 30*24*time.Hour, "lifetime (0 = no expiry)")
	dsn := fs.String("store", "", "state store DSN")
	if _, err := parse(fs, args); err != nil || *dir == "" || *name == "" {
		return errUsage
	}
	ws, st, err := openState(*dir, *dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	if ws.Principals[*name] == nil {
		return fmt.Errorf("principal %q is not declared in %s", *name, filepath.Join(*dir, "principals.yaml"))
	}
	tok, id, hash, err := identity.NewToken()
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	rec := store.Token{ID: id, Hash: hash, Principal: *name, CreatedAt: now}
	if *ttl > 0 {
		rec.ExpiresAt = now.Add(*ttl)
	}
	if err := st.PutToken(context.Background(), rec); err != nil {
		return err
	}
	fmt.Fprintln(out, tok)
	return nil
}

func tokenRevoke(args []string, out, errw io.Writer) error {
	fs := flags("token revoke", errw)
	dir := fs.String("workspace", "", "workspace directory")
	id := fs.String("id", "", "token id (the hex part after alk_)")
	dsn := fs.String("store", "", "state store DSN")
	if _, err := parse(fs, args); err != nil || *dir == "" || *id == "" {
		return errUsage
	}
	_, st, err := openState(*dir, *dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeToken(context.Background(), *id, time.Now()); err != nil {
		return err
	}
	fmt.Fprintln(out, "revoked token", *id)
	return nil
}

func runQuery(args []string, out, errw io.Writer) error {
	fs := flags("query", errw)
	srv := fs.String("server", "http://127.0.0.1:8080", "server URL")
	tok := fs.String("token", os.Getenv("AIRLOCK_TOKEN"), "bearer token (or $AIRLOCK_TOKEN)")
	purpose := fs.String("purpose", "", "purpose of the query")
	ag := fs.String("agreement", "", "agreement to act under (when several apply)")
	plan := fs.Bool("plan", false, "dry run: show the plan and its cost, run nothing")
	asJSON := fs.Bool("json", false, "print the JSON response")
	pos, err := parse(fs, args)
	if err != nil || len(pos) != 1 || *tok == "" {
		return errUsage
	}
	path := "/v1/query"
	if *plan {
		path = "/v1/query/plan"
	}
	body := map[string]any{"sql": pos[0], "purpose": *purpose}
	if *ag != "" {
		body["agreement"] = *ag
	}
	if *asJSON {
		var raw []byte
		if err := call("POST", strings.TrimRight(*srv, "/")+path, *tok, body, &raw); err != nil {
			return err
		}
		out.Write(raw)
		return nil
	}
	var res queryResult
	if err := call("POST", strings.TrimRight(*srv, "/")+path, *tok, body, &res); err != nil {
		return err
	}
	if *plan {
		fmt.Fprintf(out, "access: %s\nagreement: %s\n", res.Access, res.Agreement)
		for k, v := range res.Plan {
			fmt.Fprintf(out, "%s: %v\n", k, v)
		}
		printDP(out, res.DP)
		return nil
	}
	printTable(out, &res)
	return nil
}

func validate(args []string, out, errw io.Writer) error {
	pos, err := parse(flags("validate", errw), args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	probs, err := server.Validate(context.Background(), pos[0])
	if err != nil {
		return err
	}
	for _, p := range probs {
		fmt.Fprintln(out, p.String())
	}
	if len(probs) > 0 {
		return fmt.Errorf("%d problem(s) in %s", len(probs), pos[0])
	}
	ws, err := workspace.Load(pos[0])
	if err != nil {
		return err
	}
	// The version every audit entry records for decisions under these files.
	fmt.Fprintf(out, "%s: ok (workspace version sha256:%s)\n", pos[0], ws.Digest)
	return nil
}

func agreementRevoke(args []string, out, errw io.Writer) error {
	fs := flags("agreement revoke", errw)
	dir := fs.String("workspace", "", "workspace directory")
	by := fs.String("by", "", "who revokes (recorded in the audit log)")
	reason := fs.String("reason", "", "why")
	dsn := fs.String("store", "", "state store DSN")
	pos, err := parse(fs, args)
	if err != nil || *dir == "" || len(pos) != 1 {
		return errUsage
	}
	n, err := openAudit(*dir, *dsn)
	if err != nil {
		return err
	}
	defer n.close()
	a := n.ws.Agreements[pos[0]]
	if a == nil {
		return fmt.Errorf("agreement %q is not declared in %s", pos[0], *dir)
	}
	if *by == "" {
		*by = "cli:" + os.Getenv("USER")
	}
	k, err := server.LocalKernel(n.ws, n.st, n.log)
	if err != nil {
		return err
	}
	caller := share.Caller{Identity: share.Identity{Principal: *by}, Channel: "cli"}
	if _, err := k.Do(context.Background(), govern.Request{Caller: caller, Op: adminop.Revoke(n.st, a.ID, *reason, true)}); err != nil {
		return err
	}
	fmt.Fprintf(out, "agreement %s revoked; it takes effect on the next request\n", a.ID)
	return nil
}

func policyTest(args []string, out, errw io.Writer) error {
	pos, err := parse(flags("policy test", errw), args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	ws, err := workspace.Load(pos[0])
	if err != nil {
		return err
	}
	pol, err := policy.Load(ws.Policies)
	if err != nil {
		return err
	}
	total, failed := 0, 0
	for _, name := range sortedKeysBytes(ws.PolicyTests) {
		res, err := policy.RunTests(pol, name, ws.PolicyTests[name], server.PolicyPrincipalLookup(ws), server.PolicyResourceLookup(ws))
		if err != nil {
			return err
		}
		for _, r := range res {
			total++
			status := "PASS"
			if !r.Passed {
				failed++
				status = "FAIL"
			}
			fmt.Fprintf(out, "%s  %s: %s", status, name, r.Name)
			if r.Detail != "" {
				fmt.Fprintf(out, " — %s", r.Detail)
			}
			fmt.Fprintln(out)
		}
	}
	fmt.Fprintf(out, "%d passed, %d failed (policy version %s)\n", total-failed, failed, pol.Version())
	if failed > 0 {
		return fmt.Errorf("%d policy test(s) failed", failed)
	}
	return nil
}

func sortedKeysBytes(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func demoInit(args []string, out, errw io.Writer) error {
	pos, err := parse(flags("demo init", errw), args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	if err := demo.Init(pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(out, "demo workspace written to %s (%d visits, %d transactions)\n", pos[0], demo.VisitRows, demo.TransactionRows)
	return nil
}
