package idgen_test

import (
	"context"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/internal/pgtest"
)

// TestKeySequences checks the exact keys fresh sequences hand out, for both
// optimizers, key by key (Next) and in one batch (NextN).
func TestKeySequences(t *testing.T) {
	db, _ := openDB(t)
	ctx := t.Context()
	fresh := func(t *testing.T, name, opts string) string {
		mustExec(t, db, `CREATE SEQUENCE `+name+` `+opts)
		return name
	}
	nexts := func(t *testing.T, a *idgen.Allocator, n int) []int64 {
		keys := make([]int64, 0, n)
		for range n {
			k, err := a.Next(ctx)
			noErr(t, err, "Next")
			keys = append(keys, k)
		}
		return keys
	}

	t.Run("pooled-lo Next", func(t *testing.T) {
		a := exactAlloc(t, db, fresh(t, "lo_next", "START 1 INCREMENT 50"), 50)
		equalKeys(t, nexts(t, a, 50), seqRange(1, 50))
		equalKeys(t, nexts(t, a, 50), seqRange(51, 100))
		wantStats(t, a, idgen.Stats{RoundTrips: 2, Blocks: 2, Keys: 100, ForegroundRoundTrips: 2, Waits: 2})
	})
	t.Run("pooled-lo NextN", func(t *testing.T) {
		a := exactAlloc(t, db, fresh(t, "lo_nextn", "START 1 INCREMENT 50"), 50)
		keys, err := a.NextN(ctx, 100)
		noErr(t, err, "NextN")
		equalKeys(t, keys, seqRange(1, 100))
		wantStats(t, a, idgen.Stats{RoundTrips: 1, Blocks: 2, Keys: 100, ForegroundRoundTrips: 1, Waits: 1})
	})
	t.Run("pooled Next", func(t *testing.T) {
		a := exactAlloc(t, db, fresh(t, "hi_next", "START 1 INCREMENT 50"), 50, idgen.Pooled)
		equalKeys(t, nexts(t, a, 1), []int64{1})
		equalKeys(t, nexts(t, a, 50), seqRange(2, 51))
		equalKeys(t, nexts(t, a, 50), seqRange(52, 101))
		wantStats(t, a, idgen.Stats{RoundTrips: 3, Blocks: 3, Keys: 101, ForegroundRoundTrips: 3, Waits: 3})
	})
	t.Run("pooled NextN", func(t *testing.T) {
		a := exactAlloc(t, db, fresh(t, "hi_nextn", "START 1 INCREMENT 50"), 50, idgen.Pooled)
		keys, err := a.NextN(ctx, 101)
		noErr(t, err, "NextN")
		equalKeys(t, keys, seqRange(1, 101))
		// 3 blocks in one round trip: {1}, 2..51, 52..101.
		wantStats(t, a, idgen.Stats{RoundTrips: 1, Blocks: 3, Keys: 101, ForegroundRoundTrips: 1, Waits: 1})
		// The first value's block of one key can leave a round trip short: then a
		// second one tops it up.
		b := exactAlloc(t, db, fresh(t, "hi_nextn2", "START 1 INCREMENT 50"), 50, idgen.Pooled)
		keys, err = b.NextN(ctx, 100) // 2 blocks hold 51 keys: one more block is needed
		noErr(t, err, "NextN")
		equalKeys(t, keys, seqRange(1, 100))
		wantStats(t, b, idgen.Stats{RoundTrips: 2, Blocks: 3, Keys: 100, ForegroundRoundTrips: 2, Waits: 1})
	})
	t.Run("pooled other start", func(t *testing.T) {
		a := exactAlloc(t, db, fresh(t, "hi_start", "START 1000 INCREMENT 10"), 10, idgen.Pooled)
		equalKeys(t, nexts(t, a, 21), seqRange(1000, 1020))
	})
	t.Run("pooled after DEFAULT nextval took the first value", func(t *testing.T) {
		seq := fresh(t, "hi_used", "START 1 INCREMENT 50")
		mustExec(t, db, `SELECT nextval('hi_used')`) // a writer's row got key 1
		a := exactAlloc(t, db, seq, 50, idgen.Pooled)
		equalKeys(t, nexts(t, a, 50), seqRange(2, 51))
	})
	t.Run("pooled-lo size 1", func(t *testing.T) {
		a := exactAlloc(t, db, fresh(t, "lo_one", "INCREMENT 1"), 1)
		keys, err := a.NextN(ctx, 5)
		noErr(t, err, "NextN")
		equalKeys(t, keys, seqRange(1, 5))
		wantStats(t, a, idgen.Stats{RoundTrips: 1, Blocks: 5, Keys: 5, ForegroundRoundTrips: 1, Waits: 1})
	})
	t.Run("pooled-lo block ending at MaxInt64", func(t *testing.T) {
		a := exactAlloc(t, db, fresh(t, "lo_top", "INCREMENT 50 START 9223372036854775758"), 50)
		keys, err := a.NextN(ctx, 50)
		noErr(t, err, "NextN of the last block")
		equalKeys(t, keys, seqRange(math.MaxInt64-49, math.MaxInt64))
		_, err = a.Next(ctx)
		if !errors.Is(err, idgen.ErrExhausted) {
			t.Fatalf("Next past MaxInt64: %v, want ErrExhausted", err)
		}
	})
	t.Run("pooled-lo block ending at MaxInt64, key by key", func(t *testing.T) {
		a := exactAlloc(t, db, fresh(t, "lo_top2", "INCREMENT 50 START 9223372036854775758"), 50)
		equalKeys(t, nexts(t, a, 50), seqRange(math.MaxInt64-49, math.MaxInt64))
	})
}

