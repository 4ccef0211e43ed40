package sqlop

import (
	"context"
	"strings"
	"testing"

	pgengine "github.com/airlock-dev/airlock/internal/engine/postgres"
	"github.com/airlock-dev/airlock/internal/query"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// With standard_conforming_strings=off a plain '...' literal treats
// backslash as an escape, so the review's literal \') OR true ... UNION ALL
// SELECT ... FROM other -- ended the literal early and read an unrelated
// table. Generated SQL must keep the analyst's text a constant under either
// setting, and the engine must refuse connections that turn it off.
func TestLiteralsStayLiteralWithoutStandardConformingStrings(t *testing.T) {
	ctx := context.Background()
	schema, conn := pgScratch(t, `CREATE TABLE %[1]s.x (u text, s text); INSERT INTO %[1]s.x VALUES ('u1', 'a'), ('u2', 'b');
		CREATE TABLE %[1]s.other (secret text); INSERT INTO %[1]s.other VALUES ('OTHER-TABLE-SECRET')`)
	m := &workspace.Manifest{Name: "x", Owner: "o", PrivacyUnit: "u", Columns: []workspace.Column{
		{Name: "u", Type: "text", Class: workspace.ClassIdentifier}, {Name: "s", Type: "text", Class: workspace.ClassAttribute}}}
	attacks := []string{
		`\') OR true UNION ALL SELECT secret FROM ` + schema + `.other --`,
		`\\') OR true --`, `\`, `'`, `\'`, `''\`, `a\' OR '1'='1`,
	}
	if _, err := conn.Exec(ctx, "SET standard_conforming_strings = off"); err != nil {
		t.Fatal(err)
	}
	for _, lit := range attacks {
		sql := "SELECT s AS v FROM x WHERE s = " + query.QuoteString(lit) + " OR s = 'a'"
		q, err := query.Parse(sql, func(string) *workspace.Manifest { return m }, nil)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		p, err := query.Planner{Dialect: query.Postgres}.Plan(q, map[string]*query.Grant{"x": {Access: query.AccessOwner, Table: schema + ".x"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Args) != 2 || p.Args[0] != lit || strings.Contains(p.SQL, lit) {
			t.Fatalf("literal %q is not a bind parameter: %s %v", lit, p.SQL, p.Args)
		}
		rows, err := conn.Query(ctx, p.SQL, p.Args...)
		if err != nil {
			t.Fatalf("literal %q: the generated SQL failed under standard_conforming_strings=off: %v\n%s", lit, err, p.SQL)
		}
		var got []string
		for rows.Next() {
			var v string
			rows.Scan(&v)
			got = append(got, v)
		}
		rows.Close()
		if strings.Join(got, ",") != "a" {
			t.Fatalf("literal %q escaped its quotes: rows %v, want [a]\n%s", lit, got, p.SQL)
		}
		// And it is the analyst's text exactly: a row holding it matches.
		var n int
		where := strings.SplitN(p.SQL, " WHERE ", 2)[1]
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM (SELECT $3::text AS s) x WHERE "+where, append(p.Args, lit)...).Scan(&n); err != nil || n != 1 {
			t.Fatalf("literal %q does not match its own text: %v, %d rows", lit, err, n)
		}
	}

	// The engine pins both settings whatever the DSN asks for.
	e, err := pgengine.Open(ctx, pgTestDSN()+"&options=-c%20standard_conforming_strings%3Doff%20-c%20client_encoding%3DLATIN1")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	r, err := e.Query(ctx, "SELECT current_setting('standard_conforming_strings'), current_setting('client_encoding')")
	if err != nil || r.Rows[0][0] != "on" || r.Rows[0][1] != "UTF8" {
		t.Fatalf("engine connection: %v %v, want standard_conforming_strings on and UTF8", err, r)
	}
}
