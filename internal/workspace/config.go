package workspace

import "time"

// Config is the node configuration, read from airlock.yaml at the workspace root.
type Config struct {
	// Node names the node.
	Node NodeConfig `yaml:"node"`
	// Auth configures bearer tokens beyond API tokens.
	Auth AuthConfig `yaml:"auth"`
	// Limits bound what queries and connections may use.
	Limits LimitsConfig `yaml:"limits"`
	// Federation configures the node's peer endpoint.
	Federation FederationConfig `yaml:"federation"`
	// DataDir holds the embedded state store, the node key and the engine
	// database; relative to the workspace. Default ".airlock".
	DataDir string `yaml:"data_dir"`
}

// NodeConfig names the node.
type NodeConfig struct {
	// Name is the node's name, in checkpoints and the banner. Default "airlock".
	Name string `yaml:"name"`
	// Region is where the node runs.
	Region string `yaml:"region"`
	// Origin is the audit log's checkpoint origin line. Default "airlock/<name>".
	Origin string `yaml:"origin"`
	// CheckpointInterval is how often the audit log signs a checkpoint.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
}

// FederationConfig configures how the node talks to its peers.
type FederationConfig struct {
	// Listen is the peer endpoint's address (mutual TLS); empty = off
	// unless serve --peer-addr is given.
	Listen string `yaml:"listen"`
	// Window is how long a signed peer request is valid. Default 2m.
	Window time.Duration `yaml:"window"`
	// WitnessEvery is how often the node cosigns its peers' audit
	// checkpoints. Default 1m; 0 after defaults never happens.
	WitnessEvery time.Duration `yaml:"witness_every"`
}

// AuthConfig configures bearer-token verification beyond API tokens.
type AuthConfig struct {
	// JWT, when set, accepts OIDC/JWT bearer tokens too.
	JWT *JWTConfig `yaml:"jwt,omitempty"`
}

// JWTConfig verifies OIDC/JWT bearer tokens against a JWKS file.
type JWTConfig struct {
	// JWKSFile is the identity provider's key set (a JWKS file, relative to the workspace).
	JWKSFile string `yaml:"jwks_file"`
	// Issuer is the required iss claim.
	Issuer string `yaml:"issuer"`
	// Audience is the required aud claim.
	Audience string `yaml:"audience"`
	// PrincipalClaim names the claim that holds the principal name. Default "sub".
	PrincipalClaim string `yaml:"principal_claim"`
	// Claims maps principal attributes (org, region, country, clearance,
	// roles) to claim names. Attributes from claims override the principal
	// file's only where the principal is not declared there.
	Claims map[string]string `yaml:"claims,omitempty"`
	// Leeway tolerates clock skew on exp/nbf/iat. Default 30s.
	Leeway time.Duration `yaml:"leeway"`
}

// LimitsConfig bounds what one query may use.
type LimitsConfig struct {
	QueryTimeout  time.Duration `yaml:"query_timeout"`   // default 30s
	MemoryLimit   string        `yaml:"memory_limit"`    // DuckDB memory_limit, default "2GB"
	Threads       int           `yaml:"threads"`         // DuckDB threads, default = cores
	MaxResultRows int           `yaml:"max_result_rows"` // default 100000
	MaxSQLBytes   int           `yaml:"max_sql_bytes"`   // default 64 KiB
	// MaxConnections is the most connections each listener (HTTP, wire)
	// holds at once; MaxConnectionsPerClient the most from one IP address.
	MaxConnections          int `yaml:"max_connections"`            // default 1024
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"` // default 256
	// HandshakeTimeout is how long a wire connection has to authenticate.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"` // default 10s
	// WireMessageBytes is the largest wire protocol message accepted. The
	// wire library allocates a read buffer of this size per connection, so
	// the endpoint's memory is bounded by MaxConnections × WireMessageBytes.
	WireMessageBytes int `yaml:"wire_message_bytes"` // default 256 KiB
	// HTTPReadTimeout bounds reading one request, body included;
	// HTTPIdleTimeout how long an idle keep-alive connection is kept.
	HTTPReadTimeout time.Duration `yaml:"http_read_timeout"` // default 1m
	HTTPIdleTimeout time.Duration `yaml:"http_idle_timeout"` // default 2m
	// Admission: queries running at once on the node and per principal,
	// how long a query may wait for a place, and each principal's rate.
	MaxConcurrentQueries      int           `yaml:"max_concurrent_queries"`       // default 32
	MaxConcurrentPerPrincipal int           `yaml:"max_concurrent_per_principal"` // default 32
	QueueWait                 time.Duration `yaml:"queue_wait"`                   // default 1s
	PrincipalRate             float64       `yaml:"principal_rate"`               // queries/s, default 500
}

// CheckAndSetDefaults fills unset fields with their defaults.
func (c *Config) CheckAndSetDefaults() {
	if c.Node.Name == "" {
		c.Node.Name = "airlock"
	}
	if c.Node.Origin == "" {
		c.Node.Origin = "airlock/" + c.Node.Name
	}
	if c.Node.CheckpointInterval == 0 {
		c.Node.CheckpointInterval = time.Minute
	}
	if c.Federation.Window == 0 {
		c.Federation.Window = 2 * time.Minute
	}
	if c.Federation.WitnessEvery == 0 {
		c.Federation.WitnessEvery = time.Minute
	}
	if c.DataDir == "" {
		c.DataDir = ".airlock"
	}
	if c.Limits.QueryTimeout == 0 {
		c.Limits.QueryTimeout = 30 * time.Second
	}
	if c.Limits.MemoryLimit == "" {
		c.Limits.MemoryLimit = "2GB"
	}
	if c.Limits.MaxResultRows == 0 {
		c.Limits.MaxResultRows = 100000
	}
	if c.Limits.MaxSQLBytes == 0 {
		c.Limits.MaxSQLBytes = 64 << 10
	}
	if c.Limits.MaxConnections == 0 {
		c.Limits.MaxConnections = 1024
	}
	if c.Limits.MaxConnectionsPerClient == 0 {
		c.Limits.MaxConnectionsPerClient = 256
	}
	if c.Limits.HandshakeTimeout == 0 {
		c.Limits.HandshakeTimeout = 10 * time.Second
	}
	if c.Limits.MaxConcurrentQueries == 0 {
		c.Limits.MaxConcurrentQueries = 32
	}
	if c.Limits.MaxConcurrentPerPrincipal == 0 {
		c.Limits.MaxConcurrentPerPrincipal = 32
	}
	if c.Limits.QueueWait == 0 {
		c.Limits.QueueWait = time.Second
	}
	if c.Limits.PrincipalRate == 0 {
		c.Limits.PrincipalRate = 500
	}
	if c.Limits.HTTPReadTimeout == 0 {
		c.Limits.HTTPReadTimeout = time.Minute
	}
	if c.Limits.HTTPIdleTimeout == 0 {
		c.Limits.HTTPIdleTimeout = 2 * time.Minute
	}
	if c.Limits.WireMessageBytes == 0 {
		c.Limits.WireMessageBytes = max(256<<10, 2*c.Limits.MaxSQLBytes)
	}
	if c.Auth.JWT != nil {
		if c.Auth.JWT.PrincipalClaim == "" {
			c.Auth.JWT.PrincipalClaim = "sub"
		}
		if c.Auth.JWT.Leeway == 0 {
			c.Auth.JWT.Leeway = 30 * time.Second
		}
	}
}
