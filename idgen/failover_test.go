package idgen_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/internal/pgtest"
)

// Failover (issue 12): a primary and a pg_basebackup -R standby of it (pgtest.Pair),
// the primary killed with SIGKILL and the standby promoted. No key an allocator hands
// out may be handed out again by the new primary.
//
// PostgreSQL WAL-logs a sequence 32 nextvals ahead. A nextval covered by a record that
// another session wrote writes no WAL itself, so its transaction commits without
// waiting for the synchronous standby: when that record never reaches the standby, the
// new primary hands the same values out again. The tests make that moment happen every
// time rather than once in a while: they freeze the primary's WAL sender (SIGSTOP), let
// a session ("A") WAL-log the sequence, whose commit then waits for the standby, and
// only then let the allocators refill.
//
// Each test starts its own two servers and so does not run again through PgBouncer.

// failoverSize is the sequences' INCREMENT and the allocators' AllocationSize.
const failoverSize = 50

// ranInParent reports, and logs, that t is in the rerun through PgBouncer
// (TestThroughPgBouncer), where it has nothing to add: it ran in the parent process
// already, on servers of its own that PgBouncer is not in front of.
func ranInParent(t *testing.T) bool {
	if pgtest.ThroughPgBouncer() {
		t.Log("ran in the parent process: its servers are its own, with no PgBouncer in front")
		return true
	}
	return false
}

// failoverDB opens dsn, closed when t ends.
func failoverDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	noErr(t, err, "open "+dsn)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// waitUntil looks at cond again and again, every few milliseconds, until it holds; ctx
// bounds the wait, and what names it in the failure.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() (bool, error)) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting until %s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting until %s: %v", what, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// waitSyncRepWaiters waits until at least n backends of p's primary wait for the
// synchronous standby to confirm their commit.
func waitSyncRepWaiters(t *testing.T, ctx context.Context, p *pgtest.Pair, n int) {
	t.Helper()
	waitUntil(t, ctx, fmt.Sprintf("%d sessions wait for the standby", n), func() (bool, error) {
		got, err := p.SyncRepWaiters(ctx)
		return got >= n, err
	})
}

// walLoggingNextval is session A: in a transaction on db it calls nextval(seq) until a
// call WAL-logs the sequence (the transaction then has an xid: nextval takes one only to
// log), then commits in the background. It returns the values it got, the last being
// the one that logged, and the commit's result, which comes once the standby confirms
// the commit or the connection breaks. While that record is unconfirmed, the sequence's
// next 32 values are covered by it and nextval hands them out without writing WAL.
func walLoggingNextval(t *testing.T, ctx context.Context, db *sql.DB, seq string) ([]int64, <-chan error) {
	t.Helper()
	tx, err := db.BeginTx(ctx, nil)
	noErr(t, err, "session A: begin")
	var values []int64
	for logged := false; !logged; {
		if len(values) > 64 { // a sequence logs at least every 33 calls
			_ = tx.Rollback()
			t.Fatalf("session A: %d nextval calls on %s and none WAL-logged", len(values), seq)
		}
		var v int64
		noErr(t, tx.QueryRowContext(ctx, "SELECT nextval($1::regclass)", seq).Scan(&v), "session A: nextval")
		values = append(values, v)
		noErr(t, tx.QueryRowContext(ctx, "SELECT pg_current_xact_id_if_assigned() IS NOT NULL").Scan(&logged),
			"session A: has the transaction an xid")
	}
	done := make(chan error, 1)
	go func() { done <- tx.Commit() }()
	return values, done
}

// keysInBoth returns the keys of a that are also in b, in a's order.
func keysInBoth(a, b []int64) []int64 {
	in := make(map[int64]bool, len(b))
	for _, k := range b {
		in[k] = true
	}
	var out []int64
	for _, k := range a {
		if in[k] {
			out = append(out, k)
		}
	}
	return out
}

