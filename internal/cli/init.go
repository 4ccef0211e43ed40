package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/engine"
	"github.com/airlock-dev/airlock/internal/engine/duckdb"
	pgengine "github.com/airlock-dev/airlock/internal/engine/postgres"
	"github.com/airlock-dev/airlock/internal/server"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// initWorkspace writes a workspace around an owner's own table: the
// manifest with columns and types read from the data and a suggested
// class per column (marked for review), a steward, an example partner and
// agreement, a base Cedar policy with tests; then checks it against the
// data and says what to edit next.
func initWorkspace(args []string, out, errw io.Writer) error {
	fs := flags("init", errw)
	data := fs.String("data", "", "the table: a CSV or Parquet file, or postgres://DSN#schema.table")
	name := fs.String("name", "", "dataset name (default: the file or table name)")
	owner := fs.String("owner", "owner", "your organisation")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *data == "" {
		return errUsage
	}
	dir := pos[0]
	if _, err := os.Stat(filepath.Join(dir, "airlock.yaml")); err == nil {
		return fmt.Errorf("%s already holds a workspace (airlock.yaml); init writes a new one", dir)
	}
	ctx := context.Background()
	src, cols, defaultName, err := inspectSource(ctx, dir, *data)
	if err != nil {
		return err
	}
	if *name == "" {
		*name = defaultName
	}
	if !identRE.MatchString(*name) {
		return fmt.Errorf("dataset name %q: use lower-case letters, digits and _ (--name)", *name)
	}
	if !identRE.MatchString(*owner) {
		return fmt.Errorf("owner %q: use lower-case letters, digits and _ (--owner)", *owner)
	}
	files := scaffold(*name, *owner, src, cols, time.Now().UTC())
	for rel, body := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
	}
	probs, err := server.Validate(ctx, dir)
	if err != nil {
		return err
	}
	if probs = probs.Errors(); len(probs) > 0 {
		return fmt.Errorf("the workspace written to %s does not validate (a bug in init; please report it):\n%w", dir, probs)
	}
	ws, err := workspace.Load(dir)
	if err != nil {
		return err
	}
	unit := ws.Datasets[*name].PrivacyUnit
	fmt.Fprintf(out, `workspace written to %s: dataset %s (%d columns), steward steward@%s, partner analyst@partner (org partner)

edit next:
  1. datasets/%s.yaml: review each column's class (lines marked "review"); the
     privacy unit is %s: it must name the person or entity to protect.
  2. agreements/%s-partner.yaml: the partner org, purposes, dates, and the rule
     (dimensions, aggregates, min_units).
  3. principals.yaml: your stewards and the partner's analysts.
  4. policies/base.cedar and policies/tests/base.yaml: then run
     airlock policy test %s
then:
  airlock validate %s
  airlock serve --workspace %s
  airlock token create --workspace %s --principal analyst@partner
  airlock query --token TOKEN --purpose research "SELECT count(*) FROM %s"
`, dir, *name, len(cols), *owner, *name, unit, *name, dir, dir, dir, dir, *name)
	return nil
}

var identRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// inspectSource reads the columns of the owner's table and the manifest
// source that points at it.
func inspectSource(ctx context.Context, dir, data string) (workspace.Source, []engine.Column, string, error) {
	if strings.HasPrefix(data, "postgres://") || strings.HasPrefix(data, "postgresql://") {
		dsn, table, ok := strings.Cut(data, "#")
		if !ok || table == "" {
			return workspace.Source{}, nil, "", fmt.Errorf("--data %s: name the table after '#': postgres://DSN#schema.table", redactDSN(dsn))
		}
		schema, rel, ok := strings.Cut(table, ".")
		if !ok {
			schema, rel = "public", table
		}
		db, err := pgengine.Open(ctx, dsn)
		if err != nil {
			return workspace.Source{}, nil, "", err
		}
		defer db.Close()
		cols, err := db.TableColumns(ctx, schema, rel)
		if err != nil {
			return workspace.Source{}, nil, "", err
		}
		if len(cols) == 0 {
			return workspace.Source{}, nil, "", fmt.Errorf("table %s.%s has no columns or does not exist", schema, rel)
		}
		for i := range cols {
			cols[i].Type = manifestType(cols[i].Type)
		}
		return workspace.Source{Postgres: dsn, Table: schema + "." + rel}, cols, sanitizeName(rel), nil
	}
	abs, err := filepath.Abs(data)
	if err != nil {
		return workspace.Source{}, nil, "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return workspace.Source{}, nil, "", err
	}
	eng, err := duckdb.Open(duckdb.Config{MemoryLimit: "1GB", Threads: 2})
	if err != nil {
		return workspace.Source{}, nil, "", err
	}
	defer eng.Close()
	cols, err := eng.FileColumns(ctx, abs)
	if err != nil {
		return workspace.Source{}, nil, "", fmt.Errorf("%s: %w", data, err)
	}
	for i := range cols {
		cols[i].Type = manifestType(cols[i].Type)
	}
	file := abs
	if absDir, err := filepath.Abs(dir); err == nil {
		if rel, err := filepath.Rel(absDir, abs); err == nil && !strings.HasPrefix(rel, "..") {
			file = rel
		}
	}
	base := strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs))
	return workspace.Source{File: file}, cols, sanitizeName(base), nil
}

