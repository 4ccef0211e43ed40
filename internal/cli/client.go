package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// apiError is the JSON refusal body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Rule    string `json:"rule"`
		Message string `json:"message"`
	} `json:"error"`
}

// call POSTs or GETs JSON against a server and decodes the answer into out.
func call(method, url, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 5 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e apiError
		if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
			return fmt.Errorf("refused (%d %s, rule %s): %s", resp.StatusCode, e.Error.Code, e.Error.Rule, e.Error.Message)
		}
		return fmt.Errorf("server answered %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(out)
}

type queryResult struct {
	Columns       []string       `json:"columns"`
	Rows          [][]any        `json:"rows"`
	Access        string         `json:"access"`
	Agreement     string         `json:"agreement"`
	PolicyVersion string         `json:"policy_version"`
	AuditIndex    uint64         `json:"audit_index"`
	Notes         []string       `json:"notes"`
	Plan          map[string]any `json:"plan"`
	DP            *dpReport      `json:"dp"`
	Budget        map[string]any `json:"budget"`
}

func printTable(w io.Writer, r *queryResult) {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(r.Columns, "\t"))
	seps := make([]string, len(r.Columns))
	for i, c := range r.Columns {
		seps[i] = strings.Repeat("-", max(len(c), 3))
	}
	fmt.Fprintln(tw, strings.Join(seps, "\t"))
	for _, row := range r.Rows {
		cells := make([]string, len(row))
		for i, v := range row {
			if v == nil {
				cells[i] = "NULL"
			} else {
				cells[i] = fmt.Sprint(v)
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	fmt.Fprintf(w, "(%d row(s); access %s", len(r.Rows), r.Access)
	if r.Agreement != "" {
		fmt.Fprintf(w, " under %s", r.Agreement)
	}
	fmt.Fprintf(w, "; audit #%d)\n", r.AuditIndex)
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	printDP(w, r.DP)
}

type dpReport struct {
	Epsilon   json.Number `json:"epsilon"`
	Delta     json.Number `json:"delta"`
	Cached    bool        `json:"cached"`
	Remaining json.Number `json:"remaining_epsilon"`
	Refresh   string      `json:"budget_refresh"`
	Bounds    string      `json:"contribution_bounds"`
	Threshold json.Number `json:"selection_threshold"`
	Columns   []struct {
		Column    string      `json:"column"`
		Mechanism string      `json:"mechanism"`
		Sigma     json.Number `json:"noise_sigma"`
		CI95      json.Number `json:"ci95_half_width"`
		Note      string      `json:"note"`
	} `json:"columns"`
}

func printDP(w io.Writer, d *dpReport) {
	if d == nil {
		return
	}
	spent := "ε=" + d.Epsilon.String() + ", δ=" + d.Delta.String()
	if d.Cached {
		spent = "nothing (stored answer)"
	}
	fmt.Fprintf(w, "differential privacy: spent %s; ε left %s until %s; %s\n", spent, d.Remaining, d.Refresh, d.Bounds)
	for _, c := range d.Columns {
		if c.Sigma != "" {
			fmt.Fprintf(w, "  %s: %s, σ=%s", c.Column, c.Mechanism, c.Sigma)
			if c.CI95 != "" {
				fmt.Fprintf(w, ", 95%% CI ±%s", c.CI95)
			}
			fmt.Fprintln(w)
		} else if c.Note != "" {
			fmt.Fprintf(w, "  %s: %s, %s\n", c.Column, c.Mechanism, c.Note)
		} else {
			fmt.Fprintf(w, "  %s: %s\n", c.Column, c.Mechanism)
		}
	}
}

var errUsage = errors.New("usage")
