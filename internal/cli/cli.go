// Package cli is the airlock command line: a table of subcommands, their
// flags and exit codes (0 ok, 1 failure or refusal, 2 usage).
package cli

import (
	"encoding/json"
	"log/slog"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"

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
	name     string
	usage    string // the synopsis after "airlock "
	summary  string
	examples []string
	run      func(args []string, out, errw io.Writer) error
}

func commands() []command {
	return []command{
		{"init", "init DIR --data FILE|postgres://DSN#schema.table [--name DATASET] [--owner ORG]", "write a workspace around your own table: columns, types and suggested classes inferred from the data, a steward, an example agreement and policy with tests",
			[]string{"airlock init ./ws --data customers.csv", "airlock init ./ws --data 'postgres://owner@db/crm#public.customers' --owner acme"}, initWorkspace},
		{"serve", "serve --workspace DIR [--http ADDR] [--pg ADDR] [--peer ADDR] [--pg-tls-cert PEM --pg-tls-key PEM] [--store DSN] [--access-log text|json|off]", "run the server on a workspace",
			[]string{"airlock serve --workspace demo", "airlock serve --workspace ws --http 0.0.0.0:8080 --pg '' --store postgres://airlock@db/state"}, serve},
		{"token create", "token create --workspace DIR --principal NAME [--ttl 720h] [--store DSN]", "mint an API token for a declared principal",
			[]string{"airlock token create --workspace demo --principal analyst@partner"}, tokenCreate},
		{"token revoke", "token revoke --workspace DIR --id ID [--store DSN]", "revoke an API token at once",
			[]string{"airlock token revoke --workspace demo --id 3f2a9c01d4e5b6a7"}, tokenRevoke},
		{"query", "query [--server URL] --token T --purpose P [--agreement A] [--param V]... [--plan] [--json] SQL", "ask a governed question over HTTP; --param binds $1, $2, ... (JSON numbers, true, false and null keep their type; anything else is text)",
			[]string{`airlock query --token $T --purpose research "SELECT region, count(*) FROM visits GROUP BY region"`,
				`airlock query --token $T --purpose research --param I10 "SELECT count(*) FROM visits WHERE diagnosis = $1"`}, runQuery},
		{"validate", "validate DIR", "check a workspace against its data and print its version", []string{"airlock validate demo"}, validate},
		{"agreement revoke", "agreement revoke --workspace DIR [--by NAME] [--reason R] [--store DSN] ID", "revoke an agreement at once, on the node itself",
			[]string{"airlock agreement revoke --workspace demo --by steward@stmary --reason breach partner-visits-research"}, agreementRevoke},
		{"policy test", "policy test DIR", "run a workspace's Cedar policy tests", []string{"airlock policy test demo"}, policyTest},
		{"audit verify", "audit verify (--server URL --token T | --workspace DIR | --log EXPORT.jsonl --checkpoint CP) --since FILE [--pubkey KEY|FILE] [--peers PEERS.yaml [--quorum N]]", "verify that the audit log was only ever appended to since a trusted checkpoint (and, with --peers, that it is the history its peers cosigned)",
			[]string{"airlock audit verify --server http://127.0.0.1:8080 --token $T --pubkey demo/.airlock/node.pub --since trusted.checkpoint"}, auditVerify},
		{"audit reconcile", "audit reconcile --workspace DIR [--store DSN]", "check that every budget and quota charge is explained by an audit entry",
			[]string{"airlock audit reconcile --workspace demo"}, auditReconcile},
		{"audit export", "audit export --workspace DIR [--checkpoint FILE] [--principal P] [--dataset D] [--decision allow|deny] [--since RFC3339]", "export the audit log as JSON lines",
			[]string{"airlock audit export --workspace demo --decision deny --since 2026-01-01T00:00:00Z"}, auditExport},
		{"peer add", "peer add --workspace DIR --name NODE --org ORG --region REGION --url https://HOST:PORT --key KEY|@FILE [--represents ORG,...] [--replace]", "pin another organisation's node in the workspace's peers file",
			[]string{"airlock peer add --workspace ws --name stmary --org stmary --region eu --url https://10.0.0.5:7443 --key @stmary.pub"}, peerAdd},
		{"peer list", "peer list --workspace DIR", "list the workspace's peers", []string{"airlock peer list --workspace ws"}, peerList},
		{"peer remove", "peer remove --workspace DIR NODE", "drop a peer from the peers file", []string{"airlock peer remove --workspace ws stmary"}, peerRemove},
		{"anonymize", "anonymize --input FILE --hierarchies DIR --k K [--l L --sensitive COL [--l-kind distinct|entropy|recursive --c C]] [--t T --t-kind equal|ordered|hierarchical] [--max-suppression F] [--metric nue|loss|dm|dmstar|aecs] [--qi COLS] [--output FILE] [--json]", "find the optimal full-domain generalisation of a CSV (ARX hierarchies) under k-anonymity, l-diversity and t-closeness, with its risk before and after",
			[]string{"airlock anonymize --input adult.csv --hierarchies adult/ --k 5 --max-suppression 0.04", "airlock anonymize --input adult.csv --hierarchies adult/ --k 5 --l 3 --sensitive occupation --output out.csv"}, anonymize},
		{"risk", "risk --input FILE [--qi COLS] [--population FILE] [--sampling-fraction F] [--threshold T] [--json]", "re-identification risk of a CSV: prosecutor, sample and population uniqueness (Zayatz, Pitman, SNB, Dankar's rule)",
			[]string{"airlock risk --input adult.csv --sampling-fraction 0.1"}, riskCmd},
		{"synthesize", "synthesize --input FILE --output FILE [--epsilon E] [--delta D] [--rows N] [--target COL] [--hierarchies DIR]", "write a differentially private synthetic copy of a CSV (MST) and report its utility",
			[]string{"airlock synthesize --input adult.csv --hierarchies adult/ --epsilon 1 --output synthetic.csv"}, synthesize},
		{"export verify", "export verify --key NODE.pub [--record FILE.record.json] FILE", "check a released file against its signed record, offline",
			[]string{"airlock export verify --key stmary.pub visits-eu.csv"}, exportVerify},
		{"export", "export [--server URL] --token T --purpose P [--agreement A] --dataset D --to ORG@REGION --method kanonymity|synthetic [--k K --l L --max-suppression F | --epsilon E] --expires T [--duo CODES] --output FILE", "request a governed release of a dataset; writes the file and its signed record",
			[]string{"airlock export --token $T --purpose research --dataset visits --to eu-institute@eu --k 20 --l 3 --max-suppression 0.05 --expires 2160h --output visits-eu.csv"}, exportRequest},
		{"collab sign", "collab sign --workspace DIR ID", "sign a collaboration's content hash with this node's key (in force once every member signed)",
			[]string{"airlock collab sign --workspace northbank fraud-consortium"}, collabSign},
		{"collab approve", "collab approve --workspace DIR ID TEMPLATE", "approve one of a collaboration's templates by its hash (custom-rule tables run only approved templates)",
			[]string{"airlock collab approve --workspace northbank fraud-consortium fraud_overlap_by_country"}, collabApprove},
		{"collab leave", "collab leave --workspace DIR ID", "leave a collaboration at once: this node's data is no longer used",
			[]string{"airlock collab leave --workspace northbank fraud-consortium"}, collabLeave},
		{"collab status", "collab status --workspace DIR ID", "show this node's signature and template approvals of a collaboration",
			[]string{"airlock collab status --workspace northbank fraud-consortium"}, collabStatus},
		{"collab usage", "collab usage --workspace DIR [--store DSN] ID", "list, from this node's own audit log, every use of its data in a collaboration and check each against the templates it approved (exit 1 if any was not)",
			[]string{"airlock collab usage --workspace northbank fraud-consortium"}, collabUsage},
		{"collab query", "collab query [--server URL] --token T [--purpose P] (--template NAME ID | ID SQL) [--param V]... [--json]", "a clean-room query over a collaboration, run as a private join with the partner's node",
			[]string{"airlock collab query --server http://127.0.0.1:8096 --token $T --template fraud_overlap_by_country fraud-consortium"}, collabQuery},
		{"fl approve", "fl approve --workspace DIR [--row-filter PREDICATE] JOBFILE", "approve a federated job (analytics or training) on this member's node by signing its hash, with this owner's row filter",
			[]string{"airlock fl approve --workspace demand/acme demand/demand-weekly.yaml", "airlock fl approve --workspace fl/private --row-filter \"age >= 18\" fl/salary-class.yaml"}, flApprove},
		{"fl withdraw", "fl withdraw --workspace DIR JOB", "withdraw this node's approval of a federated job: its data is not used from the next round on",
			[]string{"airlock fl withdraw --workspace demand/acme demand-weekly"}, flWithdraw},
		{"fl usage", "fl usage --workspace DIR [--store DSN] JOB", "list, from this node's own audit log, every round of a federated job that read its data, what it paid and whom it unmasked for",
			[]string{"airlock fl usage --workspace demand/acme demand-weekly"}, flUsage},
		{"fl run", "fl run [--server URL] --token T [--purpose P] [--out MODEL.json] [--json] JOBFILE", "run a federated job on its coordinator: each round a secure sum over the members' nodes; prints each round and the privacy spent per member",
			[]string{"airlock fl run --server http://127.0.0.1:8110 --token $T --out model.json fl/salary-class.yaml"}, flRun},
		{"fl predict", "fl predict --model MODEL.json --input CSV [--summary]", "predict with a trained model; scores it if the CSV has the label column",
			[]string{"airlock fl predict --model model.json --input fl/holdout.csv --summary"}, flPredict},
		{"demo demand", "demo demand [--stores N] DIR", "write four retailers' and a demand exchange's node workspaces and their federated-analytics job",
			[]string{"airlock demo demand demand"}, demoJob(demo.DemandDemo, "demo demand")},
		{"demo fl", "demo fl DIR", "write three census offices' (Adult, split by workclass) and a research lab's node workspaces and their training job",
			[]string{"airlock demo fl fl"}, demoJob(demo.FLDemo, "demo fl")},
		{"demo cleanroom", "demo cleanroom [--rows N] [--banks 2|3] DIR", "write two banks' node workspaces and their fraud-consortium collaboration",
			[]string{"airlock demo cleanroom cleanroom"}, demoCleanroom},
		{"demo federation", "demo federation [--rows N] DIR", "write a research consortium's four node workspaces (three hospitals, one research node)",
			[]string{"airlock demo federation fed"}, demoFederation},
		{"demo init", "demo init DIR", "write the demo workspace (hospital visits, bank transactions)", []string{"airlock demo init demo"}, demoInit},
		{"version", "version", "print the version of airlock and its engines", []string{"airlock version"}, version},
	}
}

