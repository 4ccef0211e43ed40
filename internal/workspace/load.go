// Package workspace reads an Airlock workspace: the declarative files a data
// owner keeps in version control (node config, dataset manifests,
// principals, agreements, Cedar policies and their tests). A Workspace is an
// immutable snapshot; the server swaps snapshots on reload.
//
// # Layout
//
//	airlock.yaml              node config (Config)
//	principals.yaml           principals: [...]
//	peers.yaml                peers: [...] (other organisations' nodes)
//	exports.yaml              export controls (Exports)
//	datasets/<name>.yaml      one Manifest per dataset
//	agreements/<id>.yaml      one Agreement per file
//	policies/*.cedar          Cedar policies
//	policies/tests/*.yaml     policy test cases
package workspace

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Workspace is one loaded snapshot of a workspace directory.
type Workspace struct {
	Dir        string
	Config     Config
	Datasets   map[string]*Manifest
	Principals map[string]*Principal
	Agreements map[string]*Agreement
	// Peers are the other nodes this node knows, by name.
	Peers map[string]*Peer
	// Exports are the export controls (exports.yaml), nil when absent.
	Exports     *Exports
	Policies    map[string][]byte // file name -> Cedar text
	PolicyTests map[string][]byte // file name -> YAML
	// Digest is a hash over every file read, to detect changes.
	Digest string
}

// Problem is one validation finding, located in a file.
type Problem struct {
	File string
	Line int
	Msg  string
	Fix  string
	// Warning marks advice that does not stop the workspace from loading.
	Warning bool
}

// Errors are the problems that are not warnings.
func (ps Problems) Errors() Problems {
	var out Problems
	for _, p := range ps {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out
}

func (p Problem) String() string {
	s := p.File
	if p.Warning {
		s = "warning: " + s
	}
	if p.Line > 0 {
		s += fmt.Sprintf(":%d", p.Line)
	}
	s += ": " + p.Msg
	if p.Fix != "" {
		s += " (fix: " + p.Fix + ")"
	}
	return s
}

// Problems is a list of findings; as an error it prints one per line.
type Problems []Problem

func (ps Problems) Error() string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads and checks a workspace directory. Structural problems (bad
// YAML, unknown fields, dangling references) are returned together as
// Problems; checks against the data itself are the engine's (see Validate in
// package server).
func Load(dir string) (*Workspace, error) {
	ws := &Workspace{
		Dir:         dir,
		Datasets:    map[string]*Manifest{},
		Principals:  map[string]*Principal{},
		Agreements:  map[string]*Agreement{},
		Peers:       map[string]*Peer{},
		Policies:    map[string][]byte{},
		PolicyTests: map[string][]byte{},
	}
	var probs Problems
	digest := sha256.New()
	read := func(rel string) ([]byte, bool) {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				probs = append(probs, Problem{File: rel, Msg: err.Error()})
			}
			return nil, false
		}
		fmt.Fprintf(digest, "%s\x00%d\x00", rel, len(b))
		digest.Write(b)
		return b, true
	}
	if b, ok := read("airlock.yaml"); ok {
		probs = append(probs, decode("airlock.yaml", b, &ws.Config)...)
	}
	ws.Config.CheckAndSetDefaults()

	if b, ok := read("principals.yaml"); ok {
		var f struct {
			Principals []*Principal `yaml:"principals"`
		}
		probs = append(probs, decode("principals.yaml", b, &f)...)
		for _, p := range f.Principals {
			if p.Name == "" || p.Org == "" {
				probs = append(probs, Problem{File: "principals.yaml", Line: lineOf(b, p.Name), Msg: "a principal needs a name and an org"})
				continue
			}
			if _, dup := ws.Principals[p.Name]; dup {
				probs = append(probs, Problem{File: "principals.yaml", Line: lineOf(b, p.Name), Msg: fmt.Sprintf("principal %q is declared twice", p.Name)})
			}
			ws.Principals[p.Name] = p
		}
	}
	if b, ok := read(PeersFile); ok {
		peers, ps := ParsePeers(b)
		probs = append(probs, ps...)
		for _, p := range peers {
			ws.Peers[p.Name] = p
		}
	}
	var exportsFile []byte
	if b, ok := read(ExportsFile); ok {
		ex := &Exports{}
		probs = append(probs, decode(ExportsFile, b, ex)...)
		ws.Exports, exportsFile = ex, b
	}
	for _, rel := range glob(dir, "datasets", ".yaml") {
		b, _ := read(rel)
		m := &Manifest{}
		ps := decode(rel, b, m)
		probs = append(probs, ps...)
		if len(ps) > 0 {
			continue
		}
		m.File = rel
		probs = append(probs, checkManifest(rel, b, m)...)
		if _, dup := ws.Datasets[m.Name]; dup {
			probs = append(probs, Problem{File: rel, Msg: fmt.Sprintf("dataset %q is declared twice", m.Name)})
		}
		ws.Datasets[m.Name] = m
	}
	for _, m := range ws.Datasets {
		if f := m.Source.Federation; f != nil {
			for _, p := range f.Members {
				if ws.Peers[p] == nil {
					probs = append(probs, Problem{File: m.File, Msg: fmt.Sprintf("federation member %q is not a peer in %s", p, PeersFile), Fix: "airlock peer add"})
				}
			}
		}
	}
	if ws.Exports != nil {
		probs = append(probs, checkExports(exportsFile, ws.Exports, ws)...)
	}
	for _, rel := range glob(dir, "agreements", ".yaml") {
		b, _ := read(rel)
		a := &Agreement{}
		ps := decode(rel, b, a)
		probs = append(probs, ps...)
		if len(ps) > 0 {
			continue
		}
		a.File = rel
		probs = append(probs, checkAgreement(rel, b, a, ws)...)
		if _, dup := ws.Agreements[a.ID]; dup {
			probs = append(probs, Problem{File: rel, Msg: fmt.Sprintf("agreement %q is declared twice", a.ID)})
		}
		ws.Agreements[a.ID] = a
	}
	for _, rel := range glob(dir, "policies", ".cedar") {
		b, _ := read(rel)
		ws.Policies[filepath.Base(rel)] = b
	}
	for _, rel := range glob(dir, filepath.Join("policies", "tests"), ".yaml") {
		b, _ := read(rel)
		ws.PolicyTests[filepath.Base(rel)] = b
	}
	if len(ws.Policies) == 0 {
		probs = append(probs, Problem{File: "policies/", Msg: "no Cedar policies: every request would be denied", Fix: "add policies/*.cedar"})
	}
	ws.Digest = hex.EncodeToString(digest.Sum(nil))
	if len(probs) > 0 {
		return ws, probs
	}
	return ws, nil
}