func redactDSN(dsn string) string {
	return regexp.MustCompile(`://[^@/]*@`).ReplaceAllString(dsn, "://…@")
}

func sanitizeName(s string) string {
	s = strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9_]+`).ReplaceAllString(s, "_"))
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		s = "t_" + s
	}
	return s
}

// manifestType maps an engine's type name to a manifest type.
func manifestType(t string) string {
	u := strings.ToUpper(t)
	switch {
	case strings.Contains(u, "INT"):
		return "integer"
	case strings.HasPrefix(u, "DECIMAL"), strings.HasPrefix(u, "NUMERIC"):
		return "decimal"
	case strings.Contains(u, "DOUBLE"), u == "FLOAT", u == "REAL":
		return "double"
	case strings.HasPrefix(u, "TIMESTAMP"):
		return "timestamp"
	case u == "DATE":
		return "date"
	case u == "BOOLEAN", u == "BOOL":
		return "boolean"
	}
	return "text"
}

var classHints = []struct {
	class workspace.ColumnClass
	re    *regexp.Regexp
}{
	{workspace.ClassIdentifier, regexp.MustCompile(`(^|_)(id|uuid|ssn|email|e_mail|phone|mobile|iban|account|passport|nhs|mrn|name|first_name|last_name|full_name|surname|ip|ip_address|card|card_number)($|_)|_id$|^id_`)},
	{workspace.ClassQuasiIdentifier, regexp.MustCompile(`(^|_)(birth|dob|born|zip|postcode|postal|post_code|sex|gender|age|address|street|city|town|ethnicity|nationality|occupation)($|_)`)},
	{workspace.ClassSensitive, regexp.MustCompile(`(^|_)(diagnosis|icd|condition|disease|treatment|medication|amount|salary|income|wage|balance|cost|price|debt|credit|score|fraud|religion|health|result|grade)($|_)`)},
}

// suggestClass guesses a column's privacy class from its name; the owner
// reviews every suggestion.
func suggestClass(name string) workspace.ColumnClass {
	n := strings.ToLower(name)
	for _, h := range classHints {
		if h.re.MatchString(n) {
			return h.class
		}
	}
	return workspace.ClassAttribute
}

func yamlQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// scaffold is the workspace's files.
func scaffold(name, owner string, src workspace.Source, cols []engine.Column, now time.Time) map[string]string {
	classes := make([]workspace.ColumnClass, len(cols))
	unit := ""
	for i, c := range cols {
		classes[i] = suggestClass(c.Name)
		if unit == "" && classes[i] == workspace.ClassIdentifier && regexp.MustCompile(`(^|_)id$|_id$|^id_|uuid`).MatchString(strings.ToLower(c.Name)) {
			unit = c.Name
		}
	}
	if unit == "" {
		for i, c := range cols {
			if classes[i] == workspace.ClassIdentifier {
				unit = c.Name
				break
			}
		}
	}
	if unit == "" {
		unit = cols[0].Name
	}
	var m strings.Builder
	fmt.Fprintf(&m, "# Dataset %s, written by airlock init on %s. Review every line marked \"review\".\n", name, now.Format("2006-01-02"))
	fmt.Fprintf(&m, "name: %s\ndescription: %s\nowner: %s\ntier: confidential\nregion: eu\nsource:\n", name, yamlQuote("The "+name+" table of "+owner+"."), owner)
	if src.File != "" {
		fmt.Fprintf(&m, "  file: %s\n", yamlQuote(src.File))
	} else {
		fmt.Fprintf(&m, "  postgres: %s\n  table: %s\n", yamlQuote(src.Postgres), yamlQuote(src.Table))
	}
	fmt.Fprintf(&m, "# The person or entity a row is about: thresholds count distinct values of it. review\nprivacy_unit: %s\ncolumns:\n", unit)
	var dims []string
	var aggs []string
	for i, c := range cols {
		class := classes[i]
		if c.Name == unit {
			class = workspace.ClassIdentifier
		}
		fmt.Fprintf(&m, "  - {name: %s, type: %s, class: %s}  # suggested from the name; review\n", yamlQuote(c.Name), c.Type, class)
		switch {
		case class == workspace.ClassAttribute && (c.Type == "text" || c.Type == "boolean" || c.Type == "date"):
			dims = append(dims, yamlQuote(c.Name))
		case class != workspace.ClassIdentifier && (c.Type == "integer" || c.Type == "double" || c.Type == "decimal"):
			aggs = append(aggs, fmt.Sprintf("      %s: [count, sum, avg]", yamlQuote(c.Name)))
		}
	}
	var ag strings.Builder
	fmt.Fprintf(&ag, `# An example agreement: org "partner" may ask aggregate questions of %s
