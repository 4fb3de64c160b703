package idgen_test

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/internal/pgtest"
)

// Faults during a refill. Each refill here is parked deterministically: another
// transaction holds the lock ALTER SEQUENCE takes, which nextval waits for, until the
// test has done what it means to do to the waiting refill. Then: the call returns an
// error and no key, the keys already reserved are not lost, the next call works, and no
// key is handed out twice.

// lockSequence makes nextval on seq wait until the returned function is called: it holds
// the lock of ALTER SEQUENCE (which changes nothing here) in an open transaction.
func lockSequence(t *testing.T, ctx context.Context, db *sql.DB, seq string) (release func()) {
	t.Helper()
	return pgtest.HoldLock(t, ctx, db, `ALTER SEQUENCE `+seq+` INCREMENT BY 50`)
}

type keysErr struct {
	keys []int64
	err  error
}

// TestRefillBackendKilled terminates the backend of a refill while its nextval waits:
// the call fails with the connection's error and hands out nothing, the keys it had
// taken from memory go back, and the next call works on a new connection. Both refill
// paths: the shared one on the pool, and WithTx's on a connection the caller holds.
func TestRefillBackendKilled(t *testing.T) {
	for _, using := range []bool{false, true} {
		t.Run(map[bool]string{false: "shared refill", true: "WithTx on a held connection"}[using], func(t *testing.T) {
			db, _ := openDB(t)
			mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
			a := exactAlloc(t, db, "s", 50)
			ctx := testContext(t)
			all, err := a.NextN(ctx, 30) // 31..50 stay in memory
			noErr(t, err, "NextN")

			victim := a
			if using {
				conn, err := db.Conn(ctx)
				noErr(t, err, "conn")
				defer conn.Close()
				victim = a.WithTx(conn)
			}
			release := lockSequence(t, ctx, db, "s")
			done := make(chan keysErr, 1)
			go func() {
				keys, err := victim.NextN(ctx, 120) // 20 from memory, 2 blocks from the sequence
				done <- keysErr{keys, err}
			}()
			pgtest.TerminateBackend(t, ctx, db, pgtest.LockWaiter(t, ctx, db, "%nextval%"))
			release()
			r := <-done
			if r.err == nil || r.keys != nil {
				t.Fatalf("NextN whose backend was terminated = %d keys, %v; want no key and an error", len(r.keys), r.err)
			}
			if errors.Is(r.err, idgen.ErrIncrementMismatch) || errors.Is(r.err, idgen.ErrSequenceNotFound) {
				t.Fatalf("a lost connection reported as a sequence problem: %v", r.err)
			}
			if got := a.Stats().Keys; got != 30 {
				t.Fatalf("Stats().Keys = %d after the failed call, want 30", got)
			}

			keys, err := a.NextN(ctx, 120)
			noErr(t, err, "NextN after the backend was terminated")
			equalKeys(t, keys[:20], seqRange(31, 50)) // the keys in memory were not lost
			all = append(all, keys...)
			requireUnique(t, all)
		})
	}
}

