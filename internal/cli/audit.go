package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/server"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

type auditHandle struct {
	ws  *workspace.Workspace
	st  store.Store
	log *audit.Log
	vk  string
}

func (h *auditHandle) close() {
	h.log.Close()
	h.st.Close()
}

// openAudit opens a workspace's state store and audit log without serving.
func openAudit(dir, dsn string) (*auditHandle, error) {
	ws, st, err := openState(dir, dsn)
	if err != nil {
		return nil, err
	}
	skey, vkey, err := audit.LoadOrCreateKey(server.DataDir(ws), ws.Config.Node.Name)
	if err != nil {
		st.Close()
		return nil, err
	}
	l, err := audit.Open(context.Background(), st, skey, ws.Config.Node.Origin)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &auditHandle{ws: ws, st: st, log: l, vk: vkey}, nil
}

func verifierKey(flagVal, dir string, ws *workspace.Workspace) (string, error) {
	if flagVal != "" {
		if b, err := os.ReadFile(flagVal); err == nil {
			return strings.TrimSpace(string(b)), nil
		}
		return flagVal, nil
	}
	if ws != nil {
		b, err := os.ReadFile(server.DataDir(ws) + "/node.pub")
		if err == nil {
			return strings.TrimSpace(string(b)), nil
		}
	}
	return "", errors.New("--pubkey is required: the node's audit verifier key (printed by serve, in <data_dir>/node.pub)")
}

