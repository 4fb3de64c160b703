package idgen

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// DB is a database handle that New, WithTx, Check and CheckOne run idgen's statements on:
// a pool, a connection or a transaction, from database/sql or from pgx. It must be one of
//
//   - a Querier: *sql.DB, *sql.Tx, *sql.Conn, GORM's ConnPool (what
//     (*gorm.DB).ConnPool holds), or anything else with QueryContext;
//   - a PgxQuerier: *pgxpool.Pool, *pgx.Conn, pgx.Tx, the DBTX interface sqlc generates
//     for pgx/v5, or anything else with pgx's Query.
//
// A value that is both is used as a Querier. New, Check and CheckOne return an
// ErrInvalidConfig error for any other value, naming its type; an Allocator that WithTx
// gave one fails every call that needs a refill, saying the same.
//
// DB has no methods because the two families share none: database/sql's QueryContext
// returns *sql.Rows, which only database/sql can make, and pgx's Query returns pgx.Rows.
// Requiring either would make the other go through an adapter (or a database/sql
// driver, whose pool cannot see the caller's pgx transaction); as it is, every existing
// handle is passed as it is.
type DB any

// PgxQuerier is what idgen needs from a pgx handle: one query that returns rows.
// *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy it, and so does the DBTX interface sqlc
// generates for pgx/v5.
type PgxQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// *pgxpool.Pool is checked in the tests, so that idgen does not import pgxpool.
var (
	_ PgxQuerier = (*pgx.Conn)(nil)
	_ PgxQuerier = (pgx.Tx)(nil)
)

// rows is what idgen reads from a query, whichever family ran it.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

var (
	_ rows = (*sql.Rows)(nil)
	_ rows = (*pgxRows)(nil)
)

// query runs one of idgen's statements on db. Like database/sql over pgx's driver, it
// reads the first row before it returns, so an error the server reports on execution
// comes back from query, not from the first Next, in both families.
func query(ctx context.Context, db DB, sql string, args ...any) (rows, error) {
	switch q := db.(type) {
	case Querier:
		r, err := q.QueryContext(ctx, sql, args...)
		if err != nil {
			return nil, err
		}
		return r, nil
	case PgxQuerier:
		r, err := q.Query(ctx, sql, args...)
		if err != nil {
			return nil, err
		}
		more := r.Next()
		if err := r.Err(); err != nil {
			r.Close()
			return nil, err
		}
		return &pgxRows{Rows: r, first: true, more: more}, nil
	default:
		return nil, errNotDB(db)
	}
}

// checkDB returns the error New, Check and CheckOne report for a db that is no DB,
// or nil.
func checkDB(seq string, db DB) error {
	switch db.(type) {
	case Querier, PgxQuerier:
		return nil
	case nil:
		return &ConfigError{Sequence: seq, Problems: []string{"nil Querier"}}
	}
	return &ConfigError{Sequence: seq, Problems: []string{errNotDB(db).Error()}}
}

// errNotDB says why db cannot be used, and what can.
func errNotDB(db DB) error {
	return fmt.Errorf("%T is not a database handle idgen can query: pass a Querier (*sql.DB, *sql.Tx, *sql.Conn, "+
		"GORM's ConnPool) or a PgxQuerier (*pgxpool.Pool, *pgx.Conn, pgx.Tx)", db)
}

// pgxRows reads pgx.Rows as rows, starting with the row query read ahead.
type pgxRows struct {
	pgx.Rows
	first bool // the next Next returns more without reading
	more  bool
}

func (r *pgxRows) Next() bool {
	if r.first {
		r.first = false
		return r.more
	}
	return r.Rows.Next()
}

// Close closes the rows and returns their error, as *sql.Rows' Close does.
func (r *pgxRows) Close() error {
	r.Rows.Close()
	return r.Rows.Err()
}
