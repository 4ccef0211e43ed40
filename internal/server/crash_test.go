package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/cli"
	"github.com/airlock-dev/airlock/internal/demo"
)

// buildBinary compiles cmd/airlock once for tests that run the real binary.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "airlock")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/airlock")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.Contains(string(out), "duckdb-go v2.") {
		t.Fatalf("airlock version: %v %q", err, out)
	}
	return bin
}

// startBinary runs the server on ephemeral ports and returns once it
// listens; a server that exits first fails the test at once.
func startBinary(t *testing.T, bin, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--workspace", dir, "--http", "127.0.0.1:0", "--pg", "127.0.0.1:0")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`listening on (http://\S+)`)
	sc := bufio.NewScanner(stdout)
	found := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		close(exited) // stdout closed: the process is gone
	}()
	select {
	case u := <-found:
		return cmd, u
	case <-exited:
		cmd.Wait()
		t.Fatalf("the server exited before listening: %v", cmd.ProcessState)
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("server did not start")
	}
	return nil, ""
}

func mintToken(t *testing.T, dir, principal string) string {
	var out, errw bytes.Buffer
	if code := cli.Main([]string{"token", "create", "--workspace", dir, "--principal", principal}, &out, &errw); code != 0 {
		t.Fatalf("token create: %s", errw.String())
	}
	return strings.TrimSpace(out.String())
}

// TestCrashKeepsAuditConsistent kills the server with SIGKILL in the middle
// of a burst of DP queries. After a restart the log must verify, every
// response a client received must have its audit entry, and the budget
// ledger must reconcile with the log (no charge without its entry).
func TestCrashKeepsAuditConsistent(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	if err := demo.Init(dir); err != nil {
		t.Fatal(err)
	}
	tok := mintToken(t, dir, "analyst@partner")
	cmd, url := startBinary(t, bin, dir)
	type ack struct {
		index  uint64
		marker string
	}
	var mu sync.Mutex
	var acks []ack
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				marker := fmt.Sprintf("w%di%d", w, i)
				body, _ := json.Marshal(map[string]any{"sql": "SELECT sex, count(*) AS " + marker + " FROM visits GROUP BY sex", "purpose": "research"})
				req, _ := http.NewRequest("POST", url+"/v1/query", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // the server died
				}
				var r struct {
					AuditIndex uint64 `json:"audit_index"`
				}
				err = json.NewDecoder(resp.Body).Decode(&r)
				resp.Body.Close()
				if err == nil && resp.StatusCode == 200 {
					mu.Lock()
					acks = append(acks, ack{r.AuditIndex, marker})
					mu.Unlock()
				}
			}
		}(w)
	}
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	close(stop)
	wg.Wait()
	if len(acks) < 20 {
		t.Fatalf("only %d responses before the crash; the burst did not run", len(acks))
	}
	// Restart, then verify offline and check every acknowledged entry.
	cmd2, _ := startBinary(t, bin, dir)
	cmd2.Process.Signal(syscall.SIGTERM)
	cmd2.Wait()
	var out, errw bytes.Buffer
	if code := cli.Main([]string{"audit", "verify", "--workspace", dir, "--since", filepath.Join(t.TempDir(), "cp")}, &out, &errw); code != 0 {
		t.Fatalf("audit verify after crash: %s %s", out.String(), errw.String())
	}
	h, err := openStoreOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acks {
		raw, err := h.Leaves(context.Background(), a.index, a.index+1)
		if err != nil || len(raw) != 1 {
			t.Fatalf("acknowledged entry %d is missing after the crash: %v", a.index, err)
		}
		e, _ := audit.ParseEntry(raw[0])
		if !strings.Contains(e.SQL, a.marker) || e.Decision != "allow" {
			t.Fatalf("entry %d is not the acknowledged query %s: %s", a.index, a.marker, raw[0])
		}
	}
	t.Logf("%d acknowledged responses, all present after SIGKILL and restart", len(acks))
	// Every budget charge, including those of requests in flight at the
	// kill, is explained by an audit entry written before it.
	h.Close()
	out.Reset()
	errw.Reset()
	if code := cli.Main([]string{"audit", "reconcile", "--workspace", dir}, &out, &errw); code != 0 {
		t.Fatalf("audit reconcile after SIGKILL: %s %s", out.String(), errw.String())
	}
	var charges int
	fmt.Sscanf(out.String(), "%d charges", &charges)
	if charges < len(acks) {
		t.Fatalf("reconcile saw %d charges for %d answered DP queries: %s", charges, len(acks), out.String())
	}
	t.Logf("reconcile: %s", strings.TrimSpace(out.String()))
}
