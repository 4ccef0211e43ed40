package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// readPeers reads a workspace's peers file (none yet: no peers).
func readPeers(dir string) ([]*workspace.Peer, error) {
	b, err := os.ReadFile(filepath.Join(dir, workspace.PeersFile))
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	peers, probs := workspace.ParsePeers(b)
	if len(probs.Errors()) > 0 {
		return nil, probs
	}
	return peers, nil
}

// keyArg reads a node key given on the command line as the key itself,
// @FILE, or the path of an existing file (a node.pub).
func keyArg(k string) (string, error) {
	file, at := strings.CutPrefix(k, "@")
	if !at {
		if st, err := os.Stat(k); err != nil || st.IsDir() {
			return k, nil
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func peerAdd(args []string, out, errw io.Writer) error {
	fs := flags("peer add", errw)
	dir := fs.String("workspace", "", "workspace directory")
	name := fs.String("name", "", "the peer node's name (its node.name)")
	org := fs.String("org", "", "the organisation that runs it")
	region := fs.String("region", "", "where it runs")
	url := fs.String("url", "", "its peer endpoint, https://host:port")
	key := fs.String("key", "", "its node key (name+hash+key), or @FILE to read it (its <data_dir>/node.pub)")
	represents := fs.String("represents", "", "orgs whose principals it may act for, comma-separated (default: its org)")
	replace := fs.Bool("replace", false, "replace an existing peer of that name")
	if _, err := parse(fs, args); err != nil || *dir == "" || *name == "" || *org == "" || *url == "" || *key == "" {
		return errUsage
	}
	k, err := keyArg(*key)
	if err != nil {
		return err
	}
	if n, _, err := federation.ParseVerifier(k); err != nil {
		return fmt.Errorf("--key: %w", err)
	} else if n != *name {
		return fmt.Errorf("--key is the key of node %q, not %q", n, *name)
	}
	peers, err := readPeers(*dir)
	if err != nil {
		return err
	}
	p := &workspace.Peer{Name: *name, Org: *org, Region: *region, URL: *url, Key: k}
	if *represents != "" {
		p.Represents = strings.Split(*represents, ",")
	}
	i := slices.IndexFunc(peers, func(q *workspace.Peer) bool { return q.Name == *name })
	switch {
	case i >= 0 && !*replace:
		return fmt.Errorf("peer %s is already in %s (use --replace)", *name, workspace.PeersFile)
	case i >= 0:
		peers[i] = p
	default:
		peers = append(peers, p)
	}
	if err := workspace.WritePeers(*dir, peers); err != nil {
		return err
	}
	fmt.Fprintf(out, "peer %s (%s, %s) at %s pinned to %s\n", p.Name, p.Org, p.Region, p.URL, p.Key)
	return nil
}

func peerList(args []string, out, errw io.Writer) error {
	fs := flags("peer list", errw)
	dir := fs.String("workspace", "", "workspace directory")
	if _, err := parse(fs, args); err != nil || *dir == "" {
		return errUsage
	}
	peers, err := readPeers(*dir)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tORG\tREGION\tURL\tREPRESENTS\tKEY")
	for _, p := range peers {
		rep := p.Org
		if len(p.Represents) > 0 {
			rep = strings.Join(p.Represents, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Org, p.Region, p.URL, rep, p.Key)
	}
	return tw.Flush()
}

func peerRemove(args []string, out, errw io.Writer) error {
	fs := flags("peer remove", errw)
	dir := fs.String("workspace", "", "workspace directory")
	pos, err := parse(fs, args)
	if err != nil || *dir == "" || len(pos) != 1 {
		return errUsage
	}
	peers, err := readPeers(*dir)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(peers, func(q *workspace.Peer) bool { return q.Name == pos[0] })
	if i < 0 {
		return fmt.Errorf("no peer %s in %s", pos[0], workspace.PeersFile)
	}
	peers = slices.Delete(peers, i, i+1)
	if err := workspace.WritePeers(*dir, peers); err != nil {
		return err
	}
	fmt.Fprintf(out, "peer %s removed; a running node drops it at its next reload\n", pos[0])
	return nil
}

func demoFederation(args []string, out, errw io.Writer) error {
	fs := flags("demo federation", errw)
	rows := fs.Int("rows", demo.FederationRows, "visits per hospital")
	pos, err := parse(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	if err := demo.InitFederation(pos[0], *rows); err != nil {
		return err
	}
	fmt.Fprintf(out, "federation demo written to %s (nodes:", pos[0])
	for _, n := range demo.FederationNodes {
		fmt.Fprintf(out, " %s", n.Name)
	}
	fmt.Fprintf(out, "); see %s\n", filepath.Join(pos[0], "README.md"))
	return nil
}
