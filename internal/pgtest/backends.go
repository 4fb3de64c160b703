//go:build unix

package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Helpers for tests that break a statement on purpose: park it behind a lock, find the
// backend that waits, end that backend. None of them sleeps: each wait looks again with
// a query, yielding the processor between looks, until ctx ends.

// Context returns a context for a test that waits for the database: it ends a tenth of
// the remaining time before t's deadline (or after fallback when t has none, as with
// go test -timeout 0), so that a wait that never ends fails the test with a message
// instead of hanging it. It bounds waits; it asserts nothing about speed.
func Context(t testing.TB, fallback time.Duration) context.Context {
	deadline := time.Now().Add(fallback)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			deadline = dl.Add(-time.Until(dl) / 10)
		}
	}
	ctx, cancel := context.WithDeadline(t.Context(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// HoldLock runs lockStmt, a statement that takes a lock, in a transaction of its own on
// db and keeps that transaction open until release is called or t ends, so that
// statements that need the lock wait: `ALTER SEQUENCE s INCREMENT BY 50` (which
// changes nothing when the INCREMENT is 50 already) parks every nextval on s, and
// `SELECT pg_advisory_xact_lock(6)` parks whatever waits for advisory lock 6. The lock
// belongs to a transaction, which stays on one server connection also through PgBouncer
// in transaction pooling mode. release rolls the transaction back; it may be called
// more than once, from any goroutine.
func HoldLock(t testing.TB, ctx context.Context, db *sql.DB, lockStmt string) (release func()) {
	t.Helper()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("pgtest: HoldLock: begin: %v", err)
	}
	if _, err := tx.ExecContext(ctx, lockStmt); err != nil {
		_ = tx.Rollback()
		t.Fatalf("pgtest: HoldLock: %s: %v", lockStmt, err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Rollback(); err != nil {
				t.Errorf("pgtest: HoldLock: releasing the lock of %s: %v", lockStmt, err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// RowQuerier is what LockWaiter and TerminateBackend need: *sql.DB, *sql.Tx and
// *sql.Conn have it.
type RowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// LockWaiter returns the pid of a backend of db's database, other than the one db's
// query runs on, that waits for a lock while running a statement LIKE pattern (such as
// "%nextval%"), looking again and again until there is one. ctx bounds the wait; a
// failed look or ctx's end fails t.
func LockWaiter(t testing.TB, ctx context.Context, db RowQuerier, pattern string) int {
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
			t.Fatalf("pgtest: looking for a backend waiting for a lock in %q: %v", pattern, err)
		}
		runtime.Gosched()
	}
}

// TerminateBackend ends backend pid with pg_terminate_backend and returns once it is
// gone from pg_stat_activity. ctx bounds the wait; a backend that does not exist, a
// failed query or ctx's end fails t.
func TerminateBackend(t testing.TB, ctx context.Context, db RowQuerier, pid int) {
	t.Helper()
	var ok bool
	if err := db.QueryRowContext(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pgtest: pg_terminate_backend(%d) = %v, %v; want true (is there such a backend?)", pid, ok, err)
	}
	for {
		var alive bool
		if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)`, pid).Scan(&alive); err != nil {
			t.Fatalf("pgtest: waiting for backend %d to end: %v", pid, err)
		}
		if !alive {
			return
		}
		runtime.Gosched()
	}
}