// TestFailoverRefillWaitsForStandby is the deterministic check of issue 12. With the
// synchronous standby's WAL sender frozen, session A's WAL-logging nextval waits in its
// commit for the standby; an allocator's refill (session B) drawing values covered by
// A's record must not hand them out before the standby has confirmed them, because
// after a crash and promotion the new primary hands them out again. Without a durable
// refill, B returns at once and its keys come back from the new primary.
func TestFailoverRefillWaitsForStandby(t *testing.T) {
	t.Parallel()
	if ranInParent(t) {
		return
	}
	ctx := testContext(t)
	p := pgtest.NewPair(t, pgtest.PairOptions{Synchronous: true})
	primary := failoverDB(t, p.Primary().DSN("postgres"))
	mustExec(t, primary, fmt.Sprintf("CREATE SEQUENCE items_id_seq INCREMENT %d", failoverSize))
	alloc := newAlloc(t, primary, "items_id_seq", failoverSize)

	noErr(t, p.FreezeWALSender(ctx), "freeze the WAL sender")
	aValues, aCommit := walLoggingNextval(t, ctx, primary, "items_id_seq")
	waitSyncRepWaiters(t, ctx, p, 1)

	// Session B: the allocator's refill. It either returns, or waits for the standby
	// too; either way, then the primary dies.
	type result struct {
		keys []int64
		err  error
	}
	bDone := make(chan result, 1)
	go func() {
		keys, err := alloc.NextN(ctx, 5)
		bDone <- result{keys, err}
	}()
	var b result
	returned := false
	waitUntil(t, ctx, "the refill returns or waits for the standby", func() (bool, error) {
		select {
		case b = <-bDone:
			returned = true
			return true, nil
		default:
		}
		n, err := p.SyncRepWaiters(ctx)
		return n >= 2, err
	})
	noErr(t, p.KillPrimary(ctx), "kill the primary")
	if !returned {
		select {
		case b = <-bDone:
		case <-ctx.Done():
			t.Fatalf("the refill waiting for the standby did not end when the primary died: %v", context.Cause(ctx))
		}
	}
	t.Logf("session A got %v; the refill, returned before the crash: %v, got keys %v, error %v",
		aValues, returned, b.keys, b.err)
	if err := <-aCommit; err == nil {
		t.Fatal("premise: session A's commit was acknowledged though its WAL never reached the synchronous standby")
	}

	noErr(t, p.Promote(ctx), "promote the standby")
	fresh := newAlloc(t, failoverDB(t, p.Standby().DSN("postgres")), "items_id_seq", failoverSize)
	again, err := fresh.NextN(ctx, 40*failoverSize) // past the 32 nextvals A's record covered
	noErr(t, err, "a new allocator on the new primary")
	if logged := aValues[len(aValues)-1]; !slices.Contains(again, logged) {
		t.Fatalf("premise: the new primary does not hand out %d, session A's WAL-logging value, again: "+
			"the WAL written after the freeze reached the standby", logged)
	}
	if dup := keysInBoth(b.keys, again); len(dup) > 0 {
		t.Fatalf("the refill handed out %v before the crash, and the new primary hands out %v again: "+
			"a refill returned values that the synchronous standby had not confirmed", b.keys, dup)
	}
}

// TestFailoverAsyncDropsHeldBlocks: with an asynchronous standby that has not received
// the WAL of an allocator's refill, the new primary hands out that block's values again.
// The keys the allocator still holds from it must not be handed out after the failover:
// the allocator's next refill, which reaches the new primary through the multi-host DSN,
// sees the new timeline and drops them. (Keys handed out before the crash are lost with
// the WAL, as PostgreSQL's own nextval values are; that is not checked here.)
func TestFailoverAsyncDropsHeldBlocks(t *testing.T) {
	t.Parallel()
	if ranInParent(t) {
		return
	}
	ctx := testContext(t)
	p := pgtest.NewPair(t, pgtest.PairOptions{})
	primary := failoverDB(t, p.Primary().DSN("postgres"))
	mustExec(t, primary, fmt.Sprintf("CREATE SEQUENCE items_id_seq INCREMENT %d", failoverSize))
	noErr(t, p.CatchUp(ctx), "the standby catches up")
	alloc := newAlloc(t, failoverDB(t, p.DSN("postgres")), "items_id_seq", failoverSize)

	noErr(t, p.FreezeWALSender(ctx), "freeze the WAL sender")
	first, err := alloc.Next(ctx)
	noErr(t, err, "the first key")
	// Held, never handed out: the rest of the first block and the blocks prefetch keeps
	// ahead of demand, reserved in the same round trip.
	st := alloc.Stats()
	dropped := seqRange(first+1, first+st.Blocks*failoverSize-st.Keys)
	noErr(t, p.KillPrimary(ctx), "kill the primary")
	noErr(t, p.Promote(ctx), "promote the standby")

	newPrimary := failoverDB(t, p.Standby().DSN("postgres"))
	var v int64
	noErr(t, newPrimary.QueryRowContext(ctx, "SELECT nextval('items_id_seq')").Scan(&v), "nextval on the new primary")
	if v < first || v > first+failoverSize-1 {
		t.Fatalf("premise: the new primary's nextval is %d, outside the block %d..%d the allocator reserved: "+
			"the refill's WAL reached the standby", v, first, first+failoverSize-1)
	}
	fresh := newAlloc(t, newPrimary, "items_id_seq", failoverSize)
	freshKeys, err := fresh.NextN(ctx, failoverSize)
	noErr(t, err, "a new allocator on the new primary")

	// More keys than the allocator holds, so that it refills: the refill is where it can
	// see the failover. Its first tries may meet a connection to the dead primary.
	var next []int64
	for attempt := 1; ; attempt++ {
		next, err = alloc.NextN(ctx, len(dropped)+1)
		if err == nil {
			break
		}
		t.Logf("the allocator's next keys, try %d: %v", attempt, err)
		if attempt == 10 || ctx.Err() != nil {
			t.Fatalf("the allocator hands out no keys after the failover: %v", err)
		}
	}
	requireUnique(t, append(slices.Clone(next), freshKeys...))
	if held := keysInBoth(next, dropped); len(held) > 0 {
		t.Fatalf("after the failover the allocator handed out %d keys (%d..%d) of the block it reserved on the "+
			"old primary, which the new primary hands out again (its nextval returned %d)", len(held), held[0], held[len(held)-1], v)
	}
}

