package sqlite

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	storetest.Run(t, func(t *testing.T, name string) store.Store {
		mu.Lock()
		defer mu.Unlock()
		s, err := Open(context.Background(), filepath.Join(dir, name+".db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestReopenKeepsState(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	k := store.BudgetKey{Agreement: "a"}
	if _, err := store.ChargeBudget(ctx, s, store.Charge{Key: k, Rho: 0.5, LimitRho: 1}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st, _ := s.Budget(ctx, k); st.Rho != 0.5 {
		t.Fatalf("after reopen rho = %v, want 0.5", st.Rho)
	}
}
