// Package reference generates the workspace file reference
// (docs/workspace-reference.md) and a JSON Schema per file kind
// (docs/schema/*.schema.json) from the loader's own definitions: the
// structure and YAML names by reflection over package workspace's types,
// each field's meaning and default from its doc comment, and an example
// value from the demo workspace. A test regenerates both and fails when
// they differ from what is checked in, so code and reference cannot drift.
package reference

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/airlock-dev/airlock/internal/workspace"
)

// File is one kind of workspace file and the Go type it decodes into.
type File struct {
	Path, Schema, About string
	Type                reflect.Type
}

// Files are the workspace's YAML files.
var Files = []File{
	{"airlock.yaml", "airlock", "The node's configuration: its name and region, where its state lives, limits and authentication.", reflect.TypeOf(workspace.Config{})},
	{"principals.yaml", "principals", "Who may act: users and services, their organisation, roles and attributes (which policies and row filters see).", reflect.TypeOf(PrincipalsFile{})},
	{"datasets/<name>.yaml", "dataset", "One registered dataset: where its rows live and what each column means for privacy.", reflect.TypeOf(workspace.Manifest{})},
	{"agreements/<name>.yaml", "agreement", "One data-sharing agreement from an owner organisation to a recipient: datasets, purposes, validity, and the analysis rule per dataset.", reflect.TypeOf(workspace.Agreement{})},
	{"exports.yaml", "exports", "The owner's export controls: how each dataset is anonymised for release, and which methods within which bounds each tier may leave by, to which jurisdictions (see docs/export.md).", reflect.TypeOf(workspace.Exports{})},
	{"peers.yaml", "peers", "The other organisations' nodes this node knows: names, orgs, regions, URLs and pinned node keys (see docs/federation.md).", reflect.TypeOf(PeersFile{})},
}

// PeersFile is the shape of peers.yaml.
type PeersFile struct {
	// Peers are the known peer nodes.
	Peers []workspace.Peer `yaml:"peers"`
}

// PrincipalsFile is the shape of principals.yaml.
type PrincipalsFile struct {
	// Principals are the declared principals.
	Principals []workspace.Principal `yaml:"principals"`
}

// source is what the Go source says of the types: field comments, and the
// constants of named string types (their allowed values).
type source struct {
	docs   map[string]string   // "Type.Field" → comment
	consts map[string][]string // type name → values
}

func parseSource(dir string) (*source, error) {
	fset := token.NewFileSet()
	src := &source{docs: map[string]string{}, consts: map[string][]string{}}
	for _, d := range []string{dir, "."} {
		if err := src.parse(fset, d); err != nil {
			return nil, err
		}
	}
	return src, nil
}

func (src *source) parse(fset *token.FileSet, dir string) error {
	pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
	if err != nil {
		return err
	}
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, d := range f.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok {
					continue
				}
				for _, spec := range g.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						st, ok := s.Type.(*ast.StructType)
						if !ok {
							continue
						}
						for _, fld := range st.Fields.List {
							text := strings.TrimSpace(fld.Doc.Text() + " " + fld.Comment.Text())
							for _, n := range fld.Names {
								src.docs[s.Name.Name+"."+n.Name] = strings.Join(strings.Fields(text), " ")
							}
						}
					case *ast.ValueSpec:
						if g.Tok != token.CONST || s.Type == nil {
							continue
						}
						id, ok := s.Type.(*ast.Ident)
						if !ok {
							continue
						}
						for _, v := range s.Values {
							if lit, ok := v.(*ast.BasicLit); ok {
								src.consts[id.Name] = append(src.consts[id.Name], strings.Trim(lit.Value, `"`))
							}
						}
					}
				}
			}
		}
	}
	return nil
}

// field is one documented key.
type field struct {
	path, kind, doc, dflt, example string
	enum                           []string
}

var defaultRE = regexp.MustCompile(`(?i)\bdefault(?:s to)?:?\s+("[^"]*"|[^;,.)]+(?:\.\d+)?)`)

