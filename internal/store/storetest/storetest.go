// Package storetest is the conformance suite every store.Store passes: the
// embedded SQLite store and the PostgreSQL store run the same tests.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
)

// Opener opens a store. Calling it twice with the same name must return two
// handles on the same underlying state (a reopen, or a second replica).
type Opener func(t *testing.T, name string) store.Store

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("tokens", func(t *testing.T) {
		s := open(t, "tokens")
		now := time.Now().UTC().Truncate(time.Microsecond)
		tok := store.Token{ID: "abc", Hash: []byte{1, 2, 3}, Principal: "p@o", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.PutToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		got, err := s.TokenByHash(ctx, []byte{1, 2, 3})
		if err != nil || got.ID != "abc" || got.Principal != "p@o" || !got.ExpiresAt.Equal(tok.ExpiresAt) || !got.RevokedAt.IsZero() {
			t.Fatalf("got %+v, %v", got, err)
		}
		if _, err := s.TokenByHash(ctx, []byte{9}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown hash: got %v, want ErrNotFound", err)
		}
		if err := s.RevokeToken(ctx, "abc", now); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.TokenByHash(ctx, []byte{1, 2, 3}); got.RevokedAt.IsZero() {
			t.Fatal("revoked token reads as not revoked")
		}
		if err := s.RevokeToken(ctx, "nope", now); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("revoke unknown: got %v", err)
		}
	})
	t.Run("revocations", func(t *testing.T) {
		s := open(t, "revocations")
		if _, err := s.AgreementRevocation(ctx, "a1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
		at := time.Now().UTC().Truncate(time.Microsecond)
		if err := s.RevokeAgreement(ctx, store.Revocation{Agreement: "a1", RevokedAt: at, By: "steward", Reason: "breach"}); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeAgreement(ctx, store.Revocation{Agreement: "a1", RevokedAt: at.Add(time.Hour), By: "x", Reason: "again"}); err != nil {
			t.Fatal(err)
		}
		r, err := s.AgreementRevocation(ctx, "a1")
		if err != nil || !r.RevokedAt.Equal(at) || r.Reason != "breach" {
			t.Fatalf("got %+v, %v; want the first revocation kept", r, err)
		}
	})
	t.Run("budget", func(t *testing.T) {
		s := open(t, "budget")
		k := store.BudgetKey{Agreement: "a", PeriodStart: time.Unix(1700000000, 0).UTC()}
		// 0.1 + 0.2 > 0.3 in floating point; the last remaining budget must still be spendable.
		for _, c := range []float64{0.1, 0.2} {
			if _, err := store.ChargeBudget(ctx, s, store.Charge{Key: k, Rho: c, Epsilon: 1, LimitRho: 0.3}); err != nil {
				t.Fatalf("charge %v: %v", c, err)
			}
		}
		st, err := store.ChargeBudget(ctx, s, store.Charge{Key: k, Rho: 0.01, LimitRho: 0.3})
		if !errors.Is(err, store.ErrBudgetExhausted) {
			t.Fatalf("over limit: got %v, want ErrBudgetExhausted", err)
		}
		if st.Rho < 0.29 || st.Rho > 0.31 || st.Epsilon != 2 {
			t.Fatalf("state after refusal: %+v", st)
		}
		other := k
		other.PeriodStart = k.PeriodStart.Add(24 * time.Hour)
		if st, _ := s.Budget(ctx, other); st.Rho != 0 {
			t.Fatalf("new period starts at %v, want 0", st.Rho)
		}
		other.Principal = "p"
		if _, err := store.ChargeBudget(ctx, s, store.Charge{Key: other, Rho: 0.3, LimitRho: 0.3}); err != nil {
			t.Fatalf("separate ledger: %v", err)
		}
	})
	t.Run("several budgets, all or none", func(t *testing.T) {
		s := open(t, "multi")
		at := time.Unix(1700000000, 0).UTC()
		a := store.BudgetKey{Agreement: "owner-a", PeriodStart: at}
		b := store.BudgetKey{Agreement: "owner-b", PeriodStart: at}
		both := func(rhoB float64) ([]store.BudgetState, error) {
			return s.ChargeBudgets(ctx, []store.Charge{
				{ID: fmt.Sprintf("m-%v-a", rhoB), Key: b, Rho: rhoB, LimitRho: 1},
				{ID: fmt.Sprintf("m-%v-b", rhoB), Key: a, Rho: 0.25, LimitRho: 1},
			})
		}
		st, err := both(0.5)
		if err != nil || len(st) != 2 || st[0].Rho != 0.5 || st[1].Rho != 0.25 {
			t.Fatalf("first charge: %+v, %v (states in the order given)", st, err)
		}
		// b cannot take 0.75 more: a must not be charged either.
		st, err = both(0.75)
		var ex *store.ExhaustedError
		if !errors.As(err, &ex) || !errors.Is(err, store.ErrBudgetExhausted) || ex.Index != 0 {
			t.Fatalf("over b's limit: got %v, want the first charge named as exhausted", err)
		}
		if st[0].Rho != 0.5 || st[1].Rho != 0.25 {
			t.Fatalf("states after the refusal: %+v, want both unchanged", st)
		}
		if cur, _ := s.Budget(ctx, a); cur.Rho != 0.25 {
			t.Fatalf("a was charged by a refused multi-key charge: %+v", cur)
		}
		charges, _ := s.Charges(ctx)
		if len(charges) != 2 {
			t.Fatalf("%d charge records, want the 2 of the charge that committed", len(charges))
		}
	})
	t.Run("budget race", func(t *testing.T) {
		a := open(t, "race")
		b := open(t, "race") // a second handle: another process or replica
		k := store.BudgetKey{Agreement: "race", PeriodStart: time.Unix(1700000000, 0).UTC()}
		const fits = 37
		var ok, exhausted atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < 200; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				s := a
				if i%2 == 1 {
					s = b
				}
				_, err := store.ChargeBudget(ctx, s, store.Charge{ID: fmt.Sprintf("race-%d", i), Key: k, Rho: 0.1, LimitRho: 0.1 * fits})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, store.ErrBudgetExhausted):
					exhausted.Add(1)
				default:
					t.Error(err)
				}
			}(i)
		}
		wg.Wait()
		if ok.Load() != fits || exhausted.Load() != 200-fits {
			t.Fatalf("%d charges succeeded, %d refused; want exactly %d and %d", ok.Load(), exhausted.Load(), fits, 200-fits)
		}
		// Exactly the successful charges are recorded, and they add up to
		// the ledger row: the debit and its record commit together.
		charges, err := a.Charges(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		var sum float64
		for _, c := range charges {
			if c.Key == k {
				n++
				sum += c.Rho
			}
		}
		ledger, err := b.Ledger(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var row *store.LedgerRow
		for i := range ledger {
			if ledger[i].Key == k {
				row = &ledger[i]
			}
		}
		if n != fits || row == nil || math.Abs(row.State.Rho-sum) > 1e-9 {
			t.Fatalf("%d charge records summing to %v against ledger %+v; want %d matching the ledger", n, sum, row, fits)
		}
	})
	t.Run("claims", func(t *testing.T) {
		a := open(t, "claims")
		b := open(t, "claims")
		if got, err := a.Claim(ctx, "k", "first"); err != nil || got != "first" {
			t.Fatalf("first claim: %q %v", got, err)
		}
		if got, err := b.Claim(ctx, "k", "second"); err != nil || got != "first" {
			t.Fatalf("second claim from another handle: %q %v, want the first value", got, err)
		}
	})
	t.Run("peer nonces", func(t *testing.T) {
		a := open(t, "nonces")
		b := open(t, "nonces")
		now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
		if fresh, err := a.UseNonce(ctx, "stmary", "n1", now.Add(time.Minute), now); err != nil || !fresh {
			t.Fatalf("first use: %v %v", fresh, err)
		}
		if fresh, err := b.UseNonce(ctx, "stmary", "n1", now.Add(time.Minute), now); err != nil || fresh {
			t.Fatalf("replay through another handle: fresh=%v %v, want a replay", fresh, err)
		}
		if fresh, err := a.UseNonce(ctx, "stjohn", "n1", now.Add(time.Minute), now); err != nil || !fresh {
			t.Fatalf("same nonce from another peer: %v %v, want fresh", fresh, err)
		}
		// Once expired it is forgotten (the request's window has closed).
		if fresh, err := a.UseNonce(ctx, "stmary", "n1", now.Add(3*time.Minute), now.Add(2*time.Minute)); err != nil || !fresh {
			t.Fatalf("after expiry: %v %v, want forgotten", fresh, err)
		}
	})
	t.Run("export releases", func(t *testing.T) {
		a := open(t, "exports")
		b := open(t, "exports")
		if rs, err := a.ExportReleases(ctx, "visits", "inst"); err != nil || len(rs) != 0 {
			t.Fatalf("none yet: %v %v", rs, err)
		}
		r1 := store.ExportRelease{Dataset: "visits", Org: "inst", ID: "rel-1", Record: []byte(`{"id":"rel-1"}`)}
		if ok, err := a.PutExportRelease(ctx, r1, 0); err != nil || !ok {
			t.Fatalf("first: %v %v", ok, err)
		}
		// A replica that judged against the empty registry loses the race.
		r2 := store.ExportRelease{Dataset: "visits", Org: "inst", ID: "rel-2", Record: []byte(`{"id":"rel-2"}`)}
		if ok, err := b.PutExportRelease(ctx, r2, 0); err != nil || ok {
			t.Fatalf("a stale second: %v %v, want refused", ok, err)
		}
		if ok, err := b.PutExportRelease(ctx, r2, 1); err != nil || !ok {
			t.Fatalf("the second, judged against the first: %v %v", ok, err)
		}
		other := store.ExportRelease{Dataset: "visits", Org: "lab", ID: "rel-3", Record: []byte(`{}`)}
		if ok, err := a.PutExportRelease(ctx, other, 0); err != nil || !ok {
			t.Fatalf("another org's first: %v %v", ok, err)
		}
		rs, err := b.ExportReleases(ctx, "visits", "inst")
		if err != nil || len(rs) != 2 || rs[0].ID != "rel-1" || rs[1].ID != "rel-2" || rs[1].Seq != 2 || string(rs[0].Record) != `{"id":"rel-1"}` {
			t.Fatalf("the institute's releases: %+v %v", rs, err)
		}
		if all, err := a.ExportReleases(ctx, "visits", ""); err != nil || len(all) != 3 {
			t.Fatalf("every org's: %+v %v", all, err)
		}
		if none, err := a.ExportReleases(ctx, "transactions", ""); err != nil || len(none) != 0 {
			t.Fatalf("another dataset: %+v %v", none, err)
		}
	})
	t.Run("witnessed checkpoints", func(t *testing.T) {
		a := open(t, "witnessed")
		b := open(t, "witnessed")
		if got, err := a.Witnessed(ctx, "airlock/x"); err != nil || got != nil {
			t.Fatalf("none yet: %q %v", got, err)
		}
		if ok, err := a.AdvanceWitnessed(ctx, "airlock/x", 0, 5, []byte("cp5")); err != nil || !ok {
			t.Fatalf("first: %v %v", ok, err)
		}
		if ok, err := b.AdvanceWitnessed(ctx, "airlock/x", 0, 6, []byte("cp6")); err != nil || ok {
			t.Fatalf("a second first from another handle: %v %v, want refused", ok, err)
		}
		if ok, err := b.AdvanceWitnessed(ctx, "airlock/x", 5, 9, []byte("cp9")); err != nil || !ok {
			t.Fatalf("advance: %v %v", ok, err)
		}
		if ok, err := a.AdvanceWitnessed(ctx, "airlock/x", 5, 7, []byte("cp7")); err != nil || ok {
			t.Fatalf("advance from a stale size: %v %v, want refused", ok, err)
		}
		if got, _ := a.Witnessed(ctx, "airlock/x"); string(got) != "cp9" {
			t.Fatalf("witnessed = %q, want cp9", got)
		}
		if err := a.PutCosignature(ctx, 9, "w1", []byte("line1")); err != nil {
			t.Fatal(err)
		}
		if err := b.PutCosignature(ctx, 9, "w2", []byte("line2")); err != nil {
			t.Fatal(err)
		}
		if err := a.PutCosignature(ctx, 4, "w1", []byte("old")); err != nil {
			t.Fatal(err)
		}
		if err := a.PutCosignature(ctx, 12, "w1", []byte("newer, alone")); err != nil {
			t.Fatal(err)
		}
		size, got, err := a.MostCosigned(ctx)
		if err != nil || size != 9 || len(got) != 2 || string(got["w2"]) != "line2" {
			t.Fatalf("most cosigned = %d %q %v, want size 9 with both witnesses", size, got, err)
		}
	})
	t.Run("cached results", func(t *testing.T) {
		s := open(t, "cache")
		p := time.Unix(1700000000, 0).UTC()
		if _, err := s.CachedResult(ctx, "a", "f", p); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("got %v", err)
		}
		first, err := s.PutCachedResult(ctx, store.CachedResult{Agreement: "a", Fingerprint: "f", PeriodStart: p, Body: []byte("one"), CreatedAt: p})
		if err != nil || string(first.Body) != "one" {
			t.Fatalf("got %q, %v", first.Body, err)
		}
		second, err := s.PutCachedResult(ctx, store.CachedResult{Agreement: "a", Fingerprint: "f", PeriodStart: p, Body: []byte("two"), CreatedAt: p})
		if err != nil || string(second.Body) != "one" {
			t.Fatalf("second writer got %q, %v; want the first answer", second.Body, err)
		}
	})
	t.Run("audit leaves", func(t *testing.T) {
		a := open(t, "audit")
		b := open(t, "audit")
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firsts []uint64
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				s := a
				if i%2 == 1 {
					s = b
				}
				data := [][]byte{[]byte(fmt.Sprintf("e%d-a", i)), []byte(fmt.Sprintf("e%d-b", i))}
				first, err := s.AppendLeaves(ctx, data, [][32]byte{sha256.Sum256(data[0]), sha256.Sum256(data[1])})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				firsts = append(firsts, first)
				mu.Unlock()
			}(i)
		}
		wg.Wait()
		sort.Slice(firsts, func(i, j int) bool { return firsts[i] < firsts[j] })
		for i, f := range firsts {
			if f != uint64(2*i) {
				t.Fatalf("batch firsts %v are not dense", firsts)
			}
		}
		if n, _ := a.Size(ctx); n != 100 {
			t.Fatalf("size %d, want 100", n)
		}
		leaves, err := b.Leaves(ctx, 0, 100)
		if err != nil || len(leaves) != 100 {
			t.Fatalf("leaves: %d, %v", len(leaves), err)
		}
		hashes, err := a.LeafHashes(ctx, 10, 20)
		if err != nil || len(hashes) != 10 {
			t.Fatalf("hashes: %d, %v", len(hashes), err)
		}
		for i, h := range hashes {
			if h != sha256.Sum256(leaves[10+i]) {
				t.Fatalf("hash %d does not match its leaf", 10+i)
			}
		}
		if cp, err := a.LatestCheckpoint(ctx); cp != nil || err != nil {
			t.Fatalf("no checkpoint yet: got %q, %v", cp, err)
		}
		a.PutCheckpoint(ctx, 50, []byte("cp50"))
		a.PutCheckpoint(ctx, 100, []byte("cp100"))
		if cp, _ := b.LatestCheckpoint(ctx); !bytes.Equal(cp, []byte("cp100")) {
			t.Fatalf("latest checkpoint %q", cp)
		}
	})
	t.Run("release histories", func(t *testing.T) {
		a := open(t, "releases")
		b := open(t, "releases") // a second replica
		k := store.ReleaseKey{Agreement: "ag", Dataset: "tx"}
		other := store.ReleaseKey{Agreement: "ag", Dataset: "visits"}
		t0 := time.Now().UTC().Truncate(time.Microsecond)
		// Each replica appends one record per call, having seen what the
		// other appended: the lock makes check-then-append atomic.
		var wg sync.WaitGroup
		var seen sync.Map
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				s := []store.Store{a, b}[i%2]
				var saw int
				got, err := s.RecordReleases(ctx, []store.ReleaseAppend{{Key: k}}, func(newer []store.ReleaseRecord) ([]store.ReleaseRecord, error) {
					saw = len(newer)
					return []store.ReleaseRecord{{Key: k, RequestID: fmt.Sprintf("r%d", i), At: t0.Add(time.Duration(i) * time.Second), Body: []byte{byte(i)}}}, nil
				})
				if err != nil || len(got) != 1 {
					t.Error(got, err)
					return
				}
				// The record appended is numbered after all those seen.
				if got[0].Seq != uint64(saw)+1 {
					t.Errorf("appended seq %d after seeing %d records", got[0].Seq, saw)
				}
				if _, dup := seen.LoadOrStore(got[0].Seq, i); dup {
					t.Errorf("seq %d given twice", got[0].Seq)
				}
			}(i)
		}
		wg.Wait()
		all, err := b.RecordReleases(ctx, []store.ReleaseAppend{{Key: k}}, func(newer []store.ReleaseRecord) ([]store.ReleaseRecord, error) { return nil, nil })
		if err != nil || len(all) != 0 {
			t.Fatal(all, err)
		}
		var newer []store.ReleaseRecord
		boom := errors.New("refused")
		_, err = a.RecordReleases(ctx, []store.ReleaseAppend{{Key: k, After: 15}, {Key: other}}, func(n []store.ReleaseRecord) ([]store.ReleaseRecord, error) {
			newer = n
			return []store.ReleaseRecord{{Key: other, RequestID: "x", At: t0, Body: []byte("x")}}, boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("decide's error: got %v", err)
		}
		if len(newer) != 5 || newer[0].Seq != 16 || newer[4].Seq != 20 || newer[0].Key != k {
			t.Fatalf("records after 15: %+v", newer)
		}
		// The refused call appended nothing to the other history.
		a.RecordReleases(ctx, []store.ReleaseAppend{{Key: other}}, func(n []store.ReleaseRecord) ([]store.ReleaseRecord, error) {
			if len(n) != 0 {
				t.Errorf("a refused append left %d records", len(n))
			}
			return nil, nil
		})
		if _, ok, err := b.ReleaseAuditIndex(ctx, k, 3); err != nil || ok {
			t.Fatalf("audit index before it is set: %v, %v", ok, err)
		}
		if err := a.SetReleaseAuditIndex(ctx, k, 3, 0); err != nil {
			t.Fatal(err)
		}
		if idx, ok, err := b.ReleaseAuditIndex(ctx, k, 3); err != nil || !ok || idx != 0 {
			t.Fatalf("audit index 0: %d, %v, %v", idx, ok, err)
		}
		// Bounds: nothing older than record 13's time.
		_, err = b.RecordReleases(ctx, []store.ReleaseAppend{{Key: k, Since: t0.Add(12 * time.Second)}}, func([]store.ReleaseRecord) ([]store.ReleaseRecord, error) {
			return []store.ReleaseRecord{{Key: k, RequestID: "last", At: t0.Add(time.Hour), Body: []byte("z")}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		a.RecordReleases(ctx, []store.ReleaseAppend{{Key: k}}, func(n []store.ReleaseRecord) ([]store.ReleaseRecord, error) {
			newer = n
			return nil, nil
		})
		// Kept: the records whose time is not before t0+12s.
		var want []uint64
		for seq := uint64(1); seq <= 20; seq++ {
			if i, _ := seen.Load(seq); i.(int) >= 12 {
				want = append(want, seq)
			}
		}
		want = append(want, 21)
		var got []uint64
		for _, r := range newer {
			got = append(got, r.Seq)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || newer[len(newer)-1].RequestID != "last" {
			t.Fatalf("after pruning: kept %v, want %v", got, want)
		}
		var pruned uint64 // a record older than the bound
		for seq := uint64(1); seq <= 20 && pruned == 0; seq++ {
			if i, _ := seen.Load(seq); i.(int) < 12 {
				pruned = seq
			}
		}
		if _, _, err := a.ReleaseAuditIndex(ctx, k, pruned); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("pruned record: %v", err)
		}
	})
}
