package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/collab"
	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/federation"
)

// collabArgs reads --workspace DIR ID [more] and the node key.
func collabArgs(name string, args []string, errw io.Writer, extra int) (string, *collab.Collaboration, *federation.NodeKey, []string, error) {
	fs := flags(name, errw)
	dir := fs.String("workspace", "", "workspace directory of this member's node")
	pos, err := parse(fs, args)
	if err != nil || *dir == "" || len(pos) != 1+extra {
		return "", nil, nil, nil, errUsage
	}
	_, k, err := nodeKey(*dir)
	if err != nil {
		return "", nil, nil, nil, err
	}
	c, err := collab.Load(*dir, pos[0])
	if err != nil {
		return "", nil, nil, nil, err
	}
	if m := c.MemberOfNode(k.Name); m == nil || m.Key != k.Verifier {
		return "", nil, nil, nil, fmt.Errorf("collaboration %s does not name this node (%s) with its key", c.ID, k.Name)
	}
	return *dir, c, k, pos[1:], nil
}

func collabSign(args []string, out, errw io.Writer) error {
	dir, c, k, _, err := collabArgs("collab sign", args, errw, 0)
	if err != nil {
		return err
	}
	if _, err := collab.Sign(dir, c, k); err != nil {
		return err
	}
	fmt.Fprintf(out, "node %s signed collaboration %s (hash %s); it is in force once every member signed this hash\n", k.Name, c.ID, c.Hash())
	return nil
}

func collabApprove(args []string, out, errw io.Writer) error {
	dir, c, k, rest, err := collabArgs("collab approve", args, errw, 1)
	if err != nil {
		return err
	}
	if _, err := collab.Approve(dir, c, rest[0], k); err != nil {
		return err
	}
	fmt.Fprintf(out, "node %s approved template %s of collaboration %s (template hash %s)\n", k.Name, rest[0], c.ID, c.Template(rest[0]).Hash())
	return nil
}

