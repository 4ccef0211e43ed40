package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/demo"
)

// TestFederationDemoAsSeparateProcesses runs the federation demo as the
// README says, with the real binary: four processes, each node its own
// workspace, peers re-pinned with `airlock peer add` to the ephemeral
// ports, then the analyst's federated question over HTTP and psql.
func TestFederationDemoAsSeparateProcesses(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	run := cliRunner(t, bin)
	run("demo", "federation", "--rows", "3000", dir)
	procs := map[string]*serveProc{}
	for _, n := range demo.FederationNodes {
		pg := ""
		if n.Name == "research" {
			pg = "127.0.0.1:0"
		}
		procs[n.Name] = startServe(t, bin, n.Name, filepath.Join(dir, n.Name), pg)
	}
	// Re-pin every node's peers at the others' real ports, with the CLI.
	for _, n := range demo.FederationNodes {
		for _, o := range demo.FederationNodes {
			if o.Name == n.Name {
				continue
			}
			run("peer", "add", "--workspace", filepath.Join(dir, n.Name), "--replace", "--name", o.Name, "--org", o.Org, "--region", o.Region,
				"--url", procs[o.Name].peer, "--key", "@"+filepath.Join(dir, o.Name, ".airlock", "node.pub"))
		}
	}
	if out := run("peer", "list", "--workspace", filepath.Join(dir, "research")); strings.Count(out, procs["mercy"].peer) != 1 {
		t.Fatalf("peer list:\n%s", out)
	}
	token := strings.TrimSpace(run("token", "create", "--workspace", filepath.Join(dir, "research"), "--principal", "analyst@research"))
	// The nodes reload their peers files within seconds.
	var out []byte
	var err error
	for start := time.Now(); time.Since(start) < 20*time.Second; time.Sleep(300 * time.Millisecond) {
		out, err = exec.Command(bin, "query", "--server", procs["research"].http, "--token", token, "--purpose", "research", "--json", fedSQL).CombinedOutput()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("federated query: %v\n%s", err, out)
	}
	var a fedAnswer
	if err := json.Unmarshal(out, &a); err != nil || a.Federation == nil || len(a.Federation.Members) != 3 || len(a.Rows) == 0 {
		t.Fatalf("answer: %v\n%s", err, out)
	}
	// psql against the research node gets the combined answer too.
	host, port, _ := strings.Cut(procs["research"].pg, ":")
	got, stderr := psql(t, "host="+host+" port="+port+" user=analyst@research password="+token+" options='-c airlock.purpose=research' sslmode=disable",
		"-At", "-c", "SELECT count(*) FROM visits WHERE sex = 'F'")
	if !regexp.MustCompile(`(?m)^\d+$`).MatchString(strings.TrimSpace(got)) {
		t.Fatalf("psql: %q %s", got, stderr)
	}
}

// serveProc is a running `airlock serve` and the addresses its banner
// printed.
type serveProc struct {
	http, peer, pg string
	cmd            *exec.Cmd
}

var (
	peerBanner = regexp.MustCompile(`peer endpoint on (https://\S+)`)
	httpBanner = regexp.MustCompile(`listening on (http://\S+)`)
	pgBanner   = regexp.MustCompile(`postgres wire on (\S+):`)
)

// startServe runs the binary on a workspace with ephemeral HTTP and peer
// ports (and the wire endpoint when pg is set), waits for its banner, and
// fails the test at once if the process exits first.
func startServe(t *testing.T, bin, name, ws, pg string) *serveProc {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--workspace", ws, "--http", "127.0.0.1:0", "--peer", "127.0.0.1:0", "--pg", pg, "--access-log", "off")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	p := &serveProc{cmd: cmd}
	sc := bufio.NewScanner(stdout)
	lines := make(chan string)
	go func() {
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(60 * time.Second)
	for p.http == "" || p.peer == "" || (pg != "" && p.pg == "") {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s exited before its banner:\n%s", name, stderr.String())
			}
			if m := httpBanner.FindStringSubmatch(l); m != nil {
				p.http = m[1]
			}
			if m := peerBanner.FindStringSubmatch(l); m != nil {
				p.peer = m[1]
			}
			if m := pgBanner.FindStringSubmatch(l); m != nil {
				p.pg = m[1]
			}
		case <-exited:
			t.Fatalf("%s exited:\n%s", name, stderr.String())
		case <-deadline:
			t.Fatalf("%s printed no banner in 60 s", name)
		}
	}
	go func() {
		for range lines {
		}
	}()
	return p
}

// cliRunner runs the binary's subcommands, failing the test on an error.
func cliRunner(t *testing.T, bin string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("airlock %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
}
