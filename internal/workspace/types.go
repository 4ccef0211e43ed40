package workspace

import "time"

// ColumnClass is the privacy class of a dataset column. It decides what an
// analysis rule may ever do with the column, whatever an agreement says.
type ColumnClass string

// The column classes a manifest may declare.
const (
	// ClassIdentifier names a person directly (name, SSN, IBAN, the privacy unit).
	ClassIdentifier ColumnClass = "identifier"
	// ClassQuasiIdentifier identifies in combination (birth date, zip, sex).
	ClassQuasiIdentifier ColumnClass = "quasi_identifier"
	// ClassSensitive is the protected payload (diagnosis, amount).
	ClassSensitive ColumnClass = "sensitive"
	// ClassAttribute is anything else.
	ClassAttribute ColumnClass = "attribute"
)

// Manifest describes one registered dataset: where its rows live and what each
// column means for privacy. It is read from datasets/<name>.yaml.
type Manifest struct {
	// Name is the dataset's name in SQL (lower case, digits, _).
	Name string `yaml:"name"`
	// Description says what a row is, for the catalog.
	Description string `yaml:"description"`
	Owner       string `yaml:"owner"` // owning organisation
	Tier        string `yaml:"tier"`  // e.g. public, internal, confidential, restricted
	// Region is where the data lives; policies may compare it with the client's.
	Region string `yaml:"region"`
	// Lineage says where the data comes from.
	Lineage string `yaml:"lineage,omitempty"`
	// Source says where the rows are: a file or a PostgreSQL table.
	Source Source `yaml:"source"`
	// PrivacyUnit is the column naming the person or entity a row is
	// about: thresholds count its distinct values, DP bounds each one's
	// contribution.
	PrivacyUnit string `yaml:"privacy_unit"`
	// Columns are every column of the table, in order.
	Columns []Column `yaml:"columns"`

	// File is the manifest's path, set by the loader for error messages.
	File string `yaml:"-"`
}

// Source says where a dataset's rows are: a file loaded into the embedded
// engine, or a table left in the owner's PostgreSQL.
type Source struct {
	File     string `yaml:"file,omitempty"`     // CSV or Parquet, relative to the workspace
	Postgres string `yaml:"postgres,omitempty"` // DSN of the owner's PostgreSQL
	Table    string `yaml:"table,omitempty"`    // table name in that PostgreSQL
	// Federation makes the dataset federated: one logical table whose
	// partitions live on peers' nodes (same columns), each answering under
	// its own rules. The node holding this manifest has no rows of it.
	Federation *Federation `yaml:"federation,omitempty"`
}

