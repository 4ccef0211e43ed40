package server_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-dev/airlock/internal/audit"
	"github.com/airlock-dev/airlock/internal/cli"
	"github.com/airlock-dev/airlock/internal/identity"
)

// auditedSince returns the entries appended to the log from index from.
func auditedSince(t *testing.T, h *harness, from uint64) []audit.Entry {
	t.Helper()
	ctx := context.Background()
	size, err := h.node.Store.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := h.node.Store.Leaves(ctx, from, size)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for _, b := range raw {
		e, err := audit.ParseEntry(b)
		if err != nil {
			t.Fatalf("unparseable entry %s", b)
		}
		out = append(out, e)
	}
	return out
}

// TestEveryOperationIsAuditedOnce: each kind of operation, on each
// channel, allowed or refused, leaves exactly one deciding audit entry
// (plus the reserve entry of a charge) with its event code, request id,
// principal, channel, decision and rule; and the request id the client
// sees is the entry's.
func TestEveryOperationIsAuditedOnce(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	analyst, steward, auditor := h.tokens["analyst@partner"], h.tokens["steward@stmary"], h.tokens["auditor@regulator"]
	bogus, bogusID, _, _ := identity.NewToken()
	type want struct {
		event, principal, channel, decision, rule string
		reserve                                   bool
		check                                     func(t *testing.T, e audit.Entry)
	}
	type op struct {
		name string
		do   func(t *testing.T) (requestID string)
		want want
	}
	query := func(token, body string) func(t *testing.T) string {
		return func(t *testing.T) string {
			return h.do(t, "POST", "/v1/query", token, []byte(body)).RequestID
		}
	}
	get := func(token, path string) func(t *testing.T) string {
		return func(t *testing.T) string {
			return h.do(t, "GET", path, token, nil).RequestID
		}
	}
	wire := func(principal, token, purpose, sql string, args ...any) func(t *testing.T) string {
		return func(t *testing.T) string {
			conn := h.pgConnString(principal, purpose)
			conn = strings.Replace(conn, "password="+h.tokens[principal], "password="+token, 1)
			c, err := pgx.Connect(ctx, conn)
			if err != nil {
				var pe *pgconn.PgError
				if errors.As(err, &pe) {
					return ""
				}
				t.Fatalf("connect: %v", err)
			}
			defer c.Close(ctx)
			rows, err := c.Query(ctx, sql, args...)
			if err == nil {
				for rows.Next() {
				}
				rows.Close()
				err = rows.Err()
			}
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				return strings.TrimPrefix(pe.Detail, "request_id=")
			}
			return ""
		}
	}
	ops := []op{
		{"http query with parameters", query(analyst, `{"sql": "SELECT hospital, count(*) FROM visits WHERE diagnosis <> $1 GROUP BY hospital", "purpose": "research", "params": ["I10"]}`),
			want{event: "AL1000I", principal: "analyst@partner", channel: "http", decision: "allow", check: func(t *testing.T, e audit.Entry) {
				if len(e.Params) != 1 || e.Params[0] != `"I10"` || e.Agreement != "partner-visits-research" || e.RowsReturned == 0 || !strings.Contains(e.SQL, "$1") {
					t.Errorf("entry %+v: want the bound parameter, agreement and rows", e)
				}
			}}},
		{"http query refused", query(analyst, `{"sql": "SELECT count(*) FROM visits", "purpose": "marketing"}`),
			want{event: "AL1000W", principal: "analyst@partner", channel: "http", decision: "deny", rule: "agreement.purpose"}},
		{"http plan", func(t *testing.T) string {
			return h.do(t, "POST", "/v1/query/plan", analyst, []byte(`{"sql": "SELECT count(*) FROM visits", "purpose": "research"}`)).RequestID
		}, want{event: "AL1001I", principal: "analyst@partner", channel: "http", decision: "allow"}},
		{"http bad body", query(analyst, `{"sql": 1}`),
			want{event: "AL1000W", principal: "analyst@partner", channel: "http", decision: "deny", rule: "http.body"}},
		{"http DP query", query(analyst, `{"sql": "SELECT region, count(*) FROM visits GROUP BY region", "purpose": "research", "agreement": "partner-visits-research"}`),
			want{event: "AL1000I", principal: "analyst@partner", channel: "http", decision: "allow"}},
		{"http unknown token", query(bogus, `{"sql": "SELECT 1", "purpose": "research"}`),
			want{event: "AL0100W", channel: "http", decision: "deny", rule: "authn.invalid", check: func(t *testing.T, e audit.Entry) {
				if e.Credential != "token:"+bogusID {
					t.Errorf("credential %q, want the token's public id", e.Credential)
				}
			}}},
		{"http no token", query("", `{}`), want{event: "AL0100W", channel: "http", decision: "deny", rule: "authn.missing"}},
		{"http catalog", get(analyst, "/v1/datasets"), want{event: "AL1100I", principal: "analyst@partner", channel: "http", decision: "allow"}},
		{"http audit read", get(steward, "/v1/audit?limit=3"), want{event: "AL1300I", principal: "steward@stmary", channel: "http", decision: "allow"}},
		{"http audit read refused", get(analyst, "/v1/audit"), want{event: "AL1300W", principal: "analyst@partner", channel: "http", decision: "deny", rule: "policy"}},
		{"http raw audit read", get(auditor, "/v1/audit/entries?start=0&end=2"), want{event: "AL1300I", principal: "auditor@regulator", channel: "http", decision: "allow"}},
		{"http bad audit parameter", get(steward, "/v1/audit?limit=x"), want{event: "AL1300W", principal: "steward@stmary", channel: "http", decision: "deny", rule: "http.parameter"}},
		{"http metrics", get(auditor, "/metrics"), want{event: "AL1301I", principal: "auditor@regulator", channel: "http", decision: "allow"}},
		{"http metrics refused", get(analyst, "/metrics"), want{event: "AL1301W", principal: "analyst@partner", channel: "http", decision: "deny", rule: "policy"}},
		{"http revoke refused", func(t *testing.T) string {
			return h.do(t, "POST", "/v1/agreements/partner-visits-research/revoke", analyst, nil).RequestID
		}, want{event: "AL1400W", principal: "analyst@partner", channel: "http", decision: "deny", rule: "agreement.revoke"}},
		{"wire query (Describe is not audited, Execute is)", wire("analyst@partner", analyst, "research", "SELECT hospital, count(*) FROM visits GROUP BY hospital"),
			want{event: "AL1000I", principal: "analyst@partner", channel: "pgwire", decision: "allow"}},
		{"wire query refused at Describe", wire("analyst@partner", analyst, "marketing", "SELECT count(*) FROM visits"),
			want{event: "AL1002W", principal: "analyst@partner", channel: "pgwire", decision: "deny", rule: "agreement.purpose"}},
		{"wire parameters that do not match the statement", func(t *testing.T) string {
			pc := preparedOnWire(t, h, "s1", "SELECT country, count(*) FROM transactions WHERE country = $1 GROUP BY country", nil)
			res := pc.ExecPrepared(ctx, "s1", [][]byte{[]byte("DE"), []byte("x")}, nil, nil).Read()
			var pe *pgconn.PgError
			if !errors.As(res.Err, &pe) {
				t.Fatalf("got %v", res.Err)
			}
			return strings.TrimPrefix(pe.Detail, "request_id=")
		}, want{event: "AL1000W", principal: "fraud@partnerbank", channel: "pgwire", decision: "deny", rule: "sql.parameter"}},
		{"wire SET", wire("analyst@partner", analyst, "", "SET airlock.purpose = research"),
			want{event: "AL1200I", principal: "analyst@partner", channel: "pgwire", decision: "allow", check: func(t *testing.T, e audit.Entry) {
				if e.SQL != "SET airlock.purpose = research" {
					t.Errorf("session entry SQL %q", e.SQL)
				}
			}}},
		{"wire SHOW", wire("analyst@partner", analyst, "research", "SHOW airlock.purpose"),
			want{event: "AL1200I", principal: "analyst@partner", channel: "pgwire", decision: "allow"}},
		{"wire catalog read", wire("analyst@partner", analyst, "research", "SELECT table_name FROM information_schema.tables"),
			want{event: "AL1101I", principal: "analyst@partner", channel: "pgwire", decision: "allow"}},
		{"wire failed authentication", wire("analyst@partner", bogus, "research", "SELECT 1"),
			want{event: "AL0100W", channel: "pgwire", decision: "deny", rule: "authn.invalid", check: func(t *testing.T, e audit.Entry) {
				if e.Credential != "token:"+bogusID {
					t.Errorf("credential %q, want the token's public id", e.Credential)
				}
			}}},
		{"http revoke", func(t *testing.T) string {
			return h.do(t, "POST", "/v1/agreements/partner-visits-expired/revoke?reason=test", steward, nil).RequestID
		}, want{event: "AL1400I", principal: "steward@stmary", channel: "http", decision: "allow"}},
		{"cli revoke", func(t *testing.T) string {
			var out, errw bytes.Buffer
			if code := cli.Main([]string{"agreement", "revoke", "--workspace", h.dir, "--by", "ops@stmary", "--reason", "drill", "stmary-internal-visits"}, &out, &errw); code != 0 {
				t.Fatalf("cli exit %d: %s", code, errw.String())
			}
			return ""
		}, want{event: "AL1400I", principal: "ops@stmary", channel: "cli", decision: "allow", check: func(t *testing.T, e audit.Entry) {
			if e.Agreement != "stmary-internal-visits" || e.Message != "drill" {
				t.Errorf("revocation entry %+v", e)
			}
		}}},
	}
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			before, _ := h.node.Store.Size(ctx)
			id := o.do(t)
			entries := auditedSince(t, h, before)
			var deciding []audit.Entry
			reserves := 0
			intents := 0
			for _, e := range entries {
				if e.Decision == audit.DecisionReserve {
					reserves++
					continue
				}
				if e.Decision == audit.DecisionIntent {
					intents++
					if e.Event != "AL1501I" || e.Agreement == "" {
						t.Errorf("intent entry %+v", e)
					}
					continue
				}
				deciding = append(deciding, e)
			}
			if len(deciding) != 1 {
				t.Fatalf("%d deciding entries, want exactly 1: %+v", len(deciding), entries)
			}
			e := deciding[0]
			w := o.want
			if e.Event != w.event || e.Principal != w.principal || e.Channel != w.channel || e.Decision != w.decision || e.Rule != w.rule {
				t.Errorf("entry event=%s principal=%q channel=%s decision=%s rule=%q, want %s %q %s %s %q",
					e.Event, e.Principal, e.Channel, e.Decision, e.Rule, w.event, w.principal, w.channel, w.decision, w.rule)
			}
			if e.RequestID == "" || (id != "" && e.RequestID != id) {
				t.Errorf("entry request id %q, the client saw %q", e.RequestID, id)
			}
			if e.Decision == "allow" && e.ChargeID != "" {
				if reserves != 1 || entries[0].ChargeID != e.ChargeID || entries[0].Event != "AL1500I" {
					t.Errorf("a charge must be announced once by a reserve entry with its id: %+v", entries)
				}
			} else if reserves != 0 {
				t.Errorf("%d reserve entries without a charge", reserves)
			}
			if (w.event == "AL1400I") != (intents == 1) {
				t.Errorf("%d intent entries; a revocation is announced once, before it is stored, nothing else is", intents)
			}
			if strings.Contains(string(mustCanonical(t, e)), bogus) {
				t.Errorf("the audit entry holds a token secret")
			}
			if w.check != nil {
				w.check(t, e)
			}
		})
	}
}

func mustCanonical(t *testing.T, e audit.Entry) []byte {
	b, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