// TestRefillTimesOut lets the caller's deadline pass while its refill waits for the
// sequence: the call returns the context's error and no key, and once the sequence is
// free the allocator goes on without losing or repeating a key. The shared refill is
// not cancelled (other callers may wait for it) and fills the pool when it completes;
// WithTx's refill runs with the caller's context on the caller's connection, so its
// query is cancelled.
func TestRefillTimesOut(t *testing.T) {
	for _, using := range []bool{false, true} {
		t.Run(map[bool]string{false: "shared refill", true: "WithTx on a transaction"}[using], func(t *testing.T) {
			db, _ := openDB(t)
			mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
			a := exactAlloc(t, db, "s", 50)
			ctx := testContext(t)
			all, err := a.NextN(ctx, 30)
			noErr(t, err, "NextN")

			victim := a
			var tx *sql.Tx
			if using {
				tx, err = db.BeginTx(ctx, nil)
				noErr(t, err, "begin")
				defer func() { _ = tx.Rollback() }()
				victim = a.WithTx(tx)
			}
			release := lockSequence(t, ctx, db, "s")
			// The sequence stays locked until the call has returned, so only the
			// deadline can end it: how soon it passes does not matter.
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			keys, err := victim.NextN(short, 120)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || keys != nil {
				t.Fatalf("NextN past its deadline = %d keys, %v; want none and context.DeadlineExceeded", len(keys), err)
			}
			release()
			if tx != nil {
				_ = tx.Rollback() // the cancelled query left the transaction unusable
			}

			keys, err = a.NextN(ctx, 120)
			noErr(t, err, "NextN after the deadline")
			all = append(all, keys...)
			more, err := a.NextN(ctx, 500)
			noErr(t, err, "NextN")
			all = append(all, more...)
			requireUnique(t, all)
			// The keys in memory were not lost. (The shared refill that outlived its
			// caller puts its blocks in front of them, so they need not come first.)
			for _, k := range seqRange(31, 50) {
				if !slices.Contains(all, k) {
					t.Fatalf("key %d, in memory before the failed call, was never handed out", k)
				}
			}
			if got := a.Stats().Keys; got != int64(len(all)) {
				t.Fatalf("Stats().Keys = %d, %d keys handed out", got, len(all))
			}
		})
	}
}

// Mixed configurations. All writers of a sequence must use one Optimizer and one
// AllocationSize; within one process New refuses a second configuration while an
// Allocator of the first is in use.

// TestMixedConfigRefused: New refuses another Optimizer, or another AllocationSize, for
// a sequence that an Allocator in use draws from, however the name is spelled; the
// same configuration is welcome (two pools, as two hosts); and once the first Allocator
// is gone, a new configuration is accepted.
func TestMixedConfigRefused(t *testing.T) {
	db, dsn := openDB(t)
	ctx := testContext(t)
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)

	inUse := newAlloc(t, db, "s", 50)
	held, err := inUse.NextN(ctx, 10) // 11..50 stay reserved in memory
	noErr(t, err, "NextN")

	refused := func(t *testing.T, cfg idgen.Config) {
		t.Helper()
		a, err := idgen.New(ctx, db, cfg)
		var mixed *idgen.MixedConfigError
		if a != nil || !errors.Is(err, idgen.ErrMixedConfig) || !errors.As(err, &mixed) {
			t.Fatalf("New(%+v) beside a pooled-lo/50 Allocator = %v, %v; want ErrMixedConfig", cfg, a, err)
		}
		if mixed.InUse.Optimizer != idgen.PooledLo || mixed.InUse.AllocationSize != 50 || mixed.Refused != cfg {
			t.Fatalf("MixedConfigError %+v", *mixed)
		}
		for _, m := range []string{cfg.Sequence, cfg.Optimizer.String(), "pooled-lo", "50"} {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("error %q does not mention %q", err, m)
			}
		}
	}
	t.Run("other optimizer", func(t *testing.T) {
		refused(t, idgen.Config{Sequence: "s", AllocationSize: 50, Optimizer: idgen.Pooled})
	})
	t.Run("other optimizer, name spelled otherwise", func(t *testing.T) {
		refused(t, idgen.Config{Sequence: `public."s"`, AllocationSize: 50, Optimizer: idgen.Pooled})
	})
	t.Run("other allocation size after ALTER SEQUENCE", func(t *testing.T) {
		// INCREMENT 25 now: a new Allocator's first nextval would return 26 and reserve
		// 26..50, keys inUse still holds. The INCREMENT check cannot see that; this can.
		mustExec(t, db, `ALTER SEQUENCE s INCREMENT 25`)
		t.Cleanup(func() { mustExec(t, db, `ALTER SEQUENCE s INCREMENT 50`) })
		refused(t, idgen.Config{Sequence: "s", AllocationSize: 25})
	})
	t.Run("same configuration from another pool", func(t *testing.T) {
		host, err := sql.Open("pgx", dsn)
		noErr(t, err, "open")
		defer host.Close()
		b := newAlloc(t, host, "public.s", 50)
		keys, err := b.NextN(ctx, 100)
		noErr(t, err, "NextN")
		more, err := inUse.NextN(ctx, 100)
		noErr(t, err, "NextN")
		requireUnique(t, append(append(append([]int64(nil), held...), keys...), more...))
	})
	runtime.KeepAlive(inUse) // in use until here

	t.Run("still refused once the first is gone", func(t *testing.T) {
		// Nothing references inUse any more, but keys of the blocks it reserved were
		// handed out and may be written: a pooled block [v-49, v] would reach back into
		// them (52..60 after pooled-lo had handed out 1..60). The process keeps the
		// sequence's first configuration for its whole life.
		runtime.GC()
		refused(t, idgen.Config{Sequence: "s", AllocationSize: 50, Optimizer: idgen.Pooled})
	})
}

