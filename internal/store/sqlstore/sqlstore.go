// Package sqlstore implements store.Store over database/sql. The embedded
// SQLite store and the PostgreSQL store differ only in a Dialect: placeholder
// syntax, blob type and how the audit head row is locked.
package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
)

// Dialect is what differs between the SQL engines behind a Store.
type Dialect struct {
	Name string
	// Rebind turns ?-placeholders into the engine's.
	Rebind func(q string) string
	Blob   string
	// ForUpdate is appended to the audit-head SELECT to lock it.
	ForUpdate string
}

// Store is a store.Store over a database/sql handle.
type Store struct {
	db *sql.DB
	d  Dialect
}

var _ store.Store = (*Store)(nil)

// New wraps an open database and applies the schema.
func New(ctx context.Context, db *sql.DB, d Dialect) (*Store, error) {
	s := &Store{db: db, d: d}
	for _, stmt := range schema(d) {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("store: migrate: %w", err)
		}
	}
	return s, nil
}

// DB exposes the handle (for tests).
func (s *Store) DB() *sql.DB { return s.db }

func schema(d Dialect) []string {
	b := d.Blob
	return []string{
		`CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, hash ` + b + ` NOT NULL UNIQUE, principal TEXT NOT NULL, created_ns BIGINT NOT NULL, expires_ns BIGINT NOT NULL, revoked_ns BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS revocations (agreement TEXT PRIMARY KEY, revoked_ns BIGINT NOT NULL, by_principal TEXT NOT NULL, reason TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS budgets (agreement TEXT NOT NULL, principal TEXT NOT NULL, period_ns BIGINT NOT NULL, rho DOUBLE PRECISION NOT NULL, epsilon DOUBLE PRECISION NOT NULL, delta DOUBLE PRECISION NOT NULL, PRIMARY KEY (agreement, principal, period_ns))`,
		`CREATE TABLE IF NOT EXISTS cached_results (agreement TEXT NOT NULL, fingerprint TEXT NOT NULL, period_ns BIGINT NOT NULL, body ` + b + ` NOT NULL, created_ns BIGINT NOT NULL, PRIMARY KEY (agreement, fingerprint, period_ns))`,
		`CREATE TABLE IF NOT EXISTS audit_head (id INTEGER PRIMARY KEY, size BIGINT NOT NULL)`,
		`INSERT INTO audit_head (id, size) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`,
		`CREATE TABLE IF NOT EXISTS audit_leaves (idx BIGINT PRIMARY KEY, data ` + b + ` NOT NULL, hash ` + b + ` NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS audit_checkpoints (size BIGINT PRIMARY KEY, signed ` + b + ` NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS claims (name TEXT PRIMARY KEY, value TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS release_heads (agreement TEXT NOT NULL, dataset TEXT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (agreement, dataset))`,
		`CREATE TABLE IF NOT EXISTS releases (agreement TEXT NOT NULL, dataset TEXT NOT NULL, seq BIGINT NOT NULL, request_id TEXT NOT NULL, audit_index BIGINT NOT NULL, at_ns BIGINT NOT NULL, body ` + b + ` NOT NULL, PRIMARY KEY (agreement, dataset, seq))`,
		`CREATE INDEX IF NOT EXISTS releases_by_time ON releases (agreement, dataset, at_ns)`,
		`CREATE TABLE IF NOT EXISTS peer_nonces (peer TEXT NOT NULL, nonce TEXT NOT NULL, expires_ns BIGINT NOT NULL, PRIMARY KEY (peer, nonce))`,
		`CREATE INDEX IF NOT EXISTS peer_nonces_by_expiry ON peer_nonces (expires_ns)`,
		`CREATE TABLE IF NOT EXISTS witnessed (origin TEXT PRIMARY KEY, size BIGINT NOT NULL, signed ` + b + ` NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS cosignatures (size BIGINT NOT NULL, witness TEXT NOT NULL, line ` + b + ` NOT NULL, PRIMARY KEY (size, witness))`,
		`CREATE TABLE IF NOT EXISTS export_releases (dataset TEXT NOT NULL, org TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL UNIQUE, record ` + b + ` NOT NULL, PRIMARY KEY (dataset, org, seq))`,
		`CREATE TABLE IF NOT EXISTS charges (id TEXT PRIMARY KEY, agreement TEXT NOT NULL, principal TEXT NOT NULL, period_ns BIGINT NOT NULL, rho DOUBLE PRECISION NOT NULL, delta DOUBLE PRECISION NOT NULL, created_ns BIGINT NOT NULL)`,
	}
}