// failoverWriter is one writer of TestFailoverWritersKeepUniqueKeys: its own pool and
// allocator, as on an application host of its own.
type failoverWriter struct {
	id    int
	db    *sql.DB
	alloc *idgen.Allocator

	batches atomic.Int64 // batches whose COMMIT was acknowledged

	mu      sync.Mutex // protects the following
	handed  []int64    // every key the allocator handed out
	acked   []int64    // the keys of the rows whose COMMIT was acknowledged
	errs    int
	lastErr error
}

// failoverGate parks writers before they take keys, while it is closed.
type failoverGate struct {
	mu     sync.Mutex // protects the following
	hold   chan struct{}
	parked int
}

func (g *failoverGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hold = make(chan struct{})
}

func (g *failoverGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.hold)
	g.hold = nil
}

func (g *failoverGate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.parked
}

// pass returns at once while the gate is open, else when it opens or ctx ends.
func (g *failoverGate) pass(ctx context.Context) {
	g.mu.Lock()
	hold := g.hold
	if hold != nil {
		g.parked++
	}
	g.mu.Unlock()
	if hold == nil {
		return
	}
	select {
	case <-hold:
	case <-ctx.Done():
	}
	g.mu.Lock()
	g.parked--
	g.mu.Unlock()
}

// run writes batches of one block each until stop is closed or ctx ends: it takes keys,
// remembers them, inserts them, and remembers them as acknowledged when the COMMIT
// returns. After an error it goes on with new keys.
func (w *failoverWriter) run(ctx context.Context, gate *failoverGate, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		gate.pass(ctx)
		keys, err := w.alloc.NextN(ctx, failoverSize)
		if err == nil {
			w.mu.Lock()
			w.handed = append(w.handed, keys...)
			w.mu.Unlock()
			_, err = w.db.ExecContext(ctx, "INSERT INTO items (id, writer) SELECT unnest($1::bigint[]), $2", keys, w.id)
		}
		if err != nil {
			w.mu.Lock()
			w.errs++
			w.lastErr = err
			w.mu.Unlock()
			// A pause before the next try, as a client retrying a lost server would make.
			// Nothing waits on it: the test waits for acknowledged batches.
			select {
			case <-time.After(5 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		w.mu.Lock()
		w.acked = append(w.acked, keys...)
		w.mu.Unlock()
		w.batches.Add(1)
	}
}

// TestFailoverWritersKeepUniqueKeys: writers keep writing through the multi-host DSN
// while the primary of a synchronous pair is killed and the standby promoted. Every key
// any writer was handed must be unique, and every row whose COMMIT was acknowledged
// must be on the new primary.
//
// The crash comes at the worst moment: the writers are parked, the WAL sender is frozen,
// session A WAL-logs the sequence, and then the writers are let go, so each refills with
// values that only A's unconfirmed record covers, and the primary is killed once every
// writer waits for the standby. A refill that does not wait for the standby hands those
// values out, and the new primary hands them out again after the promotion.
func TestFailoverWritersKeepUniqueKeys(t *testing.T) {
	t.Parallel()
	if ranInParent(t) {
		return
	}
	const (
		writers       = 4
		batchesBefore = 5  // acknowledged batches per writer before the crash
		batchesAfter  = 10 // and after the promotion: enough refills to reach past A's record
	)
	ctx := testContext(t)
	// No timed checkpoint during the test: the first nextval after a checkpoint WAL-logs
	// too, and session A must be the one whose record extends the sequence's coverage.
	p := pgtest.NewPair(t, pgtest.PairOptions{Synchronous: true,
		Options: pgtest.Options{Settings: map[string]string{"checkpoint_timeout": "1d"}}})
	primary := failoverDB(t, p.Primary().DSN("postgres"))
	mustExec(t, primary, "CREATE TABLE items (id bigint PRIMARY KEY, writer int NOT NULL)",
		fmt.Sprintf("CREATE SEQUENCE items_id_seq INCREMENT %d", failoverSize))

	ws := make([]*failoverWriter, writers)
	for i := range ws {
		db := failoverDB(t, p.DSN("postgres"))
		ws[i] = &failoverWriter{id: i, db: db, alloc: newAlloc(t, db, "items_id_seq", failoverSize)}
	}
	eachWriter := func(what string, done func(w *failoverWriter) bool) {
		t.Helper()
		waitUntil(t, ctx, what, func() (bool, error) {
			for _, w := range ws {
				if !done(w) {
					return false, nil
				}
			}
			return true, nil
		})
	}
	gate := &failoverGate{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, gate, stop)
		}()
	}
	stopped := false
	stopWriters := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	t.Cleanup(stopWriters) // also when the test fails half-way

	eachWriter("every writer has written before the crash", func(w *failoverWriter) bool {
		return w.batches.Load() >= batchesBefore
	})
	gate.close()
	waitUntil(t, ctx, "every writer is parked", func() (bool, error) { return gate.waiting() == writers, nil })
	noErr(t, p.FreezeWALSender(ctx), "freeze the WAL sender")
	aValues, aCommit := walLoggingNextval(t, ctx, primary, "items_id_seq")
	waitSyncRepWaiters(t, ctx, p, 1)
	gate.open()
	waitSyncRepWaiters(t, ctx, p, 1+writers)

	noErr(t, p.KillPrimary(ctx), "kill the primary")
	atCrash := make([]int64, writers)
	for i, w := range ws {
		atCrash[i] = w.batches.Load()
	}
	// Before the promotion, with all it received replayed, the standby's sequence is
	// where the new primary will go on from: before A's value, whose record was lost.
	standby := failoverDB(t, p.Standby().DSN("postgres"))
	waitUntil(t, ctx, "the standby has replayed all it received", func() (bool, error) {
		var done bool
		err := standby.QueryRowContext(ctx, "SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()").Scan(&done)
		return done, err
	})
	var resumeAfter int64
	noErr(t, standby.QueryRowContext(ctx, "SELECT last_value FROM items_id_seq").Scan(&resumeAfter), "the standby's sequence")
	if logged := aValues[len(aValues)-1]; resumeAfter >= logged {
		t.Fatalf("premise: the standby's sequence is at %d, past %d, session A's WAL-logging value: "+
			"the WAL written after the freeze reached the standby", resumeAfter, logged)
	}
	noErr(t, p.Promote(ctx), "promote the standby")
	if err := <-aCommit; err == nil {
		t.Fatal("premise: session A's commit was acknowledged though its WAL never reached the synchronous standby")
	}
	eachWriter("every writer has written after the promotion", func(w *failoverWriter) bool {
		return w.batches.Load() >= atCrash[w.id]+batchesAfter
	})
	stopWriters()

	var handed, acked []int64
	owner := map[int64][]int{} // key: the writers it was handed to
	for _, w := range ws {
		t.Logf("writer %d: %d keys handed out, %d rows acknowledged, %d errors, the last: %v",
			w.id, len(w.handed), len(w.acked), w.errs, w.lastErr)
		handed = append(handed, w.handed...)
		acked = append(acked, w.acked...)
		for _, k := range w.handed {
			owner[k] = append(owner[k], w.id)
		}
	}
	var twice []int64
	for _, k := range handed {
		if len(owner[k]) > 1 {
			twice = append(twice, k)
		}
	}
	if len(twice) > 0 {
		slices.Sort(twice)
		twice = slices.Compact(twice)
		t.Errorf("%d keys were handed out twice, such as %d to writers %v: refills handed out values the "+
			"synchronous standby had not confirmed, and the new primary handed them out again",
			len(twice), twice[0], owner[twice[0]])
	}

	rows, err := standby.QueryContext(ctx, "SELECT id FROM items")
	noErr(t, err, "read the rows on the new primary")
	var onNew []int64
	for rows.Next() {
		var id int64
		noErr(t, rows.Scan(&id), "scan")
		onNew = append(onNew, id)
	}
	noErr(t, rows.Err(), "read the rows on the new primary")
	if found := keysInBoth(acked, onNew); len(found) != len(acked) {
		t.Errorf("%d of %d acknowledged rows are not on the new primary", len(acked)-len(found), len(acked))
	}
}
