package idgen

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/seqrepo/seqrepo/internal/pgtest"
)

// openTestDB returns a handle on a fresh database with a sequence s of INCREMENT 50.
func openTestDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.ExecContext(t.Context(), `CREATE SEQUENCE s INCREMENT 50`); err != nil {
		t.Fatal(err)
	}
	return db
}

// idle waits until no refill is in flight on a's default Querier, following each
// refill to the next one it starts, and then until none of a's refill goroutines is
// left (one returns right after it closes done).
func idle(t *testing.T, a *Allocator) {
	t.Helper()
	for {
		a.st.mu.Lock()
		r := a.st.refill
		a.st.mu.Unlock()
		if r == nil {
			break
		}
		<-r.done
	}
	for i := 0; refillGoroutines(a) > 0; i++ {
		if i == 100000 {
			t.Fatal("a refill goroutine is still running after its refill finished")
		}
		runtime.Gosched()
	}
}

// refillGoroutines counts the goroutines running a refill of a (runRefill with a as
// its receiver). runtime.NumGoroutine counts the whole process: the driver closes
// connections on goroutines of its own, and other tests run.
func refillGoroutines(a *Allocator) int {
	buf := make([]byte, 1<<22)
	stacks := string(buf[:runtime.Stack(buf, true)])
	return strings.Count(stacks, fmt.Sprintf("idgen.(*Allocator).runRefill(%p", a))
}

// failingQuerier runs every statement on db, except that refills fail with errInjected
// while fail is set.
type failingQuerier struct {
	db   *sql.DB
	fail atomic.Bool
}

var errInjected = errors.New("injected refill failure")

func (f *failingQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if query == fetchSQL && f.fail.Load() {
		return nil, errInjected
	}
	return f.db.QueryContext(ctx, query, args...)
}