func (s *Store) q(query string) string { return s.d.Rebind(query) }

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// PutToken implements store.Store.
func (s *Store) PutToken(ctx context.Context, t store.Token) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO tokens (id, hash, principal, created_ns, expires_ns, revoked_ns) VALUES (?, ?, ?, ?, ?, ?)`),
		t.ID, t.Hash, t.Principal, ns(t.CreatedAt), ns(t.ExpiresAt), ns(t.RevokedAt))
	return err
}

// TokenByHash implements store.Store.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (store.Token, error) {
	var t store.Token
	var c, e, r int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT id, hash, principal, created_ns, expires_ns, revoked_ns FROM tokens WHERE hash = ?`), hash).
		Scan(&t.ID, &t.Hash, &t.Principal, &c, &e, &r)
	if errors.Is(err, sql.ErrNoRows) {
		return t, store.ErrNotFound
	}
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromNS(c), fromNS(e), fromNS(r)
	return t, err
}

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE tokens SET revoked_ns = ? WHERE id = ? AND revoked_ns = 0`), ns(at), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// RevokeAgreement implements store.Store. Revoking twice keeps the first.
func (s *Store) RevokeAgreement(ctx context.Context, r store.Revocation) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO revocations (agreement, revoked_ns, by_principal, reason) VALUES (?, ?, ?, ?) ON CONFLICT (agreement) DO NOTHING`),
		r.Agreement, ns(r.RevokedAt), r.By, r.Reason)
	return err
}

