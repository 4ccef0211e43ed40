package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// Every command's --help exits 0 with one clean usage line, its flags
// written --long, and an example that names the command.
func TestHelpOfEveryCommand(t *testing.T) {
	for _, c := range commands() {
		var out, errw bytes.Buffer
		if code := Main(append(strings.Fields(c.name), "--help"), &out, &errw); code != 0 {
			t.Errorf("%s --help: exit %d, stderr %q", c.name, code, errw.String())
			continue
		}
		text := out.String()
		first, _, _ := strings.Cut(text, "\n")
		if first != "usage: airlock "+c.usage || !strings.HasPrefix(c.usage, c.name) {
			t.Errorf("%s --help: first line %q", c.name, first)
		}
		if strings.Contains(text, "\n  -") && !strings.Contains(text, "\n  --") {
			t.Errorf("%s --help: flags not written --long:\n%s", c.name, text)
		}
		if len(c.examples) == 0 || !strings.Contains(text, "airlock "+c.name) {
			t.Errorf("%s --help: no example:\n%s", c.name, text)
		}
	}
	var out, errw bytes.Buffer
	if Main([]string{"--help"}, &out, &errw) != 0 || !strings.Contains(out.String(), "commands:") {
		t.Fatalf("airlock --help: %q", out.String())
	}
	if Main([]string{"serve"}, &out, &errw) != 2 || !strings.Contains(errw.String(), "usage: airlock serve --workspace DIR") {
		t.Fatalf("a usage error: %q", errw.String())
	}
	if Main([]string{"nonsense"}, &out, &errw) != 2 {
		t.Fatal("an unknown command must exit 2")
	}
}

func TestVersion(t *testing.T) {
	var out, errw bytes.Buffer
	// A test binary carries no module list; the built binary's version
	// line is checked by the server tests that build it.
	if code := Main([]string{"version"}, &out, &errw); code != 0 || !strings.HasPrefix(out.String(), "airlock ") || !strings.Contains(out.String(), "go1.") {
		t.Fatalf("version: %d %q %q", code, out.String(), errw.String())
	}
}

func TestParamsKeepTheirJSONType(t *testing.T) {
	var p paramList
	for _, v := range []string{"I10", "42", "1.5", "true", "null", `"007"`} {
		p.Set(v)
	}
	body, _ := json.Marshal(p)
	if string(body) != `["I10",42,1.5,true,null,"007"]` {
		t.Fatalf("params sent as %s", body)
	}
}