func auditVerify(args []string, out, errw io.Writer) error {
	fs := flags("audit verify", errw)
	srv := fs.String("server", "", "server URL (online verification)")
	tok := fs.String("token", os.Getenv("AIRLOCK_TOKEN"), "bearer token of an auditor")
	dir := fs.String("workspace", "", "workspace (offline verification of its state store)")
	dsn := fs.String("store", "", "state store DSN (offline)")
	since := fs.String("since", "", "trusted checkpoint file: read if present, written after success")
	export := fs.String("log", "", "an exported log (airlock audit export, unfiltered) to verify offline")
	cpFile := fs.String("checkpoint", "", "with --log: the signed checkpoint file to verify it against")
	pub := fs.String("pubkey", "", "node verifier key, or a file holding it")
	peersFile := fs.String("peers", "", "with --server: a peers file (peers.yaml) whose nodes witness this log; the history must match a checkpoint they cosigned")
	quorum := fs.Int("quorum", 0, "with --peers: cosignatures required (default: a majority of the peers file)")
	if _, err := parse(fs, args); err != nil || (*peersFile != "" && *srv == "") {
		return errUsage
	}
	sources := 0
	for _, v := range []string{*srv, *dir, *export} {
		if v != "" {
			sources++
		}
	}
	if sources != 1 || (*export != "" && *cpFile == "") {
		return errUsage
	}
	var (
		entries [][]byte
		signed  []byte
		vkey    string
		consist func(from, to uint64) ([][]byte, error)
		incl    func(idx, size uint64) ([][]byte, error)
	)
	if *export != "" {
		var err error
		if vkey, err = verifierKey(*pub, "", nil); err != nil {
			return err
		}
		if signed, err = os.ReadFile(*cpFile); err != nil {
			return err
		}
		f, err := os.Open(*export)
		if err != nil {
			return err
		}
		entries, err = audit.ReadExport(f)
		f.Close()
		if err != nil {
			return err
		}
		var tree audit.Tree
		for _, e := range entries {
			tree.Append(audit.LeafHash(e))
		}
		consist = func(from, to uint64) ([][]byte, error) {
			p, err := tree.ConsistencyProof(from, to)
			return hashesToBytes(p), err
		}
		incl = func(idx, size uint64) ([][]byte, error) {
			p, err := tree.InclusionProof(idx, size)
			return hashesToBytes(p), err
		}
	} else if *srv != "" {
		base := strings.TrimRight(*srv, "/")
		var err error
		if vkey, err = verifierKey(*pub, "", nil); err != nil {
			return err
		}
		if err := call("GET", base+"/v1/audit/checkpoint", *tok, nil, &signed); err != nil {
			return err
		}
		cp, err := audit.ParseCheckpoint(signed, vkey)
		if err != nil {
			return err
		}
		for start := uint64(0); start < cp.Size; {
			var page struct {
				Entries []string `json:"entries"`
			}
			if err := call("GET", fmt.Sprintf("%s/v1/audit/entries?start=%d&end=%d", base, start, cp.Size), *tok, nil, &page); err != nil {
				return err
			}
			if len(page.Entries) == 0 {
				break
			}
			for _, e := range page.Entries {
				b, err := base64.StdEncoding.DecodeString(e)
				if err != nil {
					return fmt.Errorf("entry %d: %w", start, err)
				}
				entries = append(entries, b)
			}
			start += uint64(len(page.Entries))
		}
		proofCall := func(path string) ([][]byte, error) {
			var p struct {
				Proof []string `json:"proof"`
			}
			if err := call("GET", base+path, *tok, nil, &p); err != nil {
				return nil, err
			}
			out := make([][]byte, len(p.Proof))
			for i, h := range p.Proof {
				b, err := base64.StdEncoding.DecodeString(h)
				if err != nil {
					return nil, err
				}
				out[i] = b
			}
			return out, nil
		}
		consist = func(from, to uint64) ([][]byte, error) {
			return proofCall(fmt.Sprintf("/v1/audit/proof/consistency?from=%d&to=%d", from, to))
		}
		incl = func(idx, size uint64) ([][]byte, error) {
			return proofCall("/v1/audit/proof/inclusion?" + url.Values{"index": {fmt.Sprint(idx)}, "size": {fmt.Sprint(size)}}.Encode())
		}
	} else {
		h, err := openAudit(*dir, *dsn)
		if err != nil {
			return err
		}
		defer h.close()
		if vkey, err = verifierKey(*pub, *dir, h.ws); err != nil {
			return err
		}
		ctx := context.Background()
		if signed, err = h.log.Checkpoint(ctx); err != nil {
			return err
		}
		cp, err := audit.ParseCheckpoint(signed, vkey)
		if err != nil {
			return err
		}
		if entries, err = h.st.Leaves(ctx, 0, cp.Size); err != nil {
			return err
		}
		stored, err := h.st.LeafHashes(ctx, 0, cp.Size)
		if err != nil {
			return err
		}
		for i, e := range entries {
			if audit.LeafHash(e) != stored[i] {
				return &audit.TamperError{Index: uint64(i), Reason: "stored entry does not match its stored leaf hash"}
			}
		}
		tree := h.log.Tree()
		consist = func(from, to uint64) ([][]byte, error) {
			p, err := tree.ConsistencyProof(from, to)
			return hashesToBytes(p), err
		}
		incl = func(idx, size uint64) ([][]byte, error) {
			p, err := tree.InclusionProof(idx, size)
			return hashesToBytes(p), err
		}
	}
	cp, err := audit.ParseCheckpoint(signed, vkey)
	if err != nil {
		return err
	}
	var trusted *audit.Trusted
	if *since != "" {
		if t, err := audit.LoadTrusted(*since, vkey); err == nil {
			trusted = t
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	var proof [][]byte
	if trusted != nil && trusted.Checkpoint.Size > 0 && trusted.Checkpoint.Size <= cp.Size {
		if proof, err = consist(trusted.Checkpoint.Size, cp.Size); err != nil {
			return err
		}
	}
	next, err := audit.VerifyHistory(entries, cp, trusted, proof)
	if err != nil {
		return err
	}
	// Spot-check the server's inclusion proofs on new entries.
	from := uint64(0)
	if trusted != nil {
		from = trusted.Checkpoint.Size
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	checked := 0
	for i := 0; i < 64 && from < cp.Size; i++ {
		idx := from + rng.Uint64N(cp.Size-from)
		p, err := incl(idx, cp.Size)
		if err != nil {
			return err
		}
		if err := audit.VerifyInclusion(entries[idx], idx, cp, p); err != nil {
			return &audit.TamperError{Index: idx, Reason: "inclusion proof does not verify: " + err.Error()}
		}
		checked++
	}
	witnessed := ""
	if *peersFile != "" {
		if witnessed, err = checkCosigned(strings.TrimRight(*srv, "/"), *tok, vkey, *peersFile, *quorum, next); err != nil {
			return err
		}
	}
	if *since != "" {
		if err := audit.SaveTrusted(*since, next); err != nil {
			return err
		}
	}
	if witnessed != "" {
		fmt.Fprintln(out, witnessed)
	}
	fmt.Fprintf(out, "audit log ok: %d entries, root %x…, consistent with the trusted checkpoint (%d before), %d inclusion proofs checked\n",
		cp.Size, cp.Root[:8], from, checked)
	return nil
}

// checkCosigned fetches the log's latest cosigned checkpoint, checks
// each cosignature with the peers file's pinned keys, requires a quorum,
// and checks that the history just verified has that checkpoint's root
// at its size: the log this server shows is the one its witnesses saw.
func checkCosigned(base, tok, vkey, peersFile string, quorum int, verified *audit.Trusted) (string, error) {
	b, err := os.ReadFile(peersFile)
	if err != nil {
		return "", err
	}
	list, probs := workspace.ParsePeers(b)
	if len(probs.Errors()) > 0 {
		return "", probs
	}
	peers := map[string]*workspace.Peer{}
	for _, p := range list {
		peers[p.Name] = p
	}
	if quorum <= 0 {
		quorum = len(peers)/2 + 1
	}
	var signed []byte
	if err := call("GET", base+"/v1/audit/checkpoint/cosigned", tok, nil, &signed); err != nil {
		return "", err
	}
	cp, by, err := federation.VerifyCosigned(signed, vkey, peers)
	if err != nil {
		return "", fmt.Errorf("cosigned checkpoint: %w", err)
	}
	if len(by) < quorum {
		return "", fmt.Errorf("the latest cosigned checkpoint (%d entries) has %d valid cosignatures (%s), %d required", cp.Size, len(by), strings.Join(by, ", "), quorum)
	}
	if cp.Size > uint64(len(verified.Hashes)) {
		return "", fmt.Errorf("the cosigned checkpoint covers %d entries, the log served %d", cp.Size, len(verified.Hashes))
	}
	var tree audit.Tree
	tree.Append(verified.Hashes[:cp.Size]...)
	if root, _ := tree.Root(cp.Size); root != cp.Root {
		return "", &audit.TamperError{Index: 0, AtOrAfter: true, Reason: fmt.Sprintf("the history served differs from the one %s cosigned at %d entries (a forked log)", strings.Join(by, ", "), cp.Size)}
	}
	return fmt.Sprintf("witnessed: the first %d entries are the history cosigned by %s (%d of %d peers, %d required)", cp.Size, strings.Join(by, ", "), len(by), len(peers), quorum), nil
}

func hashesToBytes(p []audit.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = append([]byte(nil), p[i][:]...)
	}
	return out
}

func auditExport(args []string, out, errw io.Writer) error {
	fs := flags("audit export", errw)
	dir := fs.String("workspace", "", "workspace directory")
	dsn := fs.String("store", "", "state store DSN")
	cpOut := fs.String("checkpoint", "", "also sign a checkpoint covering the export and write it here (for offline verification)")
	var f audit.Filter
	fs.StringVar(&f.Principal, "principal", "", "only this principal")
	fs.StringVar(&f.Dataset, "dataset", "", "only entries touching this dataset")
	fs.StringVar(&f.Decision, "decision", "", "allow or deny")
	since := fs.String("since", "", "only entries at or after this time (RFC 3339)")
	if _, err := parse(fs, args); err != nil || *dir == "" {
		return errUsage
	}
	if *since != "" {
		t, err := time.Parse(time.RFC3339, *since)
		if err != nil {
			return fmt.Errorf("--since: %w", err)
		}
		f.From = t
	}
	h, err := openAudit(*dir, *dsn)
	if err != nil {
		return err
	}
	defer h.close()
	ctx := context.Background()
	size, err := h.st.Size(ctx)
	if err != nil {
		return err
	}
	if *cpOut != "" {
		signed, err := h.log.Checkpoint(ctx)
		if err != nil {
			return err
		}
		cp, err := audit.ParseCheckpoint(signed, h.vk)
		if err != nil {
			return err
		}
		size = cp.Size
		if err := os.WriteFile(*cpOut, signed, 0o644); err != nil {
			return err
		}
	}
	for start := uint64(0); start < size; start += 10000 {
		raw, err := h.st.Leaves(ctx, start, min(start+10000, size))
		if err != nil {
			return err
		}
		if err := audit.ExportJSONL(out, start, raw, f); err != nil {
			return err
		}
	}
	return nil
}

// auditReconcile matches the ledger's charges against the audit log's
// reservations: every charge must be announced by an entry written before
// it, and every ledger row must be the sum of its charges.
func auditReconcile(args []string, out, errw io.Writer) error {
	fs := flags("audit reconcile", errw)
	dir := fs.String("workspace", "", "workspace directory")
	dsn := fs.String("store", "", "state store DSN")
	if _, err := parse(fs, args); err != nil || *dir == "" {
		return errUsage
	}
	_, st, err := openState(*dir, *dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	size, err := st.Size(ctx)
	if err != nil {
		return err
	}
	var reserved []store.Reservation
	const page = 10000
	for start := uint64(0); start < size; start += page {
		raw, err := st.Leaves(ctx, start, min(size, start+page))
		if err != nil {
			return err
		}
		for i, b := range raw {
			e, err := audit.ParseEntry(b)
			if err != nil {
				return fmt.Errorf("audit entry %d does not parse: %w", start+uint64(i), err)
			}
			if e.Decision == audit.DecisionReserve {
				reserved = append(reserved, store.Reservation{ChargeID: e.ChargeID, Agreement: e.Agreement, Rho: e.Rho, QuotaRows: e.QuotaRows, Index: start + uint64(i)})
			}
		}
	}
	charges, err := st.Charges(ctx)
	if err != nil {
		return err
	}
	ledger, err := st.Ledger(ctx)
	if err != nil {
		return err
	}
	r := store.Reconcile(reserved, charges, ledger)
	fmt.Fprint(out, r)
	if !r.OK() {
		return errors.New("the ledger and the audit log do not reconcile")
	}
	return nil
}