func kindOf(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "duration (e.g. 30s, 24h)"
	case t == reflect.TypeOf(time.Time{}):
		return "timestamp (RFC 3339)"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice:
		return "list of " + kindOf(t.Elem())
	case reflect.Map:
		return "map of string to " + kindOf(t.Elem())
	case reflect.Pointer:
		return kindOf(t.Elem())
	case reflect.Struct:
		return "object"
	}
	return t.String()
}

// walk lists the keys of t under prefix, depth first.
func walk(t reflect.Type, prefix string, src *source, out *[]field) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || name == "" {
			continue
		}
		path := prefix + name
		doc := src.docs[t.Name()+"."+f.Name]
		fd := field{path: path, kind: kindOf(f.Type), doc: doc}
		if m := defaultRE.FindStringSubmatch(doc); m != nil {
			fd.dflt = strings.TrimSpace(m[1])
		}
		if vals := src.consts[f.Type.Name()]; len(vals) > 0 {
			fd.enum = vals
		}
		*out = append(*out, fd)
		et := f.Type
		for et.Kind() == reflect.Pointer {
			et = et.Elem()
		}
		switch {
		case et.Kind() == reflect.Struct && et != reflect.TypeOf(time.Time{}):
			walk(et, path+".", src, out)
		case et.Kind() == reflect.Slice && et.Elem().Kind() == reflect.Struct:
			walk(et.Elem(), path+"[].", src, out)
		case et.Kind() == reflect.Map:
			vt := et.Elem()
			for vt.Kind() == reflect.Pointer {
				vt = vt.Elem()
			}
			switch {
			case vt.Kind() == reflect.Struct:
				walk(vt, path+".<key>.", src, out)
			case vt.Kind() == reflect.Slice && vt.Elem().Kind() == reflect.Struct:
				walk(vt.Elem(), path+".<key>[].", src, out)
			}
		}
	}
}

// examples reads values from the demo workspace's files, by key path.
func examples(demoDir string) map[string]map[string]string {
	out := map[string]map[string]string{}
	add := func(kind, rel string) {
		b, err := os.ReadFile(filepath.Join(demoDir, rel))
		if err != nil {
			return
		}
		var v any
		if yaml.Unmarshal(b, &v) != nil {
			return
		}
		if out[kind] == nil {
			out[kind] = map[string]string{}
		}
		var rec func(path string, v any)
		rec = func(path string, v any) {
			switch x := v.(type) {
			case map[string]any:
				for _, k := range slices.Sorted(maps.Keys(x)) {
					rec(path+k+".", x[k])
				}
			case []any:
				if len(x) > 0 {
					if _, ok := x[0].(map[string]any); ok {
						rec(strings.TrimSuffix(path, ".")+"[].", x[0])
						return
					}
				}
				set(out[kind], strings.TrimSuffix(path, "."), x)
			default:
				set(out[kind], strings.TrimSuffix(path, "."), x)
			}
		}
		rec("", v)
	}
	add("airlock", "airlock.yaml")
	add("principals", "principals.yaml")
	add("exports", "exports.yaml")
	matches, _ := filepath.Glob(filepath.Join(demoDir, "datasets", "*.yaml"))
	sort.Strings(matches)
	for _, m := range matches {
		add("dataset", filepath.Join("datasets", filepath.Base(m)))
	}
	matches, _ = filepath.Glob(filepath.Join(demoDir, "agreements", "*.yaml"))
	sort.Strings(matches)
	for _, m := range matches {
		add("agreement", filepath.Join("agreements", filepath.Base(m)))
	}
	// Map keys under rules and aggregates are names, not fields.
	for _, ex := range out {
		for _, k := range slices.Sorted(maps.Keys(ex)) {
			v := ex[k]
			nk := regexp.MustCompile(`^(rules|datasets|tiers)\.[^.\[]+(\.|\[)`).ReplaceAllString(k, "$1.<key>$2")
			nk = regexp.MustCompile(`^(rules\.<key>\.(aggregates|masks|public_groups))\..*$`).ReplaceAllString(nk, "$1")
			if nk != k {
				if _, ok := ex[nk]; !ok {
					ex[nk] = v
				}
			}
		}
	}
	return out
}