// TestRoundTrips counts round trips: NextN reserves every block it needs in one,
// NextN(0) needs none, and Next works from memory until the block is used up.
func TestRoundTrips(t *testing.T) {
	db, _ := openDB(t)
	ctx := t.Context()
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`, `CREATE SEQUENCE p INCREMENT 50`)

	for _, opt := range []idgen.Optimizer{idgen.PooledLo, idgen.Pooled} {
		t.Run(opt.String(), func(t *testing.T) {
			seq := map[idgen.Optimizer]string{idgen.PooledLo: "s", idgen.Pooled: "p"}[opt]
			a := exactAlloc(t, db, seq, 50, opt)
			// Pooled's first value is a block of one key: take it out of the way.
			if opt == idgen.Pooled {
				_, err := a.Next(ctx)
				noErr(t, err, "Next")
			}
			rt := a.Stats().RoundTrips

			keys, err := a.NextN(ctx, 0)
			if err != nil || keys != nil {
				t.Fatalf("NextN(0) = %v, %v; want nil, nil", keys, err)
			}
			if got := a.Stats().RoundTrips; got != rt {
				t.Fatalf("NextN(0) made %d round trips", got-rt)
			}

			for _, n := range []int{10000, 10001, 1, 49, 50, 51, 12345} {
				before := a.Stats().RoundTrips
				keys, err := a.NextN(ctx, n)
				noErr(t, err, "NextN")
				if len(keys) != n {
					t.Fatalf("NextN(%d) returned %d keys", n, len(keys))
				}
				requireUnique(t, keys)
				if got := a.Stats().RoundTrips - before; got > 1 {
					t.Fatalf("NextN(%d) made %d round trips, want at most 1", n, got)
				}
			}

			// Use up what is left in memory, then 50 Nexts are exactly one round trip.
			inMemory := func() int64 {
				st := a.Stats()
				reserved := 50 * st.Blocks
				if opt == idgen.Pooled {
					reserved = 1 + 50*(st.Blocks-1)
				}
				return reserved - st.Keys
			}
			for inMemory() > 0 {
				_, err := a.Next(ctx)
				noErr(t, err, "Next")
			}
			before := a.Stats().RoundTrips
			for i := range 50 {
				_, err := a.Next(ctx)
				noErr(t, err, "Next")
				if got := a.Stats().RoundTrips - before; got != 1 {
					t.Fatalf("after %d Nexts from an empty pool: %d round trips, want 1", i+1, got)
				}
			}
			_, err = a.Next(ctx)
			noErr(t, err, "Next")
			if got := a.Stats().RoundTrips - before; got != 2 {
				t.Fatalf("the 51st Next made %d round trips in all, want 2", got)
			}
		})
	}

	t.Run("negative n", func(t *testing.T) {
		a := exactAlloc(t, db, "s", 50)
		before := a.Stats()
		if _, err := a.NextN(ctx, -1); err == nil {
			t.Fatal("NextN(-1) succeeded")
		}
		wantStats(t, a, before)
	})
}

// TestStats checks every counter after a known sequence of calls.
func TestStats(t *testing.T) {
	db, _ := openDB(t)
	ctx := t.Context()
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
	a := exactAlloc(t, db, "s", 50)
	wantStats(t, a, idgen.Stats{}) // New's check is not a refill

	k, err := a.Next(ctx)
	noErr(t, err, "Next")
	if k != 1 {
		t.Fatalf("first key %d", k)
	}
	wantStats(t, a, idgen.Stats{RoundTrips: 1, Blocks: 1, Keys: 1, ForegroundRoundTrips: 1, Waits: 1})
	for range 49 {
		_, err := a.Next(ctx)
		noErr(t, err, "Next")
	}
	wantStats(t, a, idgen.Stats{RoundTrips: 1, Blocks: 1, Keys: 50, ForegroundRoundTrips: 1, Waits: 1})
	_, err = a.Next(ctx) // 51: a new block
	noErr(t, err, "Next")
	wantStats(t, a, idgen.Stats{RoundTrips: 2, Blocks: 2, Keys: 51, ForegroundRoundTrips: 2, Waits: 2})
	_, err = a.NextN(ctx, 0)
	noErr(t, err, "NextN(0)")
	wantStats(t, a, idgen.Stats{RoundTrips: 2, Blocks: 2, Keys: 51, ForegroundRoundTrips: 2, Waits: 2})

	// 49 keys in memory (52..100) and 9951 more: 200 blocks in one round trip.
	keys, err := a.NextN(ctx, 10000)
	noErr(t, err, "NextN")
	equalKeys(t, keys, seqRange(52, 10051))
	wantStats(t, a, idgen.Stats{RoundTrips: 3, Blocks: 202, Keys: 10051, ForegroundRoundTrips: 3, Waits: 3})

	// WithTx shares the pool and the counters.
	u := a.WithTx(db)
	k, err = u.Next(ctx)
	noErr(t, err, "WithTx.Next")
	if k != 10052 {
		t.Fatalf("WithTx.Next = %d, want 10052 from the shared pool", k)
	}
	wantStats(t, a, idgen.Stats{RoundTrips: 3, Blocks: 202, Keys: 10052, ForegroundRoundTrips: 3, Waits: 3})
	keys, err = u.NextN(ctx, 100) // 48 in memory, then 2 blocks
	noErr(t, err, "WithTx.NextN")
	equalKeys(t, keys, seqRange(10053, 10152))
	wantStats(t, a, idgen.Stats{RoundTrips: 4, Blocks: 204, Keys: 10152, ForegroundRoundTrips: 4, Waits: 4})
	wantStats(t, u, a.Stats())

	// A failed fetch is a round trip that reserves nothing and hands out nothing.
	mustExec(t, db, `ALTER SEQUENCE s INCREMENT BY 10`)
	_, err = a.NextN(ctx, 49) // 48 in memory are not enough
	if !errors.Is(err, idgen.ErrIncrementMismatch) {
		t.Fatalf("NextN after ALTER: %v", err)
	}
	wantStats(t, a, idgen.Stats{RoundTrips: 5, Blocks: 204, Keys: 10152, ForegroundRoundTrips: 5, Waits: 5})
}

// TestExhaustedMidBatch asks for more blocks than fit below MAXVALUE: the call fails
// with ErrExhausted and hands out nothing, but the blocks that fit stay reserved, so
// keys already in memory and the last keys below MAXVALUE are still handed out.
func TestExhaustedMidBatch(t *testing.T) {
	db, _ := openDB(t)
	ctx := t.Context()
	for _, tt := range []struct {
		name, opts string
		why        string
		n          int
		last       int64 // the last key below MAXVALUE
	}{
		// 49 keys in memory and 40 blocks; only 51..1000 fit below MAXVALUE 1000.
		{"nextval would pass MAXVALUE", "INCREMENT 50 MAXVALUE 1000", "nextval", 2000, 1000},
		// 49 keys in memory and 20 blocks; nextval issues 51 … 1001, and the block of
		// 1001 ends at MAXVALUE 1020, 30 keys short.
		{"block passes MAXVALUE", "INCREMENT 50 MAXVALUE 1020", "block", 1049, 1020},
	} {
		t.Run(tt.name, func(t *testing.T) {
			seq := "ex_" + tt.why
			mustExec(t, db, `CREATE SEQUENCE `+seq+` `+tt.opts)
			a := newAlloc(t, db, seq, 50)
			k, err := a.Next(ctx)
			noErr(t, err, "Next")
			if k != 1 {
				t.Fatalf("first key %d", k)
			}
			before := a.Stats()

			keys, err := a.NextN(ctx, tt.n)
			if !errors.Is(err, idgen.ErrExhausted) || keys != nil {
				t.Fatalf("NextN past MAXVALUE = %d keys, %v; want none and ErrExhausted", len(keys), err)
			}
			if !strings.Contains(err.Error(), seq) {
				t.Errorf("error %q does not name the sequence", err)
			}
			if got := a.Stats(); got.Keys != before.Keys {
				t.Fatalf("a failed NextN changed Stats from %+v to %+v", before, got)
			}
			// Neither the keys in memory nor those that fit were lost with the failed call.
			keys, err = a.NextN(ctx, int(tt.last-1))
			noErr(t, err, "NextN of the keys that fit")
			equalKeys(t, keys, seqRange(2, tt.last))
			if _, err := a.Next(ctx); !errors.Is(err, idgen.ErrExhausted) {
				t.Fatalf("Next after: %v, want ErrExhausted", err)
			}
		})
	}

	// The example of issue 12: MAXVALUE 1000, keys 1..800 handed out. NextN(250) fails,
	// and NextN(200) then gets 801..1000, which it would have got without the failure.
	t.Run("what fits is kept", func(t *testing.T) {
		mustExec(t, db, `CREATE SEQUENCE max1000 INCREMENT 50 MAXVALUE 1000`)
		a := newAlloc(t, db, "max1000", 50)
		keys, err := a.NextN(ctx, 800)
		noErr(t, err, "NextN(800)")
		equalKeys(t, keys, seqRange(1, 800))
		if keys, err := a.NextN(ctx, 250); !errors.Is(err, idgen.ErrExhausted) || keys != nil {
			t.Fatalf("NextN(250) = %d keys, %v; want none and ErrExhausted", len(keys), err)
		}
		keys, err = a.NextN(ctx, 200)
		noErr(t, err, "NextN(200)")
		equalKeys(t, keys, seqRange(801, 1000))
	})

	t.Run("last block fits exactly", func(t *testing.T) {
		mustExec(t, db, `CREATE SEQUENCE exact INCREMENT 50 MAXVALUE 100`)
		a := newAlloc(t, db, "exact", 50)
		keys, err := a.NextN(ctx, 100)
		noErr(t, err, "NextN of the whole range")
		equalKeys(t, keys, seqRange(1, 100))
		if _, err := a.NextN(ctx, 1); !errors.Is(err, idgen.ErrExhausted) {
			t.Fatalf("NextN past MAXVALUE: %v, want ErrExhausted", err)
		}
		if _, err := idgen.New(ctx, db, idgen.Config{Sequence: "exact", AllocationSize: 50}); !errors.Is(err, idgen.ErrExhausted) {
			t.Fatalf("New on the used-up sequence: %v, want ErrExhausted", err)
		}
	})
}

// testContext returns a context that ends a little before the test's deadline, or
// after a generous timeout when there is none, so a deadlock fails the test with a
// message instead of hanging it. It bounds the test; it asserts nothing about speed.
func testContext(t *testing.T) context.Context { return pgtest.Context(t, 5*time.Minute) }

// TestWithTxOnOneConnection: with a one-connection pool whose connection the
// caller's transaction holds, allocating through the transaction works, while
// allocating through the pool would wait for the connection forever.
func TestWithTxOnOneConnection(t *testing.T) {
	db, _ := openDB(t)
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`, `CREATE TABLE t (id bigint PRIMARY KEY)`)
	db.SetMaxOpenConns(1)
	a := exactAlloc(t, db, "s", 50)
	ctx := testContext(t)

	tx, err := db.BeginTx(ctx, nil)
	noErr(t, err, "begin")
	defer func() { _ = tx.Rollback() }()

	keys, err := a.WithTx(tx).NextN(ctx, 120)
	if err != nil {
		t.Fatalf("WithTx(tx).NextN with the only connection held by tx: %v", err)
	}
	equalKeys(t, keys, seqRange(1, 120))
	_, err = tx.ExecContext(ctx, `INSERT INTO t SELECT unnest($1::bigint[])`, keys)
	noErr(t, err, "insert in tx")

	// The pool-backed allocator needs the connection tx holds: it blocks until its
	// context ends. 30 keys are in memory, so ask for more.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = a.NextN(short, 31)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pool-backed NextN while tx holds the only connection: %v, want context.DeadlineExceeded", err)
	}
	// The keys in memory were not lost, and the refill still waiting for the
	// connection does not hold up allocation through tx.
	keys, err = a.WithTx(tx).NextN(ctx, 100)
	noErr(t, err, "WithTx(tx).NextN beside a waiting refill")
	if keys[0] != 121 || keys[29] != 150 {
		t.Fatalf("WithTx(tx).NextN = %d.., want the 30 keys in memory first (121..150)", keys[0])
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO t SELECT unnest($1::bigint[])`, keys)
	noErr(t, err, "insert in tx")
	noErr(t, tx.Commit(), "commit")

	// With the connection free, the waiting refill completes and the pool works again.
	keys, err = a.NextN(ctx, 200)
	noErr(t, err, "NextN after commit")
	_, err = db.ExecContext(ctx, `INSERT INTO t SELECT unnest($1::bigint[])`, keys)
	noErr(t, err, "insert after commit: no key collides with the ones inserted in tx")
}

// parked waits until n goroutines are blocked inside Allocator.NextN, in a select
// (waiting for a refill). It yields the processor between looks; it never sleeps.
func parked(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for {
		if ctx.Err() != nil {
			t.Fatalf("waiting for %d goroutines to block in NextN: %v", n, ctx.Err())
		}
		stacks := string(buf[:runtime.Stack(buf, true)])
		count := 0
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "[select") && strings.Contains(g, "idgen.(*Allocator).NextN(") {
				count++
			}
		}
		if count >= n {
			return
		}
		runtime.Gosched()
	}
}

// TestCancelWhileRefillInFlight blocks a shared refill deterministically (another
// transaction holds a lock that nextval waits for) and cancels one of two callers
// waiting for it: the cancelled one gets its ctx.Err(), the other gets its keys once
// the lock is released, and the next call works.
func TestCancelWhileRefillInFlight(t *testing.T) {
	for _, cancelStarter := range []bool{true, false} {
		name := map[bool]string{true: "cancel the caller that started the refill", false: "cancel a caller waiting for it"}[cancelStarter]
		t.Run(name, func(t *testing.T) {
			db, _ := openDB(t)
			mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
			a := exactAlloc(t, db, "s", 50)
			ctx := testContext(t)

			// ALTER SEQUENCE takes a lock that conflicts with nextval's until commit.
			locker, err := db.BeginTx(ctx, nil)
			noErr(t, err, "begin")
			defer func() { _ = locker.Rollback() }()
			_, err = locker.ExecContext(ctx, `ALTER SEQUENCE s INCREMENT BY 50`)
			noErr(t, err, "lock the sequence")

			type result struct {
				keys []int64
				err  error
			}
			starterCtx, cancelStarterCtx := context.WithCancel(ctx)
			defer cancelStarterCtx()
			waiterCtx, cancelWaiterCtx := context.WithCancel(ctx)
			defer cancelWaiterCtx()
			starter, waiter := make(chan result, 1), make(chan result, 1)
			go func() {
				keys, err := a.NextN(starterCtx, 10)
				starter <- result{keys, err}
			}()
			parked(t, ctx, 1) // the starter waits for its refill, which waits for the lock
			go func() {
				keys, err := a.NextN(waiterCtx, 5)
				waiter <- result{keys, err}
			}()
			parked(t, ctx, 2) // and the waiter waits for the same refill

			cancelled, survivor := starter, waiter
			if cancelStarter {
				cancelStarterCtx()
			} else {
				cancelled, survivor = waiter, starter
				cancelWaiterCtx()
			}
			r := <-cancelled
			if !errors.Is(r.err, context.Canceled) || r.keys != nil {
				t.Fatalf("cancelled caller got %v, %v; want context.Canceled", r.keys, r.err)
			}

			noErr(t, locker.Commit(), "release the lock")
			r = <-survivor
			noErr(t, r.err, "the caller that was not cancelled")
			if cancelStarter {
				equalKeys(t, r.keys, seqRange(1, 5)) // the starter gave up its 10 keys; the pool has 1..50
			} else {
				equalKeys(t, r.keys, seqRange(1, 10))
			}
			// One refill served both; nothing was lost; the next call works from memory.
			next, err := a.NextN(ctx, 3)
			noErr(t, err, "next call")
			requireUnique(t, append(next, r.keys...))
			if next[0] > 50 {
				t.Fatalf("next call got %v: keys of the shared refill were lost", next)
			}
			if got := a.Stats(); got.RoundTrips != 1 || got.Blocks != 1 {
				t.Fatalf("Stats = %+v, want one shared round trip for one block", got)
			}
		})
	}
}