// TestPrefetchSteadyState: after its first call, a caller that takes keys no faster
// than a prefetch round trip (here: it waits for the prefetch in flight, as a request
// with a round trip of its own would) never waits for a round trip again: every refill
// is a prefetch. Without prefetch, one call in five would wait.
func TestPrefetchSteadyState(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	a, err := New(ctx, db, Config{Sequence: "s", AllocationSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	all, err := a.NextN(ctx, 10) // warm-up: the first call waits for the first refill
	if err != nil {
		t.Fatal(err)
	}
	idle(t, a)
	before := a.Stats()
	for range 500 {
		keys, err := a.NextN(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, keys...)
		idle(t, a)
	}
	after := a.Stats()
	if after.ForegroundRoundTrips != before.ForegroundRoundTrips || after.Waits != before.Waits {
		t.Fatalf("steady state: %d foreground round trips and %d waits in 500 calls, want none (before %+v, after %+v)",
			after.ForegroundRoundTrips-before.ForegroundRoundTrips, after.Waits-before.Waits, before, after)
	}
	if after.BackgroundRoundTrips == before.BackgroundRoundTrips {
		t.Fatalf("5,000 keys handed out without a prefetch: %+v", after)
	}
	slices.Sort(all)
	if len(slices.Compact(all)) != 5010 {
		t.Fatal("a key was handed out twice")
	}
}

// TestPrefetchFailure: a prefetch that fails fails no call by itself, is counted, and
// pauses prefetching; the next caller short of keys gets a refill of its own, and its
// error when that fails too. No key in memory is lost, and once refills work again,
// so does prefetch.
func TestPrefetchFailure(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	q := &failingQuerier{db: db}
	a, err := New(ctx, q, Config{Sequence: "s", AllocationSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := a.NextN(ctx, 10) // 1..10; the refill keeps 11..150 ahead (headroom 2*low)
	if err != nil {
		t.Fatal(err)
	}
	idle(t, a)
	q.fail.Store(true)
	more, err := a.NextN(ctx, 100) // 11..110: 40 left, below the watermark: a prefetch, which fails
	if err != nil {
		t.Fatal(err)
	}
	keys = append(keys, more...)
	idle(t, a)
	st := a.Stats()
	if st.PrefetchErrors != 1 || st.BackgroundRoundTrips != 1 {
		t.Fatalf("after a failed prefetch: %+v, want 1 background round trip and 1 prefetch error", st)
	}
	more, err = a.NextN(ctx, 30) // from memory: the failed prefetch failed nobody
	if err != nil {
		t.Fatal(err)
	}
	keys = append(keys, more...)
	idle(t, a)
	if got := a.Stats(); got.BackgroundRoundTrips != 1 {
		t.Fatalf("a prefetch ran while prefetching was paused: %+v", got)
	}
	_, err = a.NextN(ctx, 20) // 10 in memory: a foreground refill, which fails too
	if !errors.Is(err, errInjected) {
		t.Fatalf("NextN short of keys while refills fail: %v, want the refill's error", err)
	}
	q.fail.Store(false)
	more, err = a.NextN(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	if more[0] != 141 {
		t.Fatalf("NextN after the failures = %v…, want the 10 keys still in memory (141..150) first", more[:10])
	}
	keys = append(keys, more...)
	idle(t, a)
	for range 20 { // prefetching works again
		more, err = a.NextN(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, more...)
		idle(t, a)
	}
	if got := a.Stats(); got.BackgroundRoundTrips == 1 {
		t.Fatalf("no prefetch after refills work again: %+v", got)
	}
	slices.Sort(keys)
	if len(slices.Compact(keys)) != 10+100+30+20+200 {
		t.Fatal("a key was handed out twice")
	}
}

// TestPrefetchWaitersRetry: callers waiting for a prefetch that fails do not get its
// error: one refill of their own serves them.
func TestPrefetchWaitersRetry(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	q := &failingQuerier{db: db}
	a, err := New(ctx, q, Config{Sequence: "s", AllocationSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.NextN(ctx, 10); err != nil {
		t.Fatal(err)
	}
	idle(t, a)
	// Queue a waiter behind a prefetch that will fail, deterministically: start the
	// prefetch under the lock, with the waiter queued, before it can run.
	a.st.mu.Lock()
	a.st.blocks = a.st.blocks[:0] // as if the pool had just run dry
	q.fail.Store(true)
	a.prefetchLocked()
	w := &waiter{need: 5, keys: make([]int64, 0, 5), ready: make(chan struct{})}
	a.st.waiters = append(a.st.waiters, w)
	a.st.mu.Unlock()
	<-w.ready
	// The prefetch failed and started a refill for the waiter, which failed as well.
	if !errors.Is(w.err, errInjected) {
		t.Fatalf("waiter behind failing refills: %v", w.err)
	}
	if st := a.Stats(); st.BackgroundRoundTrips != 1 || st.ForegroundRoundTrips != 2 || st.PrefetchErrors != 1 {
		t.Fatalf("%+v, want the failed prefetch and one foreground retry after the first refill", st)
	}
	q.fail.Store(false)
	keys, err := a.NextN(ctx, 5)
	if err != nil || len(keys) != 5 {
		t.Fatalf("NextN once refills work: %v, %v", keys, err)
	}
	idle(t, a)
}

// TestPrefetchNoGoroutineLeft: every refill is a goroutine that ends with it; an
// Allocator nobody uses holds none, however many prefetches it ran.
func TestPrefetchNoGoroutineLeft(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	a, err := New(ctx, db, Config{Sequence: "s", AllocationSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.NextN(ctx, 10); err != nil {
		t.Fatal(err)
	}
	idle(t, a)
	base := runtime.NumGoroutine()
	for range 300 {
		if _, err := a.NextN(ctx, 7); err != nil {
			t.Fatal(err)
		}
	}
	idle(t, a)
	if st := a.Stats(); st.BackgroundRoundTrips == 0 {
		t.Fatalf("no prefetch ran: %+v", st)
	}
	if n := refillGoroutines(a); n != 0 {
		t.Fatalf("%d refill goroutines left after the last refill finished", n)
	}
	t.Logf("%d goroutines in the process before the prefetches, %d after", base, runtime.NumGoroutine())
}

// watchQuerier runs every statement on db and counts them; a statement that arrives
// while no call is in progress (inCall unset) is counted in stray.
type watchQuerier struct {
	db             *sql.DB
	inCall         atomic.Bool
	queries, stray atomic.Int64
}

func (w *watchQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	w.queries.Add(1)
	if !w.inCall.Load() {
		w.stray.Add(1)
	}
	return w.db.QueryContext(ctx, query, args...)
}

// TestPrefetchNotThroughWithTx: an Allocator from WithTx refills on its Querier only
// within the caller's own calls, never in the background; the pool's prefetches run on
// the Querier New was given. And New on a *sql.Tx or *sql.Conn does not prefetch.
func TestPrefetchNotThroughWithTx(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	pool := &watchQuerier{db: db}
	pool.inCall.Store(true)
	a, err := New(ctx, pool, Config{Sequence: "s", AllocationSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	pool.inCall.Store(false) // from here on, every query on the pool is a prefetch
	pool.queries.Store(0)    // New's are not refills
	via := &watchQuerier{db: db}
	u := a.WithTx(via)
	var keys []int64
	for range 300 {
		via.inCall.Store(true)
		more, err := u.NextN(ctx, 9)
		via.inCall.Store(false)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, more...)
		idle(t, a)
	}
	if n := via.stray.Load(); n != 0 {
		t.Fatalf("%d queries on WithTx's Querier outside the caller's calls", n)
	}
	st := a.Stats()
	if via.queries.Load() != st.ForegroundRoundTrips || pool.queries.Load() != st.BackgroundRoundTrips || st.BackgroundRoundTrips == 0 {
		t.Fatalf("%d queries through WithTx, %d on the pool; Stats %+v: want the foreground ones through WithTx, the prefetches on the pool", via.queries.Load(), pool.queries.Load(), st)
	}
	slices.Sort(keys)
	if len(slices.Compact(keys)) != 2700 {
		t.Fatal("a key was handed out twice")
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	onTx, err := New(ctx, tx, Config{Sequence: "s", AllocationSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		if _, err := onTx.NextN(ctx, 9); err != nil {
			t.Fatal(err)
		}
	}
	if st := onTx.Stats(); st.BackgroundRoundTrips != 0 || onTx.st.prefetch {
		t.Fatalf("an Allocator made on a *sql.Tx prefetched: %+v", st)
	}
}

// TestTimelineChangeKeepsNewBlocks: after a failover, the first refill on the new
// timeline is handed out, not thrown away with the keys of the old one (which cost a
// block per failover).
func TestTimelineChangeKeepsNewBlocks(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	for _, using := range []bool{false, true} {
		if _, err := db.ExecContext(ctx, `ALTER SEQUENCE s RESTART`); err != nil {
			t.Fatal(err)
		}
		q := &fakeTimeline{db: db}
		q.tli.Store(1)
		a, err := New(ctx, q, Config{Sequence: "s", AllocationSize: 50, NoPrefetch: true})
		if err != nil {
			t.Fatal(err)
		}
		via := a
		if using {
			via = a.WithTx(q)
		}
		if _, err := via.NextN(ctx, 10); err != nil { // 1..10; 11..50 stay in the pool
			t.Fatal(err)
		}
		q.tli.Store(2)
		trips := a.Stats().RoundTrips
		keys, err := via.NextN(ctx, 60) // 11..50 were reserved on timeline 1: dropped
		if err != nil {
			t.Fatal(err)
		}
		if keys[0] != 51 || keys[59] != 110 {
			t.Fatalf("WithTx %v: NextN(60) after the failover = %d..%d, want 51..110: the first refill on timeline 2", using, keys[0], keys[59])
		}
		// The first refill was sized for the 20 keys missing from memory, before it
		// saw the failover: a second one tops up for the 40 dropped.
		if got := a.Stats().RoundTrips - trips; got != 2 {
			t.Fatalf("WithTx %v: %d round trips after the failover, want 2", using, got)
		}
	}
}
