package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/pressly/goose/v3/lock"
)

// LockID is the key of the session-level advisory lock that Up and NewProvider's Provider
// hold while they migrate. It is goose's default (lock.DefaultLockID), so seqrepo's
// migrations also take turns with any other goose run against the same database.
const LockID = lock.DefaultLockID

// sessionLocker implements goose's lock.SessionLocker with pg_advisory_lock, which waits in
// the server until the lock is free.
//
// goose's own lock.NewPostgresSessionLocker polls pg_try_advisory_lock instead, every 5
// seconds by default (1 at the least) and gives up after a fixed number of tries. When many
// instances start at once, each waiter then sleeps up to an interval after the lock is free,
// and a long migration can make them all fail. Waiting in the server wakes the next waiter
// the moment the lock is released, and only ctx limits the wait.
//
// It is safe for concurrent use: it holds no state but the key.
type sessionLocker struct{ id int64 }

var _ lock.SessionLocker = sessionLocker{}

// SessionLock waits until conn's session holds the lock. If ctx ends first, the driver
// abandons the wait (pgx closes the connection) and the error says why.
func (l sessionLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", l.id); err != nil {
		return fmt.Errorf("migrations: waiting for advisory lock %d: %w", l.id, err)
	}
	return nil
}

// SessionUnlock releases the lock that conn's session holds.
func (l sessionLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var released bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", l.id).Scan(&released); err != nil {
		return fmt.Errorf("migrations: releasing advisory lock %d: %w", l.id, err)
	}
	if !released {
		return errors.New("migrations: advisory lock was not held by this session")
	}
	return nil
}