// AgreementRevocation implements store.Store.
func (s *Store) AgreementRevocation(ctx context.Context, agreement string) (store.Revocation, error) {
	r := store.Revocation{Agreement: agreement}
	var at int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT revoked_ns, by_principal, reason FROM revocations WHERE agreement = ?`), agreement).Scan(&at, &r.By, &r.Reason)
	if errors.Is(err, sql.ErrNoRows) {
		return r, store.ErrNotFound
	}
	r.RevokedAt = fromNS(at)
	return r, err
}

// budgetSlack lets the exact last remaining budget be spent despite float
// rounding in the running sum; far below any meaningful rho.
const budgetSlack = 1e-12

// ChargeBudgets implements store.Store with one conditional UPDATE per
// key, all in one transaction: each row lock serializes concurrent charges
// to its key and the WHERE clause is re-checked against the committed
// value, so no budget goes over its limit, and a charge that does not fit
// rolls back the others. Keys are locked in one global order, so two
// multi-key charges cannot deadlock.
func (s *Store) ChargeBudgets(ctx context.Context, cs []store.Charge) ([]store.BudgetState, error) {
	order := make([]int, len(cs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return keyLess(cs[order[a]].Key, cs[order[b]].Key) })
	for _, c := range cs {
		k := c.Key
		if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO budgets (agreement, principal, period_ns, rho, epsilon, delta) VALUES (?, ?, ?, 0, 0, 0) ON CONFLICT (agreement, principal, period_ns) DO NOTHING`),
			k.Agreement, k.Principal, ns(k.PeriodStart)); err != nil {
			return nil, err
		}
	}
	// The debits and their charge records commit together or not at all.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	states := make([]store.BudgetState, len(cs))
	for _, i := range order {
		c := cs[i]
		k := c.Key
		limitDelta := c.LimitDelta
		if limitDelta <= 0 {
			limitDelta = 1e300 // no δ cap: any sum fits
		}
		err = tx.QueryRowContext(ctx, s.q(`UPDATE budgets SET rho = rho + ?, epsilon = epsilon + ?, delta = delta + ? WHERE agreement = ? AND principal = ? AND period_ns = ? AND rho + ? <= ? AND delta + ? <= ? RETURNING rho, epsilon, delta`),
			c.Rho, c.Epsilon, c.Delta, k.Agreement, k.Principal, ns(k.PeriodStart), c.Rho, c.LimitRho*(1+budgetSlack)+budgetSlack, c.Delta, limitDelta*(1+budgetSlack)).Scan(&states[i].Rho, &states[i].Epsilon, &states[i].Delta)
		if errors.Is(err, sql.ErrNoRows) {
			tx.Rollback()
			cur := make([]store.BudgetState, len(cs))
			for j, c := range cs {
				if cur[j], err = s.Budget(ctx, c.Key); err != nil {
					return nil, err
				}
			}
			return cur, &store.ExhaustedError{Index: i}
		}
		if err != nil {
			return nil, err
		}
		if c.ID != "" {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO charges (id, agreement, principal, period_ns, rho, delta, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?)`),
				c.ID, k.Agreement, k.Principal, ns(k.PeriodStart), c.Rho, c.Delta, ns(time.Now())); err != nil {
				return nil, err
			}
		}
	}
	return states, tx.Commit()
}

// RecordReleases implements store.Store. Each history's head row is the
// lock: the UPDATE that reads its Seq takes PostgreSQL's row lock (and
// SQLite's write lock, taken at BEGIN), held to COMMIT.
func (s *Store) RecordReleases(ctx context.Context, locks []store.ReleaseAppend, decide func([]store.ReleaseRecord) ([]store.ReleaseRecord, error)) ([]store.ReleaseRecord, error) {
	locks = slices.Clone(locks)
	slices.SortFunc(locks, func(a, b store.ReleaseAppend) int {
		return cmp.Or(cmp.Compare(a.Key.Agreement, b.Key.Agreement), cmp.Compare(a.Key.Dataset, b.Key.Dataset))
	})
	for _, l := range locks {
		if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO release_heads (agreement, dataset, seq) VALUES (?, ?, 0) ON CONFLICT (agreement, dataset) DO NOTHING`), l.Key.Agreement, l.Key.Dataset); err != nil {
			return nil, err
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	head := map[store.ReleaseKey]uint64{}
	var newer []store.ReleaseRecord
	for _, l := range locks {
		var seq uint64
		if err := tx.QueryRowContext(ctx, s.q(`UPDATE release_heads SET seq = seq WHERE agreement = ? AND dataset = ? RETURNING seq`), l.Key.Agreement, l.Key.Dataset).Scan(&seq); err != nil {
			return nil, err
		}
		head[l.Key] = seq
		rows, err := tx.QueryContext(ctx, s.q(`SELECT seq, request_id, audit_index, at_ns, body FROM releases WHERE agreement = ? AND dataset = ? AND seq > ? ORDER BY seq`), l.Key.Agreement, l.Key.Dataset, l.After)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			r := store.ReleaseRecord{Key: l.Key}
			var at, idx int64
			if err := rows.Scan(&r.Seq, &r.RequestID, &idx, &at, &r.Body); err != nil {
				rows.Close()
				return nil, err
			}
			r.At = fromNS(at)
			r.Audited, r.AuditIndex = idx >= 0, uint64(max(idx, 0))
			newer = append(newer, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	add, err := decide(newer)
	if err != nil {
		return nil, err
	}
	for i := range add {
		r := &add[i]
		seq, ok := head[r.Key]
		if !ok {
			return nil, fmt.Errorf("store: release for %v, which is not locked", r.Key)
		}
		r.Seq = seq + 1
		head[r.Key] = r.Seq
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO releases (agreement, dataset, seq, request_id, audit_index, at_ns, body) VALUES (?, ?, ?, ?, -1, ?, ?)`),
			r.Key.Agreement, r.Key.Dataset, r.Seq, r.RequestID, ns(r.At), r.Body); err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE release_heads SET seq = ? WHERE agreement = ? AND dataset = ?`), r.Seq, r.Key.Agreement, r.Key.Dataset); err != nil {
			return nil, err
		}
	}
	for _, l := range locks {
		if !l.Since.IsZero() {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM releases WHERE agreement = ? AND dataset = ? AND at_ns < ?`), l.Key.Agreement, l.Key.Dataset, ns(l.Since)); err != nil {
				return nil, err
			}
		}
	}
	return add, tx.Commit()
}

// SetReleaseAuditIndex implements store.Store.
func (s *Store) SetReleaseAuditIndex(ctx context.Context, k store.ReleaseKey, seq, index uint64) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE releases SET audit_index = ? WHERE agreement = ? AND dataset = ? AND seq = ?`), index, k.Agreement, k.Dataset, seq)
	return err
}

