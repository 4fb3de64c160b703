package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// InTx runs fn in a database transaction on one connection that InTx holds for the whole
// call, and commits when fn returns nil, else rolls back (also when fn panics). Pass tx
// to Repository.WithTx to run repository calls in the transaction; use tx itself for
// anything else GORM does.
//
// Unlike db.Transaction, InTx keeps the transaction's *sql.Conn within reach, so that
// Copy and Upsert on a repository bound to tx write with PostgreSQL COPY on the same
// connection, inside the open transaction (database/sql's *sql.Tx offers no way to reach
// the driver connection). Inside a plain db.Transaction those methods still run in the
// caller's transaction, with multi-row INSERTs instead of COPY.
//
// When db is already in a transaction (tx from InTx or db.Transaction), InTx runs fn in
// a savepoint of it, and rolls back to the savepoint when fn fails (or panics), so that
// the caller's transaction goes on without fn's writes; opts are ignored. InTx takes the
// savepoint itself, also when gorm.Config.DisableNestedTransaction makes db.Transaction
// take none. When db is bound to a *sql.Conn (db.Connection), the transaction begins on
// that connection.
//
// ctx is the context of the transaction: cancelling it rolls the transaction back.
// Conditions chained on db (Where, Order, …) are not carried into tx. InTx is safe for
// concurrent use; tx, like any GORM transaction, is for one goroutine at a time.
func InTx(ctx context.Context, db *gorm.DB, fn func(tx *gorm.DB) error, opts ...*sql.TxOptions) error {
	db = db.Session(&gorm.Session{NewDB: true, Context: ctx})
	switch pool := unwrapPool(db.Statement.ConnPool).(type) {
	case gorm.TxCommitter:
		return inSavepoint(db, fn)
	case *sql.Conn:
		return endedWith(ctx, beginOn(db, pool, fn, opts))
	default:
		return endedWith(ctx, db.Connection(func(c *gorm.DB) error {
			conn, ok := c.Statement.ConnPool.(*sql.Conn)
			if !ok { // not database/sql underneath: a transaction without COPY
				return c.Transaction(fn, opts...)
			}
			return beginOn(c, conn, fn, opts)
		}))
	}
}

// transaction runs fn in a transaction of its own on db's pool or connection, or in a
// savepoint when db is already in a transaction.
func transaction(db *gorm.DB, fn func(tx *gorm.DB) error) error {
	if inTransaction(db.Statement.ConnPool) {
		return inSavepoint(db, fn)
	}
	return endedWith(db.Statement.Context, db.Transaction(fn))
}

// endedWith returns the error of a transaction begun with ctx. When ctx ended after the
// last statement, database/sql rolls the transaction back on its own, and the COMMIT
// then fails with sql.ErrTxDone, or with ctx's error, whichever comes first; either way
// the caller learns that the context ended, so errors.Is(err, context.Canceled) holds
// whatever the timing.
func endedWith(ctx context.Context, err error) error {
	if ctx != nil && ctx.Err() != nil && errors.Is(err, sql.ErrTxDone) && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("repo: transaction rolled back: %w (%w)", ctx.Err(), err)
	}
	return err
}

// savepoints numbers the savepoints inSavepoint takes, so that no two share a name.
var savepoints atomic.Uint64

// inSavepoint runs fn in a savepoint of tx's transaction, and rolls back to it when fn
// returns an error or panics. It takes the savepoint itself rather than through
// db.Transaction, which takes none when gorm.Config.DisableNestedTransaction is set: a
// batch write that stops half-way must leave nothing behind in the caller's transaction.
//
// The rollback runs even when tx's context has ended (context.WithoutCancel). A
// successful fn's savepoint is released: every savepoint left open is a subtransaction
// to the end of the transaction, and past 64 of them PostgreSQL's subtransaction cache
// overflows, which slows every session's snapshots.
func inSavepoint(tx *gorm.DB, fn func(tx *gorm.DB) error) (err error) {
	name := "seqrepo_sp_" + strconv.FormatUint(savepoints.Add(1), 10)
	if err := tx.SavePoint(name).Error; err != nil {
		return err
	}
	panicked := true
	defer func() {
		if !panicked && err == nil {
			return
		}
		undo := tx.Session(&gorm.Session{NewDB: true, Context: context.WithoutCancel(tx.Statement.Context)})
		if rerr := undo.RollbackTo(name).Error; rerr != nil && err != nil {
			err = errors.Join(err, fmt.Errorf("repo: roll back to savepoint %s: %w", name, rerr))
		}
	}()
	err = fn(tx.Session(&gorm.Session{NewDB: true}))
	panicked = false
	if err != nil {
		return err
	}
	return tx.Session(&gorm.Session{NewDB: true}).Exec("RELEASE SAVEPOINT " + pgx.Identifier{name}.Sanitize()).Error
}

// beginOn runs fn in a transaction begun on conn, registered in txConns while fn runs.
func beginOn(db *gorm.DB, conn *sql.Conn, fn func(tx *gorm.DB) error, opts []*sql.TxOptions) error {
	return db.Transaction(func(tx *gorm.DB) error {
		if sqlTx, ok := unwrapPool(tx.Statement.ConnPool).(*sql.Tx); ok {
			txConns.Store(sqlTx, conn)
			defer txConns.Delete(sqlTx)
		}
		return fn(tx)
	}, opts...)
}

// txConns maps each *sql.Tx that InTx has open to the *sql.Conn it runs on, so that any
// *gorm.DB in that transaction — however it was derived: sessions, WithContext, nested
// transactions, prepared-statement mode — leads back to the connection. An entry lives
// exactly as long as its InTx call. It is state internal to the package, not a handle.
var txConns sync.Map // *sql.Tx → *sql.Conn

// connOf returns the *sql.Conn under pool when one can be reached: pool is a transaction
// that InTx began, or a *sql.Conn. It returns nil otherwise.
func connOf(pool gorm.ConnPool) *sql.Conn {
	switch p := unwrapPool(pool).(type) {
	case *sql.Tx:
		if c, ok := txConns.Load(p); ok {
			return c.(*sql.Conn)
		}
	case *sql.Conn:
		return p
	}
	return nil
}

// inTransaction reports whether pool is a transaction.
func inTransaction(pool gorm.ConnPool) bool {
	_, ok := unwrapPool(pool).(gorm.TxCommitter)
	return ok
}
