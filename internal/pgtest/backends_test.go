//go:build unix

package pgtest

import (
	"database/sql"
	"testing"
	"time"
)

// TestParkAndTerminate: HoldLock parks a nextval behind ALTER SEQUENCE's lock,
// LockWaiter finds the parked backend, TerminateBackend ends it (its statement fails)
// and returns once it is gone, and release, called twice, lets the next nextval run.
func TestParkAndTerminate(t *testing.T) {
	ctx := Context(t, 3*time.Minute)
	db, err := sql.Open("pgx", NewDatabase(t, Direct()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.ExecContext(ctx, `CREATE SEQUENCE s INCREMENT 50`); err != nil {
		t.Fatal(err)
	}
	release := HoldLock(t, ctx, db, `ALTER SEQUENCE s INCREMENT BY 50`)
	done := make(chan error, 1)
	go func() {
		var v int64
		done <- db.QueryRowContext(ctx, `SELECT nextval('s')`).Scan(&v)
	}()
	pid := LockWaiter(t, ctx, db, "%nextval%")
	TerminateBackend(t, ctx, db, pid)
	if err := <-done; err == nil {
		t.Fatal("the parked nextval succeeded although its backend was terminated")
	}
	var alive bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)`, pid).Scan(&alive); err != nil || alive {
		t.Fatalf("backend %d after TerminateBackend: alive %v, %v", pid, alive, err)
	}
	release()
	release()
	var v int64
	if err := db.QueryRowContext(ctx, `SELECT nextval('s')`).Scan(&v); err != nil || v != 1 {
		t.Fatalf("nextval after release = %d, %v; want 1", v, err)
	}
	if d, ok := ctx.Deadline(); !ok || d.IsZero() {
		t.Errorf("Context has no deadline")
	}
}