// ReleaseAuditIndex implements store.Store. An index not yet known is
// stored as -1.
func (s *Store) ReleaseAuditIndex(ctx context.Context, k store.ReleaseKey, seq uint64) (uint64, bool, error) {
	var idx int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT audit_index FROM releases WHERE agreement = ? AND dataset = ? AND seq = ?`), k.Agreement, k.Dataset, seq).Scan(&idx)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, store.ErrNotFound
	}
	return uint64(max(idx, 0)), idx >= 0, err
}

func keyLess(a, b store.BudgetKey) bool {
	if a.Agreement != b.Agreement {
		return a.Agreement < b.Agreement
	}
	if a.Principal != b.Principal {
		return a.Principal < b.Principal
	}
	return a.PeriodStart.Before(b.PeriodStart)
}

// Claim implements store.Store.
func (s *Store) Claim(ctx context.Context, name, value string) (string, error) {
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO claims (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`), name, value); err != nil {
		return "", err
	}
	var got string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT value FROM claims WHERE name = ?`), name).Scan(&got)
	return got, err
}

// Charges implements store.Store.
func (s *Store) Charges(ctx context.Context) ([]store.ChargeRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, agreement, principal, period_ns, rho, delta, created_ns FROM charges ORDER BY created_ns, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.ChargeRecord
	for rows.Next() {
		var c store.ChargeRecord
		var period, created int64
		if err := rows.Scan(&c.ID, &c.Key.Agreement, &c.Key.Principal, &period, &c.Rho, &c.Delta, &created); err != nil {
			return nil, err
		}
		c.Key.PeriodStart, c.CreatedAt = fromNS(period), fromNS(created)
		out = append(out, c)
	}
	return out, rows.Err()
}

// Ledger implements store.Store.
func (s *Store) Ledger(ctx context.Context) ([]store.LedgerRow, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT agreement, principal, period_ns, rho, epsilon, delta FROM budgets ORDER BY agreement, principal, period_ns`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.LedgerRow
	for rows.Next() {
		var r store.LedgerRow
		var period int64
		if err := rows.Scan(&r.Key.Agreement, &r.Key.Principal, &period, &r.State.Rho, &r.State.Epsilon, &r.State.Delta); err != nil {
			return nil, err
		}
		r.Key.PeriodStart = fromNS(period)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Budget implements store.Store.
func (s *Store) Budget(ctx context.Context, k store.BudgetKey) (store.BudgetState, error) {
	var st store.BudgetState
	err := s.db.QueryRowContext(ctx, s.q(`SELECT rho, epsilon, delta FROM budgets WHERE agreement = ? AND principal = ? AND period_ns = ?`),
		k.Agreement, k.Principal, ns(k.PeriodStart)).Scan(&st.Rho, &st.Epsilon, &st.Delta)
	if errors.Is(err, sql.ErrNoRows) {
		return store.BudgetState{}, nil
	}
	return st, err
}

// PutCachedResult implements store.Store: the first writer wins.
func (s *Store) PutCachedResult(ctx context.Context, r store.CachedResult) (store.CachedResult, error) {
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO cached_results (agreement, fingerprint, period_ns, body, created_ns) VALUES (?, ?, ?, ?, ?) ON CONFLICT (agreement, fingerprint, period_ns) DO NOTHING`),
		r.Agreement, r.Fingerprint, ns(r.PeriodStart), r.Body, ns(r.CreatedAt)); err != nil {
		return r, err
	}
	return s.CachedResult(ctx, r.Agreement, r.Fingerprint, r.PeriodStart)
}

// CachedResult implements store.Store.
func (s *Store) CachedResult(ctx context.Context, agreement, fingerprint string, periodStart time.Time) (store.CachedResult, error) {
	r := store.CachedResult{Agreement: agreement, Fingerprint: fingerprint, PeriodStart: periodStart}
	var created int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT body, created_ns FROM cached_results WHERE agreement = ? AND fingerprint = ? AND period_ns = ?`),
		agreement, fingerprint, ns(periodStart)).Scan(&r.Body, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return r, store.ErrNotFound
	}
	r.CreatedAt = fromNS(created)
	return r, err
}