// Federation lists the members of a federated dataset and how their
// partial answers combine.
type Federation struct {
	// Members are the peers (names in peers.yaml) that hold a partition;
	// each is asked for the dataset of the same name.
	Members []string `yaml:"members"`
	// Partial lets an answer combine the members that answered when
	// others are down or refuse; such an answer is marked partial and
	// names who is missing. Default: any member's failure refuses.
	Partial bool `yaml:"partial,omitempty"`
	// Timeout bounds each member's answer. Default 30s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Column is one column of a manifest.
type Column struct {
	// Name is the column's name in the data and in SQL.
	Name string `yaml:"name"`
	Type string `yaml:"type"` // text, integer, double, decimal, date, timestamp, boolean
	// Class is the column's privacy class: what any rule may ever do with it.
	Class ColumnClass `yaml:"class"`
	// Description says what the column holds, for the catalog.
	Description string `yaml:"description,omitempty"`
	// Bounds are the public lower and upper bound of a numeric column, used
	// to clamp contributions under differential privacy.
	Bounds []float64 `yaml:"bounds,omitempty"`
	// Granularity is the fixed-point step for DP sums (e.g. 0.01 for money).
	Granularity float64 `yaml:"granularity,omitempty"`
}

// Principal is a user or service known to the workspace.
type Principal struct {
	// Name is the principal's name: the user of API tokens and of the wire endpoint.
	Name string `yaml:"name"`
	// Org is the principal's organisation: agreements are between orgs.
	Org string `yaml:"org"`
	// Roles are free-form names policies test (steward, auditor, analyst, ...).
	Roles []string `yaml:"roles"`
	// Country is an ISO 3166 code, for policies.
	Country string `yaml:"country"`
	// Region is where the principal works from; agreements may restrict it.
	Region string `yaml:"region"`
	// Clearance is a level policies test; the demo denies "none" and empty.
	Clearance string `yaml:"clearance"`
	// Attributes are further named values for policies and row filters ({principal.<name>}).
	Attributes map[string]string `yaml:"attributes,omitempty"`
}

// Agreement is a data-sharing agreement from an owner organisation to a
// recipient organisation.
type Agreement struct {
	// ID names the agreement in requests, answers and the audit log.
	ID string `yaml:"id"`
	// Description says what the agreement is for.
	Description string `yaml:"description"`
	// OwnerOrg is the organisation whose datasets the agreement shares.
	OwnerOrg string `yaml:"owner_org"`
	// RecipientOrg is the organisation whose principals may act under it.
	RecipientOrg string `yaml:"recipient_org"`
	// Datasets are the owner's datasets the agreement covers.
	Datasets []string `yaml:"datasets"`
	Actions  []string `yaml:"actions"`           // query, plan
	Purposes []string `yaml:"purposes"`          // e.g. research, fraud_detection
	Regions  []string `yaml:"regions,omitempty"` // client regions allowed; empty = any
	// ValidFrom is when the agreement comes into force.
	ValidFrom time.Time `yaml:"valid_from"`
	// ValidUntil is when it ends (exclusive).
	ValidUntil time.Time `yaml:"valid_until"`
	// EndUse is the end-use statement the recipient accepted.
	EndUse string `yaml:"end_use,omitempty"`
	// Rules maps dataset name to the analysis rule that governs it.
	Rules map[string]Rule `yaml:"rules"`
	// Budget is the privacy budget of a differentially private agreement.
	Budget *Budget `yaml:"budget,omitempty"`
	// Egress lists the outputs the agreement lets leave the datasets'
	// region: to which destination regions, of which kinds. Residency
	// policies read it as context.egress.
	Egress []Egress `yaml:"egress,omitempty"`

	File string `yaml:"-"`
}

// Egress is one permission for outputs to leave their region.
type Egress struct {
	// To are destination regions (a peer's region, or a principal's).
	To []string `yaml:"to"`
	// Outputs are the query kinds that may go there: aggregate, dp, rows.
	Outputs []string `yaml:"outputs"`
}

// Peer is another organisation's node, known by its pinned node key.
type Peer struct {
	// Name is the peer node's name (its node.name).
	Name string `yaml:"name"`
	// Org is the organisation that runs it.
	Org string `yaml:"org"`
	// Region is where it runs: outputs sent to it go to this region.
	Region string `yaml:"region"`
	// URL is its peer endpoint (https://host:port).
	URL string `yaml:"url"`
	// Key is its node key (the note verifier key in <data_dir>/node.pub):
	// its TLS certificate, request signatures and checkpoints must all be
	// made with it.
	Key string `yaml:"key"`
	// Represents are the orgs whose principals the peer may act for.
	// Default: its own org.
	Represents []string `yaml:"represents,omitempty"`
}

// MayRepresent reports whether the peer may act for principals of org.
func (p *Peer) MayRepresent(org string) bool {
	if len(p.Represents) == 0 {
		return org == p.Org
	}
	return contains(p.Represents, org)
}

// RuleKind is the shape of question a dataset answers under an agreement.
type RuleKind string

// The analysis rule kinds.
const (
	// RuleAggregation answers only aggregates over groups with at least
	// MinUnits distinct privacy units.
	RuleAggregation RuleKind = "aggregation"
	// RuleList answers row-level queries with masks applied.
	RuleList RuleKind = "list"
	// RuleDP answers aggregates with differential privacy.
	RuleDP RuleKind = "dp"
)

// Rule is an analysis rule for one dataset within an agreement.
type Rule struct {
	// Kind is the rule: aggregation, list or dp.
	Kind RuleKind `yaml:"kind"`
	// MinUnits is the minimum number of distinct privacy units per output row
	// (aggregation rule).
	MinUnits int `yaml:"min_units,omitempty"`
	// Dimensions are columns usable in SELECT, WHERE, GROUP BY and HAVING.
	Dimensions []string `yaml:"dimensions,omitempty"`
	// Aggregates maps a column (or "*") to the aggregate functions allowed on
	// it, e.g. {"cost": [sum, avg], "*": [count]}.
	Aggregates map[string][]string `yaml:"aggregates,omitempty"`
	// JoinColumns are columns usable only in JOIN ... ON equality.
	JoinColumns []string `yaml:"join_columns,omitempty"`
	// Columns lists the columns a list rule exposes; empty means all.
	Columns []string `yaml:"columns,omitempty"`
	// Masks maps a column to its mask under a list rule.
	Masks map[string]Mask `yaml:"masks,omitempty"`
	// RowFilter is a SQL predicate every row must satisfy; it may reference
	// principal attributes as {principal.region}, {principal.org}, ...
	RowFilter string `yaml:"row_filter,omitempty"`
	// MaxRows is a list rule's quota: the rows its agreement may release
	// per period (the budget's period, or a day) over all answers.
	MaxRows int `yaml:"max_rows,omitempty"`
	// Differencing bounds the aggregation rule's differencing check: every
	// answer is compared with the agreement's earlier answers about the
	// dataset, and refused if the two would isolate fewer than min_units
	// units.
	Differencing *Differencing `yaml:"differencing,omitempty"`

	// DP rule settings.
	MaxGroupsPerUnit int                 `yaml:"max_groups_per_unit,omitempty"` // L0
	MaxRowsPerGroup  int                 `yaml:"max_rows_per_group,omitempty"`  // Linf for counts
	PublicGroups     map[string][]string `yaml:"public_groups,omitempty"`       // column -> public keys
	Noise            string              `yaml:"noise,omitempty"`               // gaussian (default) | laplace
	// EpsilonPerQuery is the ε one query spends. Default 1.
	EpsilonPerQuery float64 `yaml:"epsilon_per_query,omitempty"`
	// DeltaPerQuery is the δ one query spends (Gaussian noise and
	// partition selection). Default 1e-7.
	DeltaPerQuery float64 `yaml:"delta_per_query,omitempty"`
}

// Differencing is how much of an agreement's history of released
// aggregate answers the differencing check remembers.
type Differencing struct {
	// Off turns the check off for the dataset: each answer is then only
	// thresholded on its own, and can be subtracted from another.
	Off bool `yaml:"off,omitempty"`
	// Answers caps the answers remembered (default 1000). It is a cap,
	// not a window: an answer that would add to a full history is refused
	// (rule aggregation.differencing_history) until older answers pass
	// the period, since forgetting the oldest would let an analyst push
	// an answer out by asking others. Repeats of remembered answers take
	// no place.
	Answers int `yaml:"answers,omitempty"`
	// Period is how long an answer is remembered (default 2160h, 90
	// days); older answers are no longer compared against.
	Period time.Duration `yaml:"period,omitempty"`
}

// The defaults of Differencing.
const (
	DefaultDifferencingAnswers = 1000
	DefaultDifferencingPeriod  = 90 * 24 * time.Hour
)

// Mask is how a column is shown under a list rule.
type Mask string

// The masks.
const (
	MaskHMAC   Mask = "hmac"   // keyed hash, per agreement: joinable, not reversible
	MaskRedact Mask = "redact" // NULL
	MaskYear   Mask = "year"   // date truncated to its year
	MaskMonth  Mask = "month"  // date truncated to its month
	MaskZip3   Mask = "zip3"   // first three characters of a postal code
	MaskNone   Mask = "none"   // shown as is
)

// Budget is the privacy budget of an agreement: at most Epsilon, Delta per
// refresh Period (e.g. 24h), accounted in zCDP.
type Budget struct {
	// Epsilon is the total ε per period.
	Epsilon float64 `yaml:"epsilon"`
	// Delta is the total δ per period (half for noise, half for partition selection).
	Delta float64 `yaml:"delta"`
	// Period is how often the budget refreshes. Default 24h.
	Period time.Duration `yaml:"period"`
	// PerPrincipal gives each principal its own budget instead of one per agreement.
	PerPrincipal bool `yaml:"per_principal,omitempty"`
}

// Exports are an owner's export controls (exports.yaml): how each of its
// datasets may be anonymised, and which methods and parameters each tier
// may leave by, to which destinations.
type Exports struct {
	// Datasets say, per dataset, what its quasi-identifiers are and how
	// they generalise.
	Datasets map[string]*ExportDataset `yaml:"datasets"`
	// Tiers map a dataset tier (the manifest's tier) to the destinations
	// it may go to; a tier or destination not listed may not be exported.
	Tiers map[string][]ExportControl `yaml:"tiers"`
}

// ExportDataset is how one dataset is anonymised for export.
type ExportDataset struct {
	// QuasiIdentifiers are generalised (or suppressed) for k-anonymity.
	QuasiIdentifiers []string `yaml:"quasi_identifiers"`
	// Generalise says how each quasi-identifier generalises: "prefix"
	// (drop one trailing character per level), "date" (YYYY-MM-DD →
	// YYYY-MM → YYYY → decade → *), "suppress" (value or *), or a path
	// (relative to the workspace) of an ARX hierarchy file.
	Generalise map[string]string `yaml:"generalise"`
	// Sensitive is released as it is, and protected by l-diversity.
	Sensitive string `yaml:"sensitive,omitempty"`
	// Drop are never released (direct identifiers).
	Drop []string `yaml:"drop,omitempty"`
	// Budget caps the privacy spent on DP synthetic releases of the dataset.
	Budget *ExportBudget `yaml:"budget,omitempty"`
}

// ExportBudget is a dataset's privacy budget for synthetic releases.
type ExportBudget struct {
	// Epsilon is the total ε per period.
	Epsilon float64 `yaml:"epsilon"`
	// Delta is the total δ per period.
	Delta float64 `yaml:"delta"`
	// Period is how often the budget refreshes. Default: never (a
	// lifetime budget).
	Period time.Duration `yaml:"period,omitempty"`
}

// ExportControl lets a tier go to some destinations by some methods.
type ExportControl struct {
	// To are destination jurisdictions (regions, e.g. eu, us).
	To []string `yaml:"to"`
	// Orgs, when set, limit the destination to these organisations.
	Orgs []string `yaml:"orgs,omitempty"`
	// Methods are the ways a release may be made, with their bounds.
	Methods []ExportMethod `yaml:"methods"`
}

// ExportMethod is one permitted way of release and its bounds.
type ExportMethod struct {
	// Method is kanonymity or synthetic.
	Method string `yaml:"method"`
	// MinK is the least k a k-anonymous release may have.
	MinK int `yaml:"min_k,omitempty"`
	// MinL is the least distinct l-diversity on the sensitive column.
	MinL int `yaml:"min_l,omitempty"`
	// MaxSuppression is the largest share of records a release may suppress.
	MaxSuppression float64 `yaml:"max_suppression,omitempty"`
	// MaxEpsilon is the largest ε of one DP synthetic release.
	MaxEpsilon float64 `yaml:"max_epsilon,omitempty"`
}