# for research, each answer row covering at least 10 distinct %s values.
id: %s-partner
description: Example agreement written by airlock init; edit the parties, purposes, dates and rule.
owner_org: %s
recipient_org: partner
datasets: [%s]
actions: [query, plan]
purposes: [research]
valid_from: %s
valid_until: %s
rules:
  %s:
    kind: aggregation
    min_units: 10
    dimensions: [%s]
    aggregates:
      "*": [count]
`, name, unit, name, owner, name, now.Format("2006-01-02T00:00:00Z"), now.AddDate(1, 0, 0).Format("2006-01-02T00:00:00Z"), name, strings.Join(dims, ", "))
	for _, a := range aggs {
		ag.WriteString(a + "\n")
	}
	principals := fmt.Sprintf(`# Who may act. Stewards of the owner org read their own data as stored.
principals:
  - {name: steward@%[1]s, org: %[1]s, roles: [steward], region: eu, clearance: high}
  - {name: analyst@partner, org: partner, roles: [analyst], region: eu, clearance: standard}
`, owner)
	policy := `// Deny by default: a request is allowed only if a permit matches and no
// forbid does. Agreements add their own terms (datasets, purposes, regions,
// validity, rules) whatever these policies say.

// Partners act under a data-sharing agreement in force.
@id("partners-under-agreement")
permit (principal, action in [Action::"query", Action::"plan"], resource)
when { context.agreement != "" };

// Stewards of the owning organisation administer and read their datasets.
@id("owner-stewards")
permit (principal, action, resource)
when { principal.org == resource.owner && principal.roles.contains("steward") };

// Row-level access never leaves the owning organisation.
@id("rows-stay-with-owner")
forbid (principal, action, resource)
when { context.query_kind == "rows" && principal.org != resource.owner };

// Nobody without a clearance reads anything.
@id("clearance-required")
forbid (principal, action, resource)
when { principal.clearance == "none" || principal.clearance == "" };
`
	tests := fmt.Sprintf(`# airlock policy test DIR runs these cases against policies/*.cedar.
- {name: partner aggregate under the agreement, principal: analyst@partner, action: query, resource: %[1]s, context: {agreement: %[1]s-partner, purpose: research, client_region: eu, query_kind: aggregate}, expect: allow}
- {name: partner without an agreement, principal: analyst@partner, action: query, resource: %[1]s, context: {purpose: research, client_region: eu, query_kind: aggregate}, expect: deny}
- {name: partner rows are forbidden even with an agreement, principal: analyst@partner, action: query, resource: %[1]s, context: {agreement: %[1]s-partner, client_region: eu, query_kind: rows}, expect: deny}
- {name: steward reads own data, principal: steward@%[2]s, action: query, resource: %[1]s, context: {client_region: eu, query_kind: rows}, expect: allow}
- {name: steward reads the audit log, principal: steward@%[2]s, action: audit_read, resource: %[1]s, context: {}, expect: allow}
- {name: partner cannot read the audit log, principal: analyst@partner, action: audit_read, resource: %[1]s, context: {}, expect: deny}
`, name, owner)
	return map[string]string{
		"airlock.yaml":                         fmt.Sprintf("# Node configuration (see docs/workspace-reference.md).\nnode:\n  name: %s\n  region: eu\ndata_dir: .airlock\n", owner),
		"principals.yaml":                      principals,
		"datasets/" + name + ".yaml":           m.String(),
		"agreements/" + name + "-partner.yaml": ag.String(),
		"policies/base.cedar":                  policy,
		"policies/tests/base.yaml":             tests,
		".gitignore":                           ".airlock/\n",
	}
}
