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
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Owner       string   `yaml:"owner"` // owning organisation
	Tier        string   `yaml:"tier"`  // e.g. public, internal, confidential, restricted
	Region      string   `yaml:"region"`
	Lineage     string   `yaml:"lineage,omitempty"`
	Source      Source   `yaml:"source"`
	PrivacyUnit string   `yaml:"privacy_unit"`
	Columns     []Column `yaml:"columns"`

	// File is the manifest's path, set by the loader for error messages.
	File string `yaml:"-"`
}

// Source says where a dataset's rows are: a file loaded into the embedded
// engine, or a table left in the owner's PostgreSQL.
type Source struct {
	File     string `yaml:"file,omitempty"`     // CSV or Parquet, relative to the workspace
	Postgres string `yaml:"postgres,omitempty"` // DSN of the owner's PostgreSQL
	Table    string `yaml:"table,omitempty"`    // table name in that PostgreSQL
}

// Column is one column of a manifest.
type Column struct {
	Name        string      `yaml:"name"`
	Type        string      `yaml:"type"` // text, integer, double, decimal, date, timestamp, boolean
	Class       ColumnClass `yaml:"class"`
	Description string      `yaml:"description,omitempty"`
	// Bounds are the public lower and upper bound of a numeric column, used
	// to clamp contributions under differential privacy.
	Bounds []float64 `yaml:"bounds,omitempty"`
	// Granularity is the fixed-point step for DP sums (e.g. 0.01 for money).
	Granularity float64 `yaml:"granularity,omitempty"`
}

// Principal is a user or service known to the workspace.
type Principal struct {
	Name       string            `yaml:"name"`
	Org        string            `yaml:"org"`
	Roles      []string          `yaml:"roles"`
	Country    string            `yaml:"country"`
	Region     string            `yaml:"region"`
	Clearance  string            `yaml:"clearance"`
	Attributes map[string]string `yaml:"attributes,omitempty"`
}

// Agreement is a data-sharing agreement from an owner organisation to a
// recipient organisation.
type Agreement struct {
	ID           string    `yaml:"id"`
	Description  string    `yaml:"description"`
	OwnerOrg     string    `yaml:"owner_org"`
	RecipientOrg string    `yaml:"recipient_org"`
	Datasets     []string  `yaml:"datasets"`
	Actions      []string  `yaml:"actions"`           // query, plan
	Purposes     []string  `yaml:"purposes"`          // e.g. research, fraud_detection
	Regions      []string  `yaml:"regions,omitempty"` // client regions allowed; empty = any
	ValidFrom    time.Time `yaml:"valid_from"`
	ValidUntil   time.Time `yaml:"valid_until"`
	EndUse       string    `yaml:"end_use,omitempty"`
	// Rules maps dataset name to the analysis rule that governs it.
	Rules map[string]Rule `yaml:"rules"`
	// Budget is the privacy budget of a differentially private agreement.
	Budget *Budget `yaml:"budget,omitempty"`

	File string `yaml:"-"`
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

	// DP rule settings.
	MaxGroupsPerUnit int                 `yaml:"max_groups_per_unit,omitempty"` // L0
	MaxRowsPerGroup  int                 `yaml:"max_rows_per_group,omitempty"`  // Linf for counts
	PublicGroups     map[string][]string `yaml:"public_groups,omitempty"`       // column -> public keys
	Noise            string              `yaml:"noise,omitempty"`               // gaussian (default) | laplace
	EpsilonPerQuery  float64             `yaml:"epsilon_per_query,omitempty"`
	DeltaPerQuery    float64             `yaml:"delta_per_query,omitempty"`
}

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
	Epsilon      float64       `yaml:"epsilon"`
	Delta        float64       `yaml:"delta"`
	Period       time.Duration `yaml:"period"`
	PerPrincipal bool          `yaml:"per_principal,omitempty"`
}