// TestMixedConfigPerDatabase: the same sequence name, with the very same OID, in two
// databases (both cloned from one template) is two sequences: each may have its own
// configuration.
func TestMixedConfigPerDatabase(t *testing.T) {
	tpl := pgtest.WithTemplate("idgen-mixed-config", func(ctx context.Context, dsn string) error {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.ExecContext(ctx, `CREATE SEQUENCE s INCREMENT 50`)
		return err
	})
	ctx := testContext(t)
	var oids [2]int64
	var allocs [2]*idgen.Allocator
	for i, opt := range []idgen.Optimizer{idgen.PooledLo, idgen.Pooled} {
		db, err := sql.Open("pgx", pgtest.NewDatabase(t, tpl))
		noErr(t, err, "open")
		t.Cleanup(func() { _ = db.Close() })
		noErr(t, db.QueryRowContext(ctx, `SELECT 's'::regclass::oid::int8`).Scan(&oids[i]), "oid")
		allocs[i] = newAlloc(t, db, "s", 50, opt)
	}
	if oids[0] != oids[1] {
		t.Fatalf("the clones' sequences have OIDs %d and %d; the test needs them equal", oids[0], oids[1])
	}
	for _, a := range allocs {
		_, err := a.NextN(ctx, 60)
		noErr(t, err, "NextN")
	}
}

// TestMixedConfigConcurrentNew: goroutines make Allocators of one sequence at once, half
// of them pooled and half pooled-lo. Whichever configuration comes first wins; every
// New of the other fails; none of the winners' keys repeats.
func TestMixedConfigConcurrentNew(t *testing.T) {
	db, _ := openDB(t)
	ctx := testContext(t)
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
	const goroutines = 8
	allocs := make([]*idgen.Allocator, goroutines)
	errs := make([]error, goroutines)
	start := make(chan struct{})
	done := make(chan int, goroutines)
	for g := range goroutines {
		go func() {
			<-start
			allocs[g], errs[g] = idgen.New(ctx, db, idgen.Config{Sequence: "s", AllocationSize: 50, Optimizer: idgen.Optimizer(g % 2)})
			done <- g
		}()
	}
	close(start)
	for range goroutines {
		<-done
	}
	var winner *idgen.Optimizer
	var keys []int64
	for g, a := range allocs {
		if errs[g] != nil {
			if !errors.Is(errs[g], idgen.ErrMixedConfig) {
				t.Fatalf("New %d: %v", g, errs[g])
			}
			continue
		}
		if opt := a.Config().Optimizer; winner == nil {
			winner = &opt
		} else if *winner != opt {
			t.Fatalf("both %s and %s Allocators were made for one sequence", *winner, opt)
		}
		got, err := a.NextN(ctx, 75)
		noErr(t, err, "NextN")
		keys = append(keys, got...)
	}
	if winner == nil || len(keys) != 75*goroutines/2 {
		t.Fatalf("%d keys from the winning Allocators, want %d", len(keys), 75*goroutines/2)
	}
	requireUnique(t, keys)
}
