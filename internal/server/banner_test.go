package server_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/cli"
)

// TestBannerCommandsRunAsPrinted: the commands the server prints at
// startup fit the workspace it serves (here one made by airlock init, not
// the demo) and work when run as printed.
func TestBannerCommandsRunAsPrinted(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir() + "/ws"
	var out, errw bytes.Buffer
	if code := cli.Main([]string{"init", dir, "--data", ownerCSV(t), "--owner", "acme", "--name", "customers"}, &out, &errw); code != 0 {
		t.Fatalf("init: %s", errw.String())
	}
	cmd := exec.Command(bin, "serve", "--workspace", dir, "--http", "127.0.0.1:0", "--pg", "127.0.0.1:0", "--access-log", "off")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var tokenCmd, queryCmd string
	deadline := time.After(60 * time.Second)
	for queryCmd == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the server exited before printing its banner")
			}
			if strings.Contains(l, "airlock token create") && strings.Contains(l, "analyst@partner") {
				tokenCmd = strings.TrimSpace(l)
			}
			if i := strings.Index(l, "airlock query"); i >= 0 {
				queryCmd = l[i:]
			}
		case <-deadline:
			t.Fatal("no banner within 60 s")
		}
	}
	if tokenCmd == "" || !strings.Contains(queryCmd, "FROM customers") || !strings.Contains(queryCmd, "--purpose research") {
		t.Fatalf("the banner does not fit the workspace:\n%s\n%s", tokenCmd, queryCmd)
	}
	out.Reset()
	if code := cli.Main(strings.Fields(tokenCmd)[1:], &out, &errw); code != 0 {
		t.Fatalf("%s: %s", tokenCmd, errw.String())
	}
	token := strings.TrimSpace(out.String()[strings.LastIndex(strings.TrimSpace(out.String()), "\n")+1:])
	// Run the printed query with the token, as a shell would split it.
	args := shellSplit(t, strings.Replace(queryCmd, "TOKEN", token, 1))
	out.Reset()
	if code := cli.Main(args[1:], &out, &errw); code != 0 {
		t.Fatalf("%s: exit %d: %s", queryCmd, code, errw.String())
	}
}

var shellWord = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|\S+`)

func shellSplit(t *testing.T, s string) []string {
	var out []string
	for _, w := range shellWord.FindAllString(s, -1) {
		out = append(out, strings.Trim(w, `"`))
	}
	return out
}