func collabLeave(args []string, out, errw io.Writer) error {
	dir, c, k, _, err := collabArgs("collab leave", args, errw, 0)
	if err != nil {
		return err
	}
	if _, err := collab.Leave(dir, c, k, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(out, "node %s left collaboration %s: from now on no query uses its data\n", k.Name, c.ID)
	return nil
}

func collabStatus(args []string, out, errw io.Writer) error {
	dir, c, k, _, err := collabArgs("collab status", args, errw, 0)
	if err != nil {
		return err
	}
	st, err := collab.ReadStatement(dir, c.ID, k.Name)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "collaboration %s, hash %s\n", c.ID, c.Hash())
	switch {
	case st.Left != nil:
		fmt.Fprintf(out, "this node left on %s\n", st.Left.Format(time.RFC3339))
	case st.Hash == c.Hash():
		fmt.Fprintln(out, "this node signed this hash")
	case st.Hash != "":
		fmt.Fprintln(out, "this node signed an earlier version: sign again")
	default:
		fmt.Fprintln(out, "this node has not signed")
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TEMPLATE\tHASH\tAPPROVED HERE")
	for _, t := range c.Templates {
		ok := "no"
		for _, a := range st.Approvals {
			if a.Template == t.Name && a.Hash == t.Hash() && st.Hash == c.Hash() {
				ok = "yes"
			}
		}
		fmt.Fprintf(tw, "%s\t%.16s…\t%s\n", t.Name, t.Hash(), ok)
	}
	return tw.Flush()
}

func collabQuery(args []string, out, errw io.Writer) error {
	fs := flags("collab query", errw)
	srv := fs.String("server", "http://127.0.0.1:8080", "the querier's node")
	tok := fs.String("token", "", "bearer token (default: $AIRLOCK_TOKEN)")
	purpose := fs.String("purpose", "", "purpose (default: the collaboration's, fraud_detection in the demo)")
	tpl := fs.String("template", "", "an approved template instead of SQL")
	asJSON := fs.Bool("json", false, "print the JSON answer")
	var params paramList
	fs.Var(&params, "param", "binds $1, $2, ... (repeatable)")
	pos, err := parse(fs, args)
	if *tok == "" {
		*tok = os.Getenv("AIRLOCK_TOKEN")
	}
	if err != nil || *tok == "" || len(pos) < 1 || len(pos) > 2 || (len(pos) == 2) == (*tpl != "") {
		return errUsage
	}
	if *purpose == "" {
		*purpose = "fraud_detection"
	}
	body := collab.QueryRequest{Template: *tpl, Params: params, Purpose: *purpose}
	if len(pos) == 2 {
		body.SQL = pos[1]
	}
	var res struct {
		Result     collab.Answer `json:"result"`
		AuditIndex uint64        `json:"audit_index"`
	}
	if err := call("POST", strings.TrimRight(*srv, "/")+"/v1/collaborations/"+pos[0]+"/query", *tok, body, &res); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printCells(out, res.Result.Columns, res.Result.Rows, res.Result.Notes)
	fmt.Fprintf(out, "collaboration %s (hash %.16s…), audit entry %d\n", res.Result.Collaboration, res.Result.Hash, res.AuditIndex)
	return nil
}

// printCells prints a released table and its notes.
func printCells(out io.Writer, columns []string, rows [][]any, notes []string) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(columns, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, v := range r {
			cells[i] = fmt.Sprint(v)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(out, "note:", n)
	}
}

// eachEntry calls f with every entry of the node's audit log, in order.
func eachEntry(ctx context.Context, h *auditHandle, f func(index uint64, e audit.Entry)) error {
	size, err := h.st.Size(ctx)
	if err != nil {
		return err
	}
	for start := uint64(0); start < size; start += 10000 {
		raw, err := h.st.Leaves(ctx, start, min(start+10000, size))
		if err != nil {
			return err
		}
		for i, l := range raw {
			e, err := audit.ParseEntry(l)
			if err != nil {
				return fmt.Errorf("entry %d: %w", start+uint64(i), err)
			}
			f(start+uint64(i), e)
		}
	}
	return nil
}

func demoCleanroom(args []string, out, errw io.Writer) error {
	fs := flags("demo cleanroom", errw)
	rows := fs.Int("rows", 5000, "counterparties per bank")
	banks := fs.Int("banks", 2, "2 (northbank, partnerbank) or 3 (and eastbank)")
	pos, err := parse(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	if err := demo.InitCleanroom(pos[0], *banks, *rows); err != nil {
		return err
	}
	fmt.Fprintf(out, "clean-room demo written to %s (collaboration %s, unsigned); see %s\n", pos[0], demo.CleanroomID, filepath.Join(pos[0], "README.md"))
	return nil
}

func collabUsage(args []string, out, errw io.Writer) error {
	fs := flags("collab usage", errw)
	dir := fs.String("workspace", "", "workspace directory of this member's node")
	dsn := fs.String("store", "", "state store DSN")
	pos, err := parse(fs, args)
	if err != nil || *dir == "" || len(pos) != 1 {
		return errUsage
	}
	c, err := collab.Load(*dir, pos[0])
	if err != nil {
		return err
	}
	h, err := openAudit(*dir, *dsn)
	if err != nil {
		return err
	}
	defer h.close()
	self := c.MemberOfNode(h.ws.Config.Node.Name)
	if self == nil {
		return fmt.Errorf("collaboration %s does not name this node", c.ID)
	}
	st, err := collab.ReadStatement(*dir, c.ID, self.Node)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTRY\tTIME\tROLE\tQUERIER\tTEMPLATE\tVERDICT")
	bad := 0
	if err := eachEntry(context.Background(), h, func(i uint64, e audit.Entry) {
		for _, u := range collab.Usage([]audit.Entry{e}, i, c, st, self) {
			if u.Verdict == collab.UseUnapproved {
				bad++
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", u.Index, u.Time.UTC().Format(time.RFC3339), u.Role, u.Querier, u.Template, u.Verdict)
		}
	}); err != nil {
		return err
	}
	tw.Flush()
	if bad > 0 {
		return fmt.Errorf("%d uses of this member's data in %s were not approved by it", bad, c.ID)
	}
	return nil
}
