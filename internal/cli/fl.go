package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/federation"
	"github.com/airlock-dev/airlock/internal/fedjob"
	"github.com/airlock-dev/airlock/internal/fl"
	"github.com/airlock-dev/airlock/internal/server"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// nodeKey loads a workspace and its node key.
func nodeKey(dir string) (*workspace.Workspace, *federation.NodeKey, error) {
	ws, err := workspace.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	skey, vkey, err := audit.LoadOrCreateKey(server.DataDir(ws), ws.Config.Node.Name)
	if err != nil {
		return nil, nil, err
	}
	k, err := federation.ParseSigner(skey, vkey)
	return ws, k, err
}

func flApprove(args []string, out, errw io.Writer) error {
	fs := flags("fl approve", errw)
	dir := fs.String("workspace", "", "workspace directory of this member's node")
	filter := fs.String("row-filter", "", "a predicate over this member's dataset: the job reads only the rows it admits")
	pos, err := parse(fs, args)
	if err != nil || *dir == "" || len(pos) != 1 {
		return errUsage
	}
	b, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	j, err := fedjob.Parse(b)
	if err != nil {
		return err
	}
	ws, k, err := nodeKey(*dir)
	if err != nil {
		return err
	}
	_, m := j.Member(k.Name)
	if m == nil || !federation.SameKey(m.Key, k.Verifier) {
		return fmt.Errorf("job %s does not name this node (%s) with its key", j.ID, k.Name)
	}
	if ws.Datasets[m.Dataset] == nil {
		return fmt.Errorf("job %s reads dataset %s, which this workspace does not have", j.ID, m.Dataset)
	}
	if _, err := fedjob.Approve(*dir, j, k.Name, k, *filter, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(out, "node %s approved job %s (hash %s) for member %s", k.Name, j.ID, j.Hash(), m.Org)
	if *filter != "" {
		fmt.Fprintf(out, ", reading only rows where %s", *filter)
	}
	fmt.Fprintln(out)
	return nil
}

func flWithdraw(args []string, out, errw io.Writer) error {
	fs := flags("fl withdraw", errw)
	dir := fs.String("workspace", "", "workspace directory of this member's node")
	pos, err := parse(fs, args)
	if err != nil || *dir == "" || len(pos) != 1 {
		return errUsage
	}
	_, k, err := nodeKey(*dir)
	if err != nil {
		return err
	}
	if err := fedjob.Withdraw(*dir, pos[0], k.Name, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(out, "node %s withdrew from job %s: its data is not used from the next round on\n", k.Name, pos[0])
	return nil
}

func flRun(args []string, out, errw io.Writer) error {
	fs := flags("fl run", errw)
	srv := fs.String("server", "http://127.0.0.1:8080", "the coordinator's node")
	tok := fs.String("token", "", "bearer token (default: $AIRLOCK_TOKEN)")
	purpose := fs.String("purpose", "", "purpose (default: the job's)")
	model := fs.String("out", "", "write the trained model here (training jobs)")
	asJSON := fs.Bool("json", false, "print the progress lines as JSON")
	pos, err := parse(fs, args)
	if *tok == "" {
		*tok = os.Getenv("AIRLOCK_TOKEN")
	}
	if err != nil || *tok == "" || len(pos) != 1 {
		return errUsage
	}
	b, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	j, err := fedjob.Parse(b)
	if err != nil {
		return err
	}
	if *purpose == "" {
		*purpose = j.Purpose
	}
	body, _ := json.Marshal(map[string]string{"job": string(b), "purpose": *purpose})
	req, err := http.NewRequest("POST", strings.TrimRight(*srv, "/")+"/v1/jobs/run", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+*tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e apiError
		if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
			return fmt.Errorf("refused (%d %s, rule %s): %s", resp.StatusCode, e.Error.Code, e.Error.Rule, e.Error.Message)
		}
		return fmt.Errorf("server answered %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for sc.Scan() {
		if *asJSON {
			fmt.Fprintln(out, sc.Text())
		}
		var line struct {
			fedjob.Event
			Error *struct{ Code, Rule, Message string } `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("a malformed progress line: %v", err)
		}
		switch {
		case line.Error != nil:
			return fmt.Errorf("refused (%s, rule %s): %s", line.Error.Code, line.Error.Rule, line.Error.Message)
		case line.Round != nil && !*asJSON:
			printRound(out, j, line.Round)
		case line.Done:
			if !*asJSON {
				printSpent(out, line.Privacy)
			}
			if line.Model != nil && *model != "" {
				mb, _ := json.MarshalIndent(line.Model, "", "  ")
				if err := os.WriteFile(*model, append(mb, '\n'), 0o644); err != nil {
					return err
				}
				fmt.Fprintf(out, "model written to %s\n", *model)
			}
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("the coordinator ended the stream before the job finished")
}

func printRound(out io.Writer, j *fedjob.Job, r *fedjob.RoundResult) {
	what := "accuracy"
	if j.Train != nil && j.Train.Model == fl.Linear {
		what = "mean squared error"
	}
	switch {
	case r.Evaluation && r.Score != nil:
		fmt.Fprintf(out, "final model: %s %.4f over %d rows of %d members (%s)", what, *r.Score, r.Rows, len(r.Survivors), strings.Join(r.Survivors, ", "))
	case r.Evaluation:
		fmt.Fprintf(out, "final model: not measured")
	default:
		rounds := j.Rounds()
		if j.Train != nil {
			rounds = j.Train.Rounds
		}
		fmt.Fprintf(out, "round %d/%d: %d members (%s)", r.Round, rounds, len(r.Survivors), strings.Join(r.Survivors, ", "))
		if r.Score != nil {
			fmt.Fprintf(out, ", incoming model's %s %.4f over %d rows", what, *r.Score, r.Rows)
		}
	}
	if r.Rho > 0 {
		fmt.Fprintf(out, ", ρ %.4g each", r.Rho)
	}
	fmt.Fprintln(out)
	for org, why := range r.Dropped {
		fmt.Fprintf(out, "  dropped %s: %s\n", org, why)
	}
	if r.Table != nil {
		printCells(out, r.Table.Columns, r.Table.Rows, r.Table.Notes)
	}
}

func printSpent(out io.Writer, spent []fedjob.Spent) {
	fmt.Fprintln(out, "privacy spent per member:")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  member\tnode\trounds\tρ\tε (at δ)")
	for _, s := range spent {
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%.4g\t%.3g (δ %g)\n", s.Org, s.Node, s.Rounds, s.Rho, s.Epsilon, s.Delta)
	}
	tw.Flush()
}

func flPredict(args []string, out, errw io.Writer) error {
	fs := flags("fl predict", errw)
	modelPath := fs.String("model", "", "a model written by fl run --out")
	input := fs.String("input", "", "CSV with a header naming the model's feature columns (and optionally its label)")
	quiet := fs.Bool("summary", false, "print only the score, not each prediction")
	pos, err := parse(fs, args)
	if err != nil || *modelPath == "" || *input == "" || len(pos) != 0 {
		return errUsage
	}
	b, err := os.ReadFile(*modelPath)
	if err != nil {
		return err
	}
	var m fedjob.Model
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s is not a model: %v", *modelPath, err)
	}
	shape := fl.Model{Kind: m.Kind, Dim: m.Schema.Dim(), Hidden: m.Hidden}
	if err := shape.Check(); err != nil || len(m.Weights) != shape.Size() {
		return fmt.Errorf("%s: a %s model with %d weights does not fit its schema", *modelPath, m.Kind, len(m.Weights))
	}
	f, err := os.Open(*input)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	head, err := r.Read()
	if err != nil {
		return err
	}
	hasLabel := false
	for _, h := range head {
		hasLabel = hasLabel || h == m.Schema.Label
	}
	var score float64
	n := 0
	w := bufio.NewWriter(out)
	defer w.Flush()
	row := map[string]string{}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		for i, h := range head {
			row[h] = rec[i]
		}
		if !hasLabel {
			row[m.Schema.Label] = "0"
		}
		x, y := m.Schema.Encode(row)
		p := shape.Predict(m.Weights, x)
		if hasLabel {
			score += shape.Metric(m.Weights, x, y)
		}
		n++
		if *quiet {
			continue
		}
		if shape.Classifier() {
			class := "not " + m.Schema.Positive
			if p >= 0.5 {
				class = m.Schema.Positive
			}
			fmt.Fprintf(w, "%.4f\t%s\n", p, class)
		} else {
			fmt.Fprintf(w, "%.4f\n", p*m.Schema.LabelStd+m.Schema.LabelMean)
		}
	}
	if hasLabel && n > 0 {
		if shape.Classifier() {
			fmt.Fprintf(w, "accuracy %.4f over %d rows (model of job %s)\n", score/float64(n), n, m.Job)
		} else {
			fmt.Fprintf(w, "root mean squared error %.4f over %d rows (model of job %s)\n", math.Sqrt(score/float64(n))*m.Schema.LabelStd, n, m.Job)
		}
	}
	return nil
}

func demoJob(d demo.JobDemo, name string) func(args []string, out, errw io.Writer) error {
	return func(args []string, out, errw io.Writer) error {
		fs := flags(name, errw)
		rows := fs.Int("stores", 25, "stores per retailer and region (demand demo)")
		pos, err := parse(fs, args)
		if err != nil || len(pos) != 1 {
			return errUsage
		}
		if err := demo.InitJob(pos[0], d, *rows); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s demo written to %s (job %s, unapproved); see %s\n", d.Kind, pos[0], filepath.Join(pos[0], d.Job+".yaml"), filepath.Join(pos[0], "README.md"))
		return nil
	}
}

func flUsage(args []string, out, errw io.Writer) error {
	fs := flags("fl usage", errw)
	dir := fs.String("workspace", "", "workspace directory of this member's node")
	dsn := fs.String("store", "", "state store DSN")
	pos, err := parse(fs, args)
	if err != nil || *dir == "" || len(pos) != 1 {
		return errUsage
	}
	h, err := openAudit(*dir, *dsn)
	if err != nil {
		return err
	}
	defer h.close()
	// Only this job's entries are kept: a round's unmasking may come many
	// entries after its contribution.
	var mine []audit.Entry
	var at []uint64
	if err := eachEntry(context.Background(), h, func(i uint64, e audit.Entry) {
		if e.Extra["job"] == pos[0] {
			mine, at = append(mine, e), append(at, i)
		}
	}); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTRY\tTIME\tROUND\tANALYST\tJOB HASH\tρ\tUNMASKED FOR")
	var rho float64
	uses := fedjob.Usage(mine, 0, pos[0])
	for _, u := range uses {
		who := u.Survivors
		if who == "" {
			who = "(not unmasked here: the round failed, or this node dropped)"
		}
		rho += u.Rho
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%.12s…\t%.4g\t%s\n", at[u.Index], u.Time.Format(time.RFC3339), u.Round, u.Analyst, u.Hash, u.Rho, who)
	}
	tw.Flush()
	fmt.Fprintf(out, "%d rounds of job %s read this node's data; ρ charged %.4g\n", len(uses), pos[0], rho)
	return nil
}
