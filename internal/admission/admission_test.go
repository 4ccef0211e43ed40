package admission

import (
	"context"
	"testing"
	"time"
)

func TestConcurrencyLimits(t *testing.T) {
	c := New(Config{MaxConcurrent: 3, MaxPerPrincipal: 2, QueueWait: 20 * time.Millisecond})
	ctx := context.Background()
	r1, v1 := c.Admit(ctx, "a")
	r2, v2 := c.Admit(ctx, "a")
	if v1 != Admitted || v2 != Admitted {
		t.Fatal("the first two of a principal were not admitted")
	}
	if _, v := c.Admit(ctx, "a"); v != PrincipalBusy {
		t.Fatalf("third of a: %v, want PrincipalBusy", v)
	}
	r3, v3 := c.Admit(ctx, "b")
	if v3 != Admitted {
		t.Fatal("another principal was not admitted")
	}
	if _, v := c.Admit(ctx, "c"); v != NodeBusy {
		t.Fatalf("fourth on the node: %v, want NodeBusy", v)
	}
	// A place freed during the wait is taken.
	go func() { time.Sleep(5 * time.Millisecond); r3() }()
	r4, v4 := c.Admit(ctx, "c")
	if v4 != Admitted {
		t.Fatalf("a request waiting for a freed place: %v", v4)
	}
	r1()
	r1() // releasing twice frees one place only
	r2()
	r4()
	if got := c.Refused(); got[PrincipalBusy] != 1 || got[NodeBusy] != 1 {
		t.Fatalf("refusals %v", got)
	}
}

func TestRatePerPrincipal(t *testing.T) {
	now := time.Unix(0, 0)
	c := New(Config{Rate: 10, Burst: 5, Now: func() time.Time { return now }})
	for i := range 5 {
		release, v := c.Admit(context.Background(), "a")
		if v != Admitted {
			t.Fatalf("burst request %d: %v", i, v)
		}
		release()
	}
	if _, v := c.Admit(context.Background(), "a"); v != PrincipalRate {
		t.Fatalf("over the burst: %v, want PrincipalRate", v)
	}
	if _, v := c.Admit(context.Background(), "b"); v != Admitted {
		t.Fatal("another principal was limited")
	}
	now = now.Add(100 * time.Millisecond) // one token refilled
	if release, v := c.Admit(context.Background(), "a"); v != Admitted {
		t.Fatalf("after the refill: %v", v)
	} else {
		release()
	}
}