func set(m map[string]string, k string, v any) {
	if _, ok := m[k]; ok {
		return
	}
	switch x := v.(type) {
	case time.Time:
		m[k] = x.Format(time.RFC3339)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = fmt.Sprint(e)
		}
		m[k] = "[" + strings.Join(parts, ", ") + "]"
	default:
		m[k] = fmt.Sprint(x)
	}
}

// Generate returns the reference (Markdown) and the JSON Schemas (by file
// name), from the workspace package's source at srcDir and the demo
// workspace at demoDir.
func Generate(srcDir, demoDir string) (string, map[string][]byte, error) {
	src, err := parseSource(srcDir)
	if err != nil {
		return "", nil, err
	}
	ex := examples(demoDir)
	var md strings.Builder
	md.WriteString("# Workspace reference\n\n<!-- Generated by `make reference` from internal/workspace (types and doc comments) and the demo workspace (examples); a test fails when it is out of date. Do not edit by hand. -->\n\n")
	md.WriteString("A workspace is a directory: `airlock.yaml`, `principals.yaml`, `datasets/*.yaml`, `agreements/*.yaml`, optionally `exports.yaml` and `peers.yaml`, `policies/*.cedar` and `policies/tests/*.yaml`. Unknown keys are errors. Editors can check files against the JSON Schemas in `docs/schema/`.\n\n")
	schemas := map[string][]byte{}
	for _, f := range Files {
		var fields []field
		walk(f.Type, "", src, &fields)
		fmt.Fprintf(&md, "## `%s`\n\n%s JSON Schema: [`schema/%s.schema.json`](schema/%s.schema.json).\n\n| key | type | default | meaning | example |\n|---|---|---|---|---|\n", f.Path, f.About, f.Schema, f.Schema)
		for _, fd := range fields {
			kind := fd.kind
			if len(fd.enum) > 0 {
				kind += ": " + strings.Join(fd.enum, ", ")
			}
			fmt.Fprintf(&md, "| `%s` | %s | %s | %s | %s |\n", fd.path, cell(kind), cell(fd.dflt), cell(fd.doc), cell(code(ex[f.Schema][fd.path])))
		}
		md.WriteString("\n")
		s := schemaOf(f.Type, src)
		s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
		s["title"] = f.Path
		s["description"] = f.About
		b, _ := json.MarshalIndent(s, "", "  ")
		schemas[f.Schema+".schema.json"] = append(b, '\n')
	}
	md.WriteString("## `policies/*.cedar` and `policies/tests/*.yaml`\n\nCedar policies (https://www.cedarpolicy.com) decide every request: principals are `Principal` entities with `org`, `roles`, `region`, `country`, `clearance` and `attributes`; resources are `Dataset` entities with `owner`, `tier` and `region`; actions are `query`, `plan`, `audit_read`, `admin` and `export`; the context has `purpose`, `agreement`, `client_region`, `query_kind` (rows, aggregate, dp, export), `columns`, `classes`, `now`, `channel`, `peer`, `destination_region`, `peer_region`, `egress` and `export` (`method`, `destination_org`, `k`, `l`, `epsilon_milli`). Policy tests are a YAML list of cases `{name, principal, action, resource, context, expect: allow|deny}`; `airlock policy test DIR` runs them.\n")
	return md.String(), schemas, nil
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + s + "`"
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func schemaOf(t reflect.Type, src *source) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}
	case t == reflect.TypeOf(time.Time{}):
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.String:
		s := map[string]any{"type": "string"}
		if vals := src.consts[t.Name()]; len(vals) > 0 {
			s["enum"] = vals
		}
		return s
	case reflect.Int, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), src)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), src)}
	case reflect.Struct:
		props := map[string]any{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || name == "" {
				continue
			}
			p := schemaOf(f.Type, src)
			if d := src.docs[t.Name()+"."+f.Name]; d != "" {
				p["description"] = d
			}
			props[name] = p
		}
		return map[string]any{"type": "object", "additionalProperties": false, "properties": props}
	}
	return map[string]any{}
}