// Main runs the command line and returns the exit code: 0 ok (and for
// --help), 1 a failure or refusal, 2 a usage error.
func Main(args []string, out, errw io.Writer) int {
	if len(args) == 1 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		printCommands(out)
		return 0
	}
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			rest := args[len(words):]
			if wantsHelp(rest) {
				// Each command prints its own flags; help goes to stdout.
				c.run([]string{"--help"}, out, out)
				return 0
			}
			err := c.run(rest, out, errw)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				fmt.Fprintf(errw, "usage: airlock %s\nrun 'airlock %s --help' for the flags and examples\n", c.usage, c.name)
				return 2
			default:
				fmt.Fprintln(errw, "airlock:", err)
				return 1
			}
		}
	}
	printCommands(errw)
	return 2
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			return true
		}
	}
	return false
}

func printCommands(w io.Writer) {
	fmt.Fprintln(w, "airlock — governed access to sensitive data\n\nusage: airlock COMMAND [flags] [args]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-18s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nrun 'airlock COMMAND --help' for a command's flags and examples")
}

func lookup(name string) command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return command{name: name, usage: name}
}

// flags is a command's flag set; its usage text is the command's synopsis,
// summary, flags (written --long) and examples.
func flags(name string, errw io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(errw)
	fs.Usage = func() {
		c := lookup(name)
		w := fs.Output()
		fmt.Fprintf(w, "usage: airlock %s\n\n%s\n", c.usage, c.summary)
		var lines []string
		fs.VisitAll(func(f *flag.Flag) {
			arg, help := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			if arg != "" {
				line += " " + strings.ToUpper(arg)
			}
			line += "\n      " + help
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
				line += " (default " + f.DefValue + ")"
			}
			lines = append(lines, line)
		})
		if len(lines) > 0 {
			fmt.Fprintf(w, "\nflags:\n%s\n", strings.Join(lines, "\n"))
		}
		if len(c.examples) > 0 {
			fmt.Fprintf(w, "\nexamples:\n  %s\n", strings.Join(c.examples, "\n  "))
		}
	}
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
	peerAddr := fs.String("peer", "", "peer endpoint listen address (mutual TLS); default: the workspace's federation.listen")
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
	n, err := server.Open(ctx, server.Options{Workspace: *dir, HTTPAddr: *httpAddr, PGAddr: *pgAddr, PeerAddr: *peerAddr, PGTLS: pgTLS, StoreDSN: *dsn, AccessLog: access})
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
	peerA, err := n.ListenPeer()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "airlock %s listening on http://%s (workspace %s, version %s)\n", n.WS.Config.Node.Name, addr, *dir, n.Kernel.Snapshot().Version()[:19])
	example := exampleFor(n.WS)
	if pgA != nil {
		fmt.Fprintf(out, "postgres wire on %s: psql \"host=%s port=%d user=PRINCIPAL password=TOKEN options='-c airlock.purpose=%s'\"\n", pgA, pgA.(*net.TCPAddr).IP, pgA.(*net.TCPAddr).Port, example.purpose)
	}
	if peerA != nil {
		fmt.Fprintf(out, "peer endpoint on https://%s (mutual TLS, node key %s; %d peers)\n", peerA, n.Verifier, len(n.WS.Peers))
	}
	fmt.Fprintf(out, "audit log verifier key: %s\n\nget a token for a principal with:\n", n.Verifier)
	for _, p := range sortedPrincipals(n.WS) {
		fmt.Fprintf(out, "  airlock token create --workspace %s --principal %s\n", *dir, p)
	}
	fmt.Fprintf(out, "then, as %s: airlock query --server http://%s --token TOKEN --purpose %s %q\n", example.principal, addr, example.purpose, example.sql)
	return n.Serve(ctx)
}

