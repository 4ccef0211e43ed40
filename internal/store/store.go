// Package store is Airlock's state store: the mutable, shared state of a node
// (API tokens, agreement revocations, privacy budgets, cached DP answers,
// the histories of released aggregate answers, and the audit log's leaves
// and checkpoints). Workspace files hold what an owner
// declares; the store holds what happens.
//
// Two implementations share one conformance suite (storetest): an embedded
// SQLite database in the workspace's data directory (the default) and
// PostgreSQL (for several replicas sharing one state).
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors.
var (
	// ErrNotFound is returned when a record does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrBudgetExhausted is returned (as an *ExhaustedError) by
	// ChargeBudgets when a charge would exceed its limit; nothing is
	// charged.
	ErrBudgetExhausted = errors.New("store: privacy budget exhausted")
)

// ExhaustedError says which charge of a ChargeBudgets call did not fit.
type ExhaustedError struct{ Index int }

func (e *ExhaustedError) Error() string { return ErrBudgetExhausted.Error() }

// Is makes errors.Is(err, ErrBudgetExhausted) hold.
func (e *ExhaustedError) Is(target error) bool { return target == ErrBudgetExhausted }

// ChargeBudget debits one ledger: ChargeBudgets with one charge.
func ChargeBudget(ctx context.Context, s Store, c Charge) (BudgetState, error) {
	st, err := s.ChargeBudgets(ctx, []Charge{c})
	if len(st) == 0 {
		return BudgetState{}, err
	}
	return st[0], err
}

// Token is an API token record. Only the SHA-256 hash of the secret is kept.
type Token struct {
	ID        string // public token id (the part before the secret)
	Hash      []byte // sha256 of the whole token string
	Principal string
	CreatedAt time.Time
	ExpiresAt time.Time // zero = never
	RevokedAt time.Time // zero = not revoked
}

// Revocation records that an agreement was revoked.
type Revocation struct {
	Agreement string
	RevokedAt time.Time
	By        string
	Reason    string
}

// BudgetKey identifies one budget ledger row: an agreement (and, optionally, a
// principal) within one refresh period.
type BudgetKey struct {
	Agreement   string
	Principal   string    // empty when the budget is per agreement
	PeriodStart time.Time // start of the refresh period (UTC)
}

// BudgetState is what has been spent in a period, in zCDP rho, plus the
// pure-epsilon and delta sums kept for reporting.
type BudgetState struct {
	Rho     float64
	Epsilon float64
	Delta   float64
}

// Charge is one atomic debit of a budget ledger.
type Charge struct {
	// ID names the charge. When set, the store records the charge with it
	// in the same transaction as the debit, so every debit can be matched
	// to the audit entry that announced it (see ChargeRecord).
	ID       string
	Key      BudgetKey
	Rho      float64 // cost in zCDP rho
	Epsilon  float64 // reporting only
	Delta    float64 // reporting only
	LimitRho float64 // the charge fails if spent+Rho would exceed this
	// LimitDelta, when positive, also caps the summed Delta.
	LimitDelta float64
}

// ExportRelease is one registered release of a dataset to an
// organisation: its signed record (see package exportop).
type ExportRelease struct {
	Dataset, Org, ID string
	// Seq orders a (dataset, org)'s releases from 1.
	Seq    int
	Record []byte
}

// ChargeRecord is one debit as the ledger recorded it.
type ChargeRecord struct {
	ID        string
	Key       BudgetKey
	Rho       float64
	Delta     float64
	CreatedAt time.Time
}

// LedgerRow is one ledger entry: what a budget key has spent in a period.
type LedgerRow struct {
	Key   BudgetKey
	State BudgetState
}

// CachedResult is a released DP answer kept so an identical query under the
// same agreement returns the same noisy answer at no new cost.
type CachedResult struct {
	Agreement   string
	Fingerprint string // hash of the normalized query and its parameters
	PeriodStart time.Time
	Body        []byte // the serialized released result
	CreatedAt   time.Time
}

// ReleaseKey names one history of released answers: an agreement's
// answers about one dataset (the differencing check's memory).
type ReleaseKey struct {
	Agreement string
	Dataset   string
}

// ReleaseRecord is one released answer in a history. Seq numbers a key's
// records from 1 in the order they were appended; AuditIndex is the audit
// entry that released the answer, once known (Audited).
type ReleaseRecord struct {
	Key        ReleaseKey
	Seq        uint64
	RequestID  string
	Audited    bool
	AuditIndex uint64
	At         time.Time
	Body       []byte // the cells' sketches (package differencing)
}

// ReleaseAppend asks RecordReleases to lock one history: After is the
// last Seq the caller already holds; records older than Since are
// pruned (zero: none).
type ReleaseAppend struct {
	Key   ReleaseKey
	After uint64
	Since time.Time
}

