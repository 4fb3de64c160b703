package repo

import (
	"context"
	"database/sql"
	"iter"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// Copy inserts rows with PostgreSQL COPY (pgx's CopyFrom), the fastest way to write many
// rows. Rows without a key get one first, all from one allocation, so when Copy returns
// the caller's rows hold every key.
//
// Copy writes the rows' columns only: no GORM hooks run and associations are not
// written. Like GORM's create it fills in zero fields that have a default: value and
// zero autoCreateTime/autoUpdateTime fields. A column whose default the database
// supplies is left to the database when it is zero in every row, else written as given.
//
// It is all or nothing: one COPY in a transaction of its own, or, in a transaction (a
// Repository from WithTx), in a savepoint of it. In a transaction from InTx the COPY runs
// in that transaction; in one from db.Transaction, which hides its connection, Copy
// writes the same rows with INSERT … SELECT FROM unnest(…) statements instead, in
// batches of Config.BatchSize rows. ctx cancels the write.
func (r *Repository[T]) Copy(ctx context.Context, rows []T) error {
	if len(rows) == 0 {
		return nil
	}
	fields, err := r.prepare(ctx, rows, nil, 0)
	if err != nil {
		return err
	}
	assigned, err := r.assignKeys(ctx, r.db.WithContext(ctx), rows)
	if err != nil {
		return err
	}
	err = r.inTx(ctx, func(tx *gorm.DB, conn *sql.Conn) error {
		return r.write(ctx, tx, conn, fields, rows)
	})
	if err != nil {
		r.clearKeys(rows, assigned)
		return translate(err)
	}
	return nil
}

// CopySeq inserts the rows of seq like Copy, in batches of Config.BatchSize rows, so that
// memory stays bounded however many rows seq yields. Each batch gets its keys with one
// allocation and is written with one COPY. After a batch is written, each (when not nil)
// is called with it, keys set; the slice is reused for the next batch, so copy what you
// keep. The rows are not committed until CopySeq returns nil.
//
// All batches are written in one transaction (or a savepoint of the caller's): when seq
// yields an error, each returns one, or a write fails, CopySeq stops, nothing is written,
// and it returns that error and 0. Otherwise it returns the number of rows written. A
// row with invalid text is found before its batch gets keys; the *InvalidTextError's
// Row counts rows from the start of seq.
func (r *Repository[T]) CopySeq(ctx context.Context, seq iter.Seq2[T, error], each func(batch []T) error) (int64, error) {
	var n int64
	err := r.inTx(ctx, func(tx *gorm.DB, conn *sql.Conn) error {
		batch := make([]T, 0, r.batch)
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			fields, err := r.prepare(ctx, batch, nil, int(n))
			if err != nil {
				return err
			}
			if _, err := r.assignKeys(ctx, tx, batch); err != nil {
				return err
			}
			if err := r.write(ctx, tx, conn, fields, batch); err != nil {
				return err
			}
			n += int64(len(batch))
			if each != nil {
				if err := each(batch); err != nil {
					return err
				}
			}
			clear(batch)
			batch = batch[:0]
			return nil
		}
		for row, err := range seq {
			if err != nil {
				return err
			}
			batch = append(batch, row)
			if len(batch) == r.batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return flush()
	})
	if err != nil {
		return 0, translate(err)
	}
	return n, nil
}

// write writes the fields of rows, prepared and with their keys, in tx: with COPY on
// conn when there is one, else with unnest INSERTs of Config.BatchSize rows.
func (r *Repository[T]) write(ctx context.Context, tx *gorm.DB, conn *sql.Conn, fields []*schema.Field, rows []T) error {
	if conn != nil {
		return r.copyRows(ctx, conn, fields, rows)
	}
	return r.insertBatches(ctx, tx, fields, rows)
}

// insertBatches writes rows with unnest INSERTs of Config.BatchSize rows on tx.
func (r *Repository[T]) insertBatches(ctx context.Context, tx *gorm.DB, fields []*schema.Field, rows []T) error {
	types, err := r.columnTypes(ctx, tx.Statement.ConnPool)
	if err != nil {
		return err
	}
	for start := 0; start < len(rows); start += r.batch {
		end := min(start+r.batch, len(rows))
		if err := r.insertRows(ctx, tx.Statement.ConnPool, types, fields, rows[start:end]); err != nil {
			return err
		}
	}
	return nil
}

// inTx runs fn in a transaction — InTx's, or a savepoint when r is bound to one — with
// the transaction's *sql.Conn when it can be reached (nil in a db.Transaction).
func (r *Repository[T]) inTx(ctx context.Context, fn func(tx *gorm.DB, conn *sql.Conn) error) error {
	return InTx(ctx, r.db, func(tx *gorm.DB) error {
		return fn(tx, connOf(tx.Statement.ConnPool))
	})
}
