// Package share is Airlock's channel-neutral vocabulary: who asks (Caller,
// Identity), what kind of operation they ask for (OpKind, Mode), and the
// stable event code each decision is audited under. Channels, the kernel
// (govern) and the operations all speak it; it imports no other Airlock
// package, so anything may import it.
package share

import "slices"

// Identity is an authenticated principal and the attributes policies and
// row filters see.
type Identity struct {
	Principal  string
	Org        string
	Country    string
	Region     string
	Clearance  string
	Roles      []string
	Attributes map[string]string
	Method     string // token | jwt
}

// HasRole reports whether the identity holds a role.
func (id Identity) HasRole(role string) bool { return slices.Contains(id.Roles, role) }

// Caller is one request's origin: the identity (empty when authentication
// failed), the channel and client address it came through, and the
// request id that ties the response, the server log and the audit entry
// together.
type Caller struct {
	Identity
	Channel    string // http, pgwire, cli
	ClientAddr string
	RequestID  string
	// Peer is the peer node that sent the request on the principal's
	// behalf (channel "peer"), and PeerRequest that node's request id:
	// together they link this node's audit entry to the peer's.
	Peer        string
	PeerRequest string
	PeerRegion  string // the peer node's region, from the peers file
	// TokenID is the public id of the API token presented (never the
	// secret); set on failed authentications so they can be traced.
	TokenID string
}

// OpKind names a kind of governed operation.
type OpKind string

// The operation kinds. Each is one plug-in of the kernel.
const (
	OpAuthenticate     OpKind = "authn"             // a credential was refused
	OpQuery            OpKind = "sql.query"         // a SELECT (run, plan, describe)
	OpCatalogList      OpKind = "catalog.list"      // the datasets a principal may query
	OpCatalogRead      OpKind = "catalog.read"      // a wire client's system-catalog query
	OpCatalogRepeat    OpKind = "catalog.repeat"    // a session's repeats of one kind of catalog read, counted
	OpSession          OpKind = "session"           // wire SET, RESET, SHOW, transaction control
	OpAuditRead        OpKind = "audit.read"        // decoded or raw audit entries
	OpRevoke           OpKind = "agreement.revoke"  // revoking an agreement
	OpMetricsRead      OpKind = "metrics.read"      // GET /metrics
	OpReserve          OpKind = "charge.reserve"    // announced before a budget or quota charge
	OpIntent           OpKind = "state.intent"      // announced before an operation changes governance state
	OpPeer             OpKind = "peer.request"      // a peer node's request refused before its operation (key, signature, window, replay, org)
	OpWitness          OpKind = "audit.witness"     // cosigning a peer's audit checkpoint, or the fork that stopped it
	OpExport           OpKind = "export.release"    // an anonymised or synthetic release of a dataset to a destination
	OpExportList       OpKind = "export.list"       // reading the registry of releases
	OpCollabQuery      OpKind = "collab.query"      // a clean-room query run by this node's member over a collaboration
	OpCollabJoin       OpKind = "collab.contribute" // this node's data joined privately into a member's clean-room query
	OpCollabStep       OpKind = "collab.step"       // a clean-room protocol step refused (session, order, message)
	OpSecaggRound      OpKind = "secagg.round"      // a federated job's round run by its coordinator: the secure sum over the members
	OpSecaggContribute OpKind = "secagg.contribute" // this node's data in a round of a federated job its owner approved
	OpSecaggStep       OpKind = "secagg.step"       // a participant's unmasking (the survivors named), or a secure-aggregation phase refused (round, order, message)
)

// Mode is how far an operation goes.
type Mode int

const (
	// Run decides, executes and releases.
	Run Mode = iota
	// Plan decides and reports cost and shape; nothing runs or is spent.
	Plan
	// Describe is a wire client's Parse/Describe: the operation is checked
	// and planned to learn its shape. Only a refusal is audited (the
	// Execute that follows is audited as a Run).
	Describe
)

func (m Mode) String() string {
	switch m {
	case Plan:
		return "plan"
	case Describe:
		return "describe"
	}
	return "run"
}