func glob(dir, sub, ext string) []string {
	entries, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ext) {
			out = append(out, filepath.Join(sub, e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

var yamlLine = regexp.MustCompile(`line (\d+):? ?`)

// decode unmarshals strictly (unknown fields are errors) and reports YAML
// errors with their line.
func decode(file string, b []byte, v any) Problems {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var ps Problems
			for _, e := range te.Errors {
				ps = append(ps, Problem{File: file, Line: atoiLine(e), Msg: stripLine(e), Fix: suggestKey(e)})
			}
			return ps
		}
		if err.Error() == "EOF" {
			return Problems{{File: file, Msg: "file is empty"}}
		}
		line := atoiLine(err.Error())
		if m := badTime.FindStringSubmatch(err.Error()); m != nil && line == 0 {
			// time.Time's own parse error carries no position; find the value.
			line = lineOf(b, m[1])
			return Problems{{File: file, Line: line, Msg: stripLine(err.Error()), Fix: "write dates as RFC 3339, e.g. 2026-01-31T00:00:00Z"}}
		}
		return Problems{{File: file, Line: line, Msg: stripLine(err.Error())}}
	}
	return nil
}

var badTime = regexp.MustCompile(`parsing time "([^"]+)"`)

var unknownField = regexp.MustCompile(`field (\S+) not found in type workspace\.(\w+)`)

// keyTypes are the types the files decode into, by name, for suggestions.
var keyTypes = map[string]reflect.Type{}

func init() {
	for _, v := range []any{Config{}, NodeConfig{}, AuthConfig{}, JWTConfig{}, LimitsConfig{}, Principal{}, Manifest{}, Source{}, Column{}, Agreement{}, Rule{}, Budget{}} {
		t := reflect.TypeOf(v)
		keyTypes[t.Name()] = t
	}
}

// suggestKey proposes the nearest known key for an unknown one.
func suggestKey(msg string) string {
	m := unknownField.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	t, ok := keyTypes[m[2]]
	if !ok {
		return ""
	}
	var known []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		known = append(known, name)
	}
	if best := Nearest(m[1], known, 4); best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return "known keys here: " + strings.Join(known, ", ")
}