// AppendLeaves implements store.Store: one transaction locks the tree head,
// assigns the next dense indices and inserts the batch.
func (s *Store) AppendLeaves(ctx context.Context, data [][]byte, hashes [][32]byte) (uint64, error) {
	if len(data) != len(hashes) {
		return 0, errors.New("store: data and hashes differ in length")
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var size int64
	if err := tx.QueryRowContext(ctx, `SELECT size FROM audit_head WHERE id = 1`+s.d.ForUpdate).Scan(&size); err != nil {
		return 0, err
	}
	const chunk = 200
	for start := 0; start < len(data); start += chunk {
		end := min(start+chunk, len(data))
		var b strings.Builder
		b.WriteString("INSERT INTO audit_leaves (idx, data, hash) VALUES ")
		args := make([]any, 0, 3*(end-start))
		for i := start; i < end; i++ {
			if i > start {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?)")
			h := hashes[i]
			args = append(args, size+int64(i), data[i], h[:])
		}
		if _, err := tx.ExecContext(ctx, s.q(b.String()), args...); err != nil {
			return 0, err
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE audit_head SET size = ? WHERE id = 1`), size+int64(len(data))); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return uint64(size), nil
}

// LeafHashes implements store.Store.
func (s *Store) LeafHashes(ctx context.Context, start, end uint64) ([][32]byte, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT idx, hash FROM audit_leaves WHERE idx >= ? AND idx < ? ORDER BY idx`), int64(start), int64(end))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][32]byte
	next := int64(start)
	for rows.Next() {
		var idx int64
		var h []byte
		if err := rows.Scan(&idx, &h); err != nil {
			return nil, err
		}
		if idx != next || len(h) != 32 {
			return nil, fmt.Errorf("store: audit leaf %d is missing or malformed", next)
		}
		next++
		out = append(out, [32]byte(h))
	}
	return out, rows.Err()
}

// Leaves implements store.Store.
func (s *Store) Leaves(ctx context.Context, start, end uint64) ([][]byte, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT idx, data FROM audit_leaves WHERE idx >= ? AND idx < ? ORDER BY idx`), int64(start), int64(end))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	next := int64(start)
	for rows.Next() {
		var idx int64
		var d []byte
		if err := rows.Scan(&idx, &d); err != nil {
			return nil, err
		}
		if idx != next {
			return nil, fmt.Errorf("store: audit leaf %d is missing", next)
		}
		next++
		out = append(out, d)
	}
	return out, rows.Err()
}

// Size implements store.Store.
func (s *Store) Size(ctx context.Context) (uint64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT size FROM audit_head WHERE id = 1`).Scan(&n)
	return uint64(n), err
}