// Store is the state store.
type Store interface {
	PutToken(ctx context.Context, t Token) error
	TokenByHash(ctx context.Context, hash []byte) (Token, error)
	RevokeToken(ctx context.Context, id string, at time.Time) error

	RevokeAgreement(ctx context.Context, r Revocation) error
	AgreementRevocation(ctx context.Context, agreement string) (Revocation, error) // ErrNotFound if not revoked

	// ChargeBudgets debits one or several ledgers atomically: all the
	// charges or none. Concurrent charges, from any number of processes
	// sharing the store, never overspend a key's LimitRho. It returns the
	// states after the charges, in the order given, or an *ExhaustedError
	// (errors.Is ErrBudgetExhausted) with the unchanged states.
	ChargeBudgets(ctx context.Context, cs []Charge) ([]BudgetState, error)
	Budget(ctx context.Context, k BudgetKey) (BudgetState, error) // zero state if none
	// Claim records value under name unless a value is already recorded,
	// and returns the recorded one (the first writer wins): replicas that
	// share the store check they share keys this way.
	Claim(ctx context.Context, name, value string) (string, error)

	// Charges and Ledger list every recorded charge and ledger row, for
	// reconciliation with the audit log.
	Charges(ctx context.Context) ([]ChargeRecord, error)
	Ledger(ctx context.Context) ([]LedgerRow, error)

	// PutCachedResult stores a result unless one exists for the same key; it
	// returns the stored one (the first writer wins).
	PutCachedResult(ctx context.Context, r CachedResult) (CachedResult, error)
	CachedResult(ctx context.Context, agreement, fingerprint string, periodStart time.Time) (CachedResult, error)

	// RecordReleases locks the histories named (in key order, so two
	// calls cannot deadlock; across every process sharing the store),
	// hands decide the records newer than each After, and appends the
	// records decide returns (their Key must be one of the locked ones)
	// with the next Seq of their key, pruning each history to its
	// bounds, all in one transaction. An error from decide appends
	// nothing and is returned as is. It returns the appended records with
	// their Seq. decide must not use the store.
	RecordReleases(ctx context.Context, locks []ReleaseAppend, decide func(newer []ReleaseRecord) ([]ReleaseRecord, error)) ([]ReleaseRecord, error)
	// SetReleaseAuditIndex records the audit entry that released a record;
	// ReleaseAuditIndex reads it (ok false if not yet known).
	SetReleaseAuditIndex(ctx context.Context, key ReleaseKey, seq, index uint64) error
	ReleaseAuditIndex(ctx context.Context, key ReleaseKey, seq uint64) (index uint64, ok bool, err error)

	// UseNonce records a signed peer request's nonce until it expires:
	// fresh is false if the peer used it before (a replay). Nonces past
	// their expiry are forgotten (their requests are refused by time).
	UseNonce(ctx context.Context, peer, nonce string, expires, now time.Time) (fresh bool, err error)

	// Witnessed is the last checkpoint this node cosigned for the log of
	// origin (nil, nil if none); AdvanceWitnessed replaces it with a
	// checkpoint of size if the recorded one still has prevSize (0 and no
	// record: none yet), and reports false if another replica moved it.
	Witnessed(ctx context.Context, origin string) ([]byte, error)
	AdvanceWitnessed(ctx context.Context, origin string, prevSize, size uint64, signed []byte) (bool, error)
	// PutCosignature records a witness's cosignature line on this node's
	// checkpoint of size; MostCosigned returns the size the most
	// witnesses cosigned (the larger on a tie), with its lines by witness
	// (nil lines if none): one witness cosigning a newer size alone cannot
	// hide the others' cosignatures.
	PutCosignature(ctx context.Context, size uint64, witness string, line []byte) error
	MostCosigned(ctx context.Context) (uint64, map[string][]byte, error)

	// ExportReleases returns the registered releases of a dataset to an
	// organisation (to every organisation when org is ""), oldest first.
	// PutExportRelease registers a release if its (dataset, org) still has
	// exactly after releases, and reports false if another came first:
	// the caller judges the new release against that one too and retries.
	ExportReleases(ctx context.Context, dataset, org string) ([]ExportRelease, error)
	PutExportRelease(ctx context.Context, r ExportRelease, after int) (bool, error)

	// The audit log's storage (see package audit's LeafStore).
	AppendLeaves(ctx context.Context, data [][]byte, hashes [][32]byte) (first uint64, err error)
	LeafHashes(ctx context.Context, start, end uint64) ([][32]byte, error)
	Leaves(ctx context.Context, start, end uint64) ([][]byte, error)
	Size(ctx context.Context) (uint64, error)
	PutCheckpoint(ctx context.Context, size uint64, signed []byte) error
	LatestCheckpoint(ctx context.Context) ([]byte, error) // nil, nil if none

	Close() error
}