// Nearest is the option closest to s, if its edit distance is below
// within ("" otherwise): the "did you mean" of validation messages.
func Nearest(s string, options []string, within int) string {
	best, bestD := "", within
	for _, o := range options {
		if d := editDistance(s, o); d < bestD {
			best, bestD = o, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func atoiLine(s string) int {
	m := yamlLine.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	n := 0
	fmt.Sscanf(m[1], "%d", &n)
	return n
}

func stripLine(s string) string {
	s = strings.TrimPrefix(s, "yaml: ")
	return yamlLine.ReplaceAllString(s, "")
}

// lineOf finds the first line of b that mentions key, for locating problems
// in decoded structs (1-based; 0 if not found).
func lineOf(b []byte, key string) int {
	if key == "" {
		return 0
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, key) {
			return i + 1
		}
	}
	return 0
}

var validName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

var validTypes = map[string]bool{"text": true, "integer": true, "double": true, "decimal": true, "date": true, "timestamp": true, "boolean": true}

var validClasses = map[ColumnClass]bool{ClassIdentifier: true, ClassQuasiIdentifier: true, ClassSensitive: true, ClassAttribute: true}

// ExportsFile is the export controls' file name in a workspace.
const ExportsFile = "exports.yaml"

// PeersFile is the peers file's name in a workspace.
const PeersFile = "peers.yaml"

// MarshalPeers is a peers file's text.
func MarshalPeers(peers []*Peer) ([]byte, error) {
	b, err := yaml.Marshal(struct {
		Peers []*Peer `yaml:"peers"`
	}{peers})
	if err != nil {
		return nil, err
	}
	return append([]byte("# Other nodes this node talks to; edit with airlock peer add/list/remove.\n"), b...), nil
}

// WritePeers checks peers as the loader would and writes them as the
// peers file of the workspace in dir.
func WritePeers(dir string, peers []*Peer) error {
	b, err := MarshalPeers(peers)
	if err != nil {
		return err
	}
	if _, probs := ParsePeers(b); len(probs.Errors()) > 0 {
		return probs
	}
	return os.WriteFile(filepath.Join(dir, PeersFile), b, 0o644)
}

// ParsePeers reads a peers file, checking each entry.
func ParsePeers(b []byte) ([]*Peer, Problems) {
	var f struct {
		Peers []*Peer `yaml:"peers"`
	}
	probs := decode(PeersFile, b, &f)
	seen := map[string]bool{}
	var out []*Peer
	for _, p := range f.Peers {
		line := lineOf(b, p.Name)
		bad := func(msg, fix string) { probs = append(probs, Problem{File: PeersFile, Line: line, Msg: msg, Fix: fix}) }
		switch {
		case p.Name == "" || p.Org == "" || p.URL == "" || p.Key == "":
			bad("a peer needs a name, an org, a url and a key", "airlock peer add writes complete entries")
			continue
		case seen[p.Name]:
			bad(fmt.Sprintf("peer %q is declared twice", p.Name), "")
			continue
		case !strings.HasPrefix(p.URL, "https://"):
			bad(fmt.Sprintf("peer %q: url must be https:// (peers talk mutual TLS)", p.Name), "")
			continue
		case !strings.HasPrefix(p.Key, p.Name+"+"):
			bad(fmt.Sprintf("peer %q: key is not a node key named %s (want %s+<hash>+<key>, the peer's node.pub)", p.Name, p.Name, p.Name), "")
			continue
		}
		seen[p.Name] = true
		out = append(out, p)
	}
	return out, probs
}

// checkExports checks exports.yaml against the datasets: every dataset
// and column it names exists, every quasi-identifier has a rule, methods
// and bounds make sense.
func checkExports(b []byte, ex *Exports, ws *Workspace) Problems {
	var probs Problems
	bad := func(key, msg, fix string) {
		probs = append(probs, Problem{File: ExportsFile, Line: lineOf(b, key), Msg: msg, Fix: fix})
	}
	for name, d := range ex.Datasets {
		m := ws.Datasets[name]
		if m == nil {
			bad(name+":", fmt.Sprintf("no dataset %q", name), "")
			continue
		}
		cols := map[string]bool{}
		for _, c := range m.Columns {
			cols[c.Name] = true
		}
		check := func(what string, names []string) {
			for _, c := range names {
				if !cols[c] {
					bad(c, fmt.Sprintf("dataset %s: %s column %q does not exist", name, what, c), "")
				}
			}
		}
		check("quasi-identifier", d.QuasiIdentifiers)
		check("drop", d.Drop)
		if d.Sensitive != "" {
			check("sensitive", []string{d.Sensitive})
		}
		if len(d.QuasiIdentifiers) == 0 {
			bad(name+":", fmt.Sprintf("dataset %s lists no quasi_identifiers", name), "")
		}
		for _, q := range d.QuasiIdentifiers {
			if d.Generalise[q] == "" {
				bad(q, fmt.Sprintf("dataset %s: quasi-identifier %q has no generalise rule", name, q), "prefix, date, suppress or a hierarchy file")
			}
			if contains(d.Drop, q) || q == d.Sensitive {
				bad(q, fmt.Sprintf("dataset %s: %q is a quasi-identifier and also dropped or sensitive", name, q), "")
			}
		}
		if d.Budget != nil && !(d.Budget.Epsilon > 0 && d.Budget.Delta > 0 && d.Budget.Delta < 1) {
			bad("budget", fmt.Sprintf("dataset %s: the export budget needs ε > 0 and 0 < δ < 1", name), "")
		}
	}
	for tier, controls := range ex.Tiers {
		for _, c := range controls {
			if len(c.To) == 0 {
				bad(tier+":", fmt.Sprintf("tier %s: a control needs destinations (to)", tier), "")
			}
			for _, m := range c.Methods {
				switch {
				case m.Method != "kanonymity" && m.Method != "synthetic":
					bad("method: "+m.Method, fmt.Sprintf("tier %s: unknown method %q", tier, m.Method), "kanonymity or synthetic")
				case m.Method == "kanonymity" && m.MinK < 2:
					bad("method: "+m.Method, fmt.Sprintf("tier %s: a kanonymity method needs min_k ≥ 2", tier), "")
				case m.Method == "kanonymity" && (m.MaxSuppression < 0 || m.MaxSuppression > 1):
					bad("method: "+m.Method, fmt.Sprintf("tier %s: max_suppression must lie in [0, 1]", tier), "")
				case m.Method == "synthetic" && !(m.MaxEpsilon > 0):
					bad("method: "+m.Method, fmt.Sprintf("tier %s: a synthetic method needs max_epsilon > 0", tier), "")
				}
			}
		}
	}
	return probs
}

func checkManifest(file string, b []byte, m *Manifest) Problems {
	var ps Problems
	add := func(key, msg, fix string) {
		ps = append(ps, Problem{File: file, Line: lineOf(b, key), Msg: msg, Fix: fix})
	}
	if !validName.MatchString(m.Name) {
		add("name:", fmt.Sprintf("dataset name %q is not a lower-case identifier", m.Name), "use letters, digits and _")
	}
	if m.Owner == "" {
		add("owner:", "owner is missing", "name the owning org")
	}
	switch {
	case m.Source.Federation != nil:
		if m.Source.File != "" || m.Source.Postgres != "" {
			add("federation:", "a federated source has no file or postgres of its own", "keep only source.federation")
		}
		if len(m.Source.Federation.Members) == 0 {
			add("federation:", "a federated source needs members", "list the peers that hold a partition")
		}
	case m.Source.File == "" && m.Source.Postgres == "":
		add("source:", "source has neither file nor postgres", "set source.file (CSV or Parquet) or source.postgres + source.table")
	case m.Source.File != "" && m.Source.Postgres != "":
		add("source:", "source has both file and postgres", "keep one")
	case m.Source.Postgres != "" && m.Source.Table == "":
		add("postgres:", "source.table is missing", "name the table in the owner's PostgreSQL")
	case m.Source.File != "":
		ext := strings.ToLower(filepath.Ext(m.Source.File))
		if ext != ".csv" && ext != ".parquet" {
			add("file:", "source.file must be .csv or .parquet", "")
		}
	}
	seen := map[string]bool{}
	unitFound := false
	for _, c := range m.Columns {
		if !validName.MatchString(c.Name) {
			add(c.Name, fmt.Sprintf("column name %q is not a lower-case identifier", c.Name), "")
		}
		if seen[c.Name] {
			add(c.Name, fmt.Sprintf("column %q is declared twice", c.Name), "")
		}
		seen[c.Name] = true
		if !validTypes[c.Type] {
			add("name: "+c.Name, fmt.Sprintf("column %q has unknown type %q", c.Name, c.Type), "use text, integer, double, decimal, date, timestamp or boolean")
		}
		if !validClasses[c.Class] {
			add("name: "+c.Name, fmt.Sprintf("column %q has unknown class %q", c.Name, c.Class), "use identifier, quasi_identifier, sensitive or attribute")
		}
		if len(c.Bounds) != 0 && (len(c.Bounds) != 2 || c.Bounds[0] > c.Bounds[1]) {
			add("name: "+c.Name, fmt.Sprintf("column %q bounds must be [lower, upper]", c.Name), "")
		}
		if c.Name == m.PrivacyUnit {
			unitFound = true
			if c.Class != ClassIdentifier {
				add("name: "+c.Name, fmt.Sprintf("privacy unit column %q must have class identifier", c.Name), "set class: identifier")
			}
		}
	}
	if len(m.Columns) == 0 {
		add("columns:", "no columns declared", "")
	}
	if m.PrivacyUnit == "" {
		add("privacy_unit:", "privacy_unit is missing", "name the column identifying the protected person or entity")
	} else if !unitFound {
		add("privacy_unit:", fmt.Sprintf("privacy_unit %q is not a declared column", m.PrivacyUnit), "")
	}
	return ps
}

var knownFuncs = map[string]bool{"count": true, "sum": true, "avg": true, "min": true, "max": true, "stddev": true, "variance": true, "median": true, "percentile_cont": true, "stddev_pop": true, "var_pop": true}

func checkAgreement(file string, b []byte, a *Agreement, ws *Workspace) Problems {
	var ps Problems
	add := func(key, msg, fix string) {
		ps = append(ps, Problem{File: file, Line: lineOf(b, key), Msg: msg, Fix: fix})
	}
	if a.ID == "" {
		add("id:", "id is missing", "")
	}
	if a.OwnerOrg == "" || a.RecipientOrg == "" {
		add("org:", "owner_org and recipient_org are required", "")
	}
	for _, e := range a.Egress {
		if len(e.To) == 0 || len(e.Outputs) == 0 {
			add("egress:", "an egress entry needs to (regions) and outputs", "e.g. {to: [us], outputs: [dp]}")
		}
		for _, o := range e.Outputs {
			if o != "aggregate" && o != "dp" && o != "rows" {
				add("egress:", fmt.Sprintf("egress output %q is not aggregate, dp or rows", o), "")
			}
		}
	}
	if a.ValidUntil.IsZero() || a.ValidFrom.IsZero() || !a.ValidUntil.After(a.ValidFrom) {
		add("valid_", "valid_from and valid_until must be set, with valid_until after valid_from", "")
	}
	if len(a.Purposes) == 0 {
		add("purposes:", "no purposes: the agreement could never be used", "list the permitted purposes")
	}
	if len(a.Actions) == 0 {
		add("actions:", "no actions", "list query (and plan)")
	}
	for _, d := range a.Datasets {
		m, ok := ws.Datasets[d]
		if !ok {
			add(d, fmt.Sprintf("dataset %q is not registered", d), "add datasets/"+d+".yaml or fix the name")
			continue
		}
		if m.Owner != a.OwnerOrg {
			add(d, fmt.Sprintf("dataset %q is owned by %q, not by owner_org %q", d, m.Owner, a.OwnerOrg), "")
		}
		r, ok := a.Rules[d]
		if !ok {
			add(d, fmt.Sprintf("no analysis rule for dataset %q", d), "add rules."+d)
			continue
		}
		cols := map[string]*Column{}
		for i := range m.Columns {
			cols[m.Columns[i].Name] = &m.Columns[i]
		}
		checkCol := func(key, c string) {
			if _, ok := cols[c]; !ok && c != "*" {
				add(key, fmt.Sprintf("rule for %s names unknown column %q", d, c), "")
			}
		}
		switch r.Kind {
		case RuleAggregation, RuleDP:
			if r.Kind == RuleAggregation && r.MinUnits < 2 {
				add("min_units", fmt.Sprintf("aggregation rule for %s needs min_units >= 2", d), "set min_units (e.g. 10)")
			}
			if df := r.Differencing; df != nil && (df.Answers < 0 || df.Period < 0) {
				add("differencing", fmt.Sprintf("differencing for %s: answers and period cannot be negative", d), "")
			}
			if r.Kind == RuleDP && r.Differencing != nil {
				add("differencing", fmt.Sprintf("differencing applies to aggregation rules; the dp rule for %s composes its answers by its budget", d), "remove differencing")
			}
			for _, c := range r.Dimensions {
				checkCol(c, c)
				if col := cols[c]; col != nil && col.Class == ClassIdentifier {
					add(c, fmt.Sprintf("identifier column %s.%s cannot be a dimension", d, c), "remove it from dimensions")
				}
			}
			for c, fns := range r.Aggregates {
				checkCol(c, c)
				for _, f := range fns {
					if !knownFuncs[f] {
						add(f, fmt.Sprintf("unknown aggregate %q for %s.%s", f, d, c), "")
					}
					col := cols[c]
					if col != nil && col.Class != ClassAttribute && (f == "min" || f == "max" || f == "median" || f == "percentile_cont") && r.Kind == RuleAggregation {
						add(f, fmt.Sprintf("%s returns a raw value and is not allowed on %s column %s.%s", f, col.Class, d, c), "remove it")
					}
				}
			}
			for _, c := range r.JoinColumns {
				checkCol(c, c)
			}
			if r.Kind == RuleDP && r.Noise != "" && r.Noise != "gaussian" && r.Noise != "laplace" {
				add("noise", fmt.Sprintf("unknown noise %q for %s", r.Noise, d), "use gaussian (zCDP) or laplace (pure ε)")
			}
			if r.Kind == RuleDP && a.Budget == nil {
				add("kind: dp", fmt.Sprintf("dp rule for %s needs a budget on the agreement", d), "add budget: {epsilon, delta, period}")
			}
		case RuleList:
			for _, c := range r.Columns {
				checkCol(c, c)
			}
			for c, mk := range r.Masks {
				checkCol(c, c)
				switch mk {
				case MaskHMAC, MaskRedact, MaskYear, MaskMonth, MaskZip3, MaskNone:
				default:
					add(string(mk), fmt.Sprintf("unknown mask %q on %s.%s", mk, d, c), "use hmac, redact, year, month, zip3 or none")
				}
			}
			for _, col := range m.Columns {
				if col.Class == ClassIdentifier && (len(r.Columns) == 0 || contains(r.Columns, col.Name)) {
					if mk, ok := r.Masks[col.Name]; !ok || mk == MaskNone {
						add("masks", fmt.Sprintf("identifier column %s.%s is exposed without a mask", d, col.Name), "mask it (hmac or redact) or leave it out of columns")
					}
				}
			}
		default:
			add("kind", fmt.Sprintf("unknown rule kind %q for %s", r.Kind, d), "use aggregation, list or dp")
		}
	}
	for d := range a.Rules {
		if !contains(a.Datasets, d) {
			add(d, fmt.Sprintf("rule for %q, which is not in datasets", d), "")
		}
	}
	return ps
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// InForce reports whether the agreement's validity window contains t.
func (a *Agreement) InForce(t interface{ Unix() int64 }) bool {
	u := t.Unix()
	return u >= a.ValidFrom.Unix() && u < a.ValidUntil.Unix()
}