// PutCheckpoint implements store.Store.
func (s *Store) PutCheckpoint(ctx context.Context, size uint64, signed []byte) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO audit_checkpoints (size, signed) VALUES (?, ?) ON CONFLICT (size) DO UPDATE SET signed = excluded.signed`), int64(size), signed)
	return err
}

// LatestCheckpoint implements store.Store.
func (s *Store) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, `SELECT signed FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return b, err
}

// UseNonce implements store.Store.
func (s *Store) UseNonce(ctx context.Context, peer, nonce string, expires, now time.Time) (bool, error) {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM peer_nonces WHERE expires_ns < ?`), ns(now)); err != nil {
		return false, err
	}
	res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO peer_nonces (peer, nonce, expires_ns) VALUES (?, ?, ?) ON CONFLICT (peer, nonce) DO NOTHING`), peer, nonce, ns(expires))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Witnessed implements store.Store.
func (s *Store) Witnessed(ctx context.Context, origin string) ([]byte, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, s.q(`SELECT signed FROM witnessed WHERE origin = ?`), origin).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return b, err
}

// AdvanceWitnessed implements store.Store.
func (s *Store) AdvanceWitnessed(ctx context.Context, origin string, prevSize, size uint64, signed []byte) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE witnessed SET size = ?, signed = ? WHERE origin = ? AND size = ?`), int64(size), signed, origin, int64(prevSize))
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return true, nil
	}
	if prevSize != 0 {
		return false, nil
	}
	res, err = s.db.ExecContext(ctx, s.q(`INSERT INTO witnessed (origin, size, signed) VALUES (?, ?, ?) ON CONFLICT (origin) DO NOTHING`), origin, int64(size), signed)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// ExportReleases implements store.Store.
func (s *Store) ExportReleases(ctx context.Context, dataset, org string) ([]store.ExportRelease, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT dataset, org, seq, id, record FROM export_releases WHERE dataset = ? AND (org = ? OR ? = '') ORDER BY seq, org`), dataset, org, org)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.ExportRelease
	for rows.Next() {
		var r store.ExportRelease
		var seq int64
		if err := rows.Scan(&r.Dataset, &r.Org, &seq, &r.ID, &r.Record); err != nil {
			return nil, err
		}
		r.Seq = int(seq)
		out = append(out, r)
	}
	return out, rows.Err()
}

// PutExportRelease implements store.Store: the primary key (dataset, org,
// seq) lets exactly one of two concurrent releases take seq after+1.
func (s *Store) PutExportRelease(ctx context.Context, r store.ExportRelease, after int) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO export_releases (dataset, org, seq, id, record) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`),
		r.Dataset, r.Org, int64(after+1), r.ID, r.Record)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// PutCosignature implements store.Store.
func (s *Store) PutCosignature(ctx context.Context, size uint64, witness string, line []byte) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO cosignatures (size, witness, line) VALUES (?, ?, ?) ON CONFLICT (size, witness) DO UPDATE SET line = excluded.line`), int64(size), witness, line)
	return err
}

// MostCosigned implements store.Store.
func (s *Store) MostCosigned(ctx context.Context) (uint64, map[string][]byte, error) {
	var size, n int64
	err := s.db.QueryRowContext(ctx, `SELECT size, count(*) AS n FROM cosignatures GROUP BY size ORDER BY n DESC, size DESC LIMIT 1`).Scan(&size, &n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	} else if err != nil {
		return 0, nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT witness, line FROM cosignatures WHERE size = ?`), size)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var w string
		var l []byte
		if err := rows.Scan(&w, &l); err != nil {
			return 0, nil, err
		}
		out[w] = l
	}
	return uint64(size), out, rows.Err()
}

// Close implements store.Store.
func (s *Store) Close() error { return s.db.Close() }