// example is a question the served workspace can answer, for the banner:
// the first agreement's recipient, purpose and dataset.
type example struct{ principal, purpose, sql string }

func exampleFor(ws *workspace.Workspace) example {
	for _, id := range slices.Sorted(maps.Keys(ws.Agreements)) {
		a := ws.Agreements[id]
		if len(a.Purposes) == 0 || len(a.Datasets) == 0 || !a.InForce(time.Now()) {
			continue
		}
		for _, name := range sortedPrincipals(ws) {
			if ws.Principals[name].Org == a.RecipientOrg {
				return example{name, a.Purposes[0], "SELECT count(*) FROM " + a.Datasets[0]}
			}
		}
	}
	for _, name := range sortedPrincipals(ws) {
		for _, m := range ws.Datasets {
			if p := ws.Principals[name]; p.Org == m.Owner && slices.Contains(p.Roles, "steward") {
				return example{name, "", "SELECT count(*) FROM " + m.Name}
			}
		}
	}
	return example{"PRINCIPAL", "PURPOSE", "SELECT count(*) FROM DATASET"}
}

// paramList is --param, repeated: JSON scalars keep their type, anything
// else is text.
type paramList []any

func (p *paramList) String() string { return fmt.Sprint([]any(*p)) }

func (p *paramList) Set(v string) error {
	var x any
	if err := json.Unmarshal([]byte(v), &x); err == nil {
		switch x.(type) {
		case float64, bool, nil, string:
			*p = append(*p, json.RawMessage(v))
			return nil
		}
	}
	*p = append(*p, v)
	return nil
}

