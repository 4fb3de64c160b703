package idgen_test

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/seqrepo/seqrepo/idgen"
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
	tx, err := db.BeginTx(ctx, nil)
	noErr(t, err, "begin the locking transaction")
	_, err = tx.ExecContext(ctx, `ALTER SEQUENCE `+seq+` INCREMENT BY 50`)
	noErr(t, err, "lock the sequence")
	released := false
	release = func() {
		if !released {
			released = true
			noErr(t, tx.Rollback(), "release the sequence")
		}
	}
	t.Cleanup(release)
	return release
}

// waitingBackend returns the pid of the backend of this database that waits for a lock
// while running a statement like pattern, looking again and again until there is one
// (each look is a query; nothing sleeps). ctx bounds the wait.
func waitingBackend(t *testing.T, ctx context.Context, db *sql.DB, pattern string) int {
	t.Helper()
	for {
		var pid int
		err := db.QueryRowContext(ctx, `SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query LIKE $1
LIMIT 1`, pattern).Scan(&pid)
		if err == nil {
			return pid
		}
		if !errors.Is(err, sql.ErrNoRows) {
			t.Fatalf("looking for a backend waiting in %q: %v", pattern, err)
		}
		runtime.Gosched()
	}
}

// terminate ends backend pid with pg_terminate_backend and waits until it is gone.
func terminate(t *testing.T, ctx context.Context, db *sql.DB, pid int) {
	t.Helper()
	var ok bool
	noErr(t, db.QueryRowContext(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok), "pg_terminate_backend")
	if !ok {
		t.Fatalf("pg_terminate_backend(%d) found no such backend", pid)
	}
	for {
		var alive bool
		noErr(t, db.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)`, pid).Scan(&alive), "look for the backend")
		if !alive {
			return
		}
		runtime.Gosched()
	}
}

type keysErr struct {
	keys []int64
	err  error
}

// TestRefillBackendKilled terminates the backend of a refill while its nextval waits:
// the call fails with the connection's error and hands out nothing, the keys it had
// taken from memory go back, and the next call works on a new connection. Both refill
// paths: the shared one on the pool, and Using's on a connection the caller holds.
func TestRefillBackendKilled(t *testing.T) {
	for _, using := range []bool{false, true} {
		t.Run(map[bool]string{false: "shared refill", true: "Using a held connection"}[using], func(t *testing.T) {
			db, _ := openDB(t)
			mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
			a := newAlloc(t, db, "s", 50)
			ctx := testContext(t)
			all, err := a.NextN(ctx, 30) // 31..50 stay in memory
			noErr(t, err, "NextN")

			victim := a
			if using {
				conn, err := db.Conn(ctx)
				noErr(t, err, "conn")
				defer conn.Close()
				victim = a.Using(conn)
			}
			release := lockSequence(t, ctx, db, "s")
			done := make(chan keysErr, 1)
			go func() {
				keys, err := victim.NextN(ctx, 120) // 20 from memory, 2 blocks from the sequence
				done <- keysErr{keys, err}
			}()
			terminate(t, ctx, db, waitingBackend(t, ctx, db, "%nextval%"))
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
// Using's refill runs with the caller's context on the caller's connection, so its
// query is cancelled.
func TestRefillTimesOut(t *testing.T) {
	for _, using := range []bool{false, true} {
		t.Run(map[bool]string{false: "shared refill", true: "Using a transaction"}[using], func(t *testing.T) {
			db, _ := openDB(t)
			mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
			a := newAlloc(t, db, "s", 50)
			ctx := testContext(t)
			all, err := a.NextN(ctx, 30)
			noErr(t, err, "NextN")

			victim := a
			var tx *sql.Tx
			if using {
				tx, err = db.BeginTx(ctx, nil)
				noErr(t, err, "begin")
				defer func() { _ = tx.Rollback() }()
				victim = a.Using(tx)
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
