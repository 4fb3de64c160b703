package idgen_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"

	"github.com/seqrepo/seqrepo/idgen"
)

// exactAlloc is newAlloc without prefetch (Config.NoPrefetch), for tests that count
// round trips and blocks or expect particular keys in memory: a prefetch reserves
// blocks in the background, when its pool runs low.
func exactAlloc(t testing.TB, q idgen.Querier, seq string, size int, opt ...idgen.Optimizer) *idgen.Allocator {
	t.Helper()
	cfg := idgen.Config{Sequence: seq, AllocationSize: size, NoPrefetch: true}
	if len(opt) > 0 {
		cfg.Optimizer = opt[0]
	}
	a, err := idgen.New(context.Background(), q, cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return a
}

// gatedQuerier runs every statement on db, except that refills (the statements that
// call nextval) wait until open is closed.
type gatedQuerier struct {
	db   *sql.DB
	open chan struct{}
}

func (g *gatedQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if strings.Contains(query, "nextval") {
		<-g.open
	}
	return g.db.QueryContext(ctx, query, args...)
}

// TestCallersShareRefillAtExhaustion: eight callers run short of keys at the same
// moment, while the first one's refill is in flight. That refill was sized for its
// starter alone; when it ends, the seven others do not make a round trip each in a
// row: one more refill, sized for all of them, serves them all.
func TestCallersShareRefillAtExhaustion(t *testing.T) {
	db, _ := openDB(t)
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
	g := &gatedQuerier{db: db, open: make(chan struct{})}
	a := exactAlloc(t, g, "s", 50)
	ctx := testContext(t)

	const callers = 8
	var (
		mu  sync.Mutex
		all []int64
		wg  sync.WaitGroup
	)
	call := func() {
		defer wg.Done()
		keys, err := a.NextN(ctx, 40)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
	}
	wg.Add(callers)
	go call()
	parked(t, ctx, 1) // the first caller's refill waits at the gate
	for range callers - 1 {
		go call()
	}
	parked(t, ctx, callers) // every caller waits for a refill
	close(g.open)
	wg.Wait()

	if len(all) != callers*40 {
		t.Fatalf("%d keys handed out, want %d", len(all), callers*40)
	}
	requireUnique(t, all)
	if got := a.Stats().RoundTrips; got != 2 {
		t.Fatalf("%d round trips for %d callers short of keys at once, want 2: the first caller's, and one for all the others", got, callers)
	}
}