// version prints what this binary is: its module version and commit, Go,
// and the DuckDB it embeds.
func version(args []string, out, errw io.Writer) error {
	if _, err := parse(flags("version", errw), args); err != nil {
		return err
	}
	v, rev, dirty, duck := "(devel)", "", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/duckdb/duckdb-go/v2" {
				duck = d.Version
			}
		}
	}
	fmt.Fprintf(out, "airlock %s", v)
	if rev != "" {
		fmt.Fprintf(out, " (%s%s)", rev[:min(12, len(rev))], dirty)
	}
	fmt.Fprintf(out, "\n%s, duckdb-go %s\n", runtime.Version(), duck)
	return nil
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
	// Not a default from the environment: --help would print the token.
	tok := fs.String("token", "", "bearer token (default: $AIRLOCK_TOKEN)")
	purpose := fs.String("purpose", "", "purpose of the query")
	ag := fs.String("agreement", "", "agreement to act under (when several apply)")
	plan := fs.Bool("plan", false, "dry run: show the plan and its cost, run nothing")
	asJSON := fs.Bool("json", false, "print the JSON response")
	var params paramList
	fs.Var(&params, "param", "a value for the next $n (repeat for $1, $2, ...)")
	pos, err := parse(fs, args)
	if *tok == "" {
		*tok = os.Getenv("AIRLOCK_TOKEN")
	}
	if err != nil || len(pos) != 1 || *tok == "" {
		return errUsage
	}
	path := "/v1/query"
	if *plan {
		path = "/v1/query/plan"
	}
	body := map[string]any{"sql": pos[0], "purpose": *purpose}
	if len(params) > 0 {
		body["params"] = []any(params)
	}
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
	if probs = probs.Errors(); len(probs) > 0 {
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
