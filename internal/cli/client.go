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
	Columns        []string         `json:"columns"`
	Rows           [][]any          `json:"rows"`
	RowsSuppressed int64            `json:"rows_suppressed"`
	Access         string           `json:"access"`
	Agreement      string           `json:"agreement"`
	PolicyVersion  string           `json:"policy_version"`
	AuditIndex     uint64           `json:"audit_index"`
	Notes          []string         `json:"notes"`
	Plan           map[string]any   `json:"plan"`
	DP             []map[string]any `json:"dp"`
	Budget         map[string]any   `json:"budget"`
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
	if r.RowsSuppressed > 0 {
		fmt.Fprintf(w, "; %d suppressed", r.RowsSuppressed)
	}
	fmt.Fprintf(w, "; audit #%d)\n", r.AuditIndex)
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

var errUsage = errors.New("usage")
