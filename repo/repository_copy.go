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
// zero autoCreateTime/autoUpdateTime fields, and a row whose field has a database
// default (default:now(), say) and is zero gets that default, row by row. COPY cannot
// ask for the default in a single row, so rows that leave different such columns to
// the database take a COPY (or INSERT) each, in the same transaction.
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
	lay, err := r.prepare(ctx, rows, nil, 0)
	if err != nil {
		return err
	}
	assigned, err := r.assignKeys(ctx, r.db.WithContext(ctx), rows)
	if err != nil {
		return err
	}
	err = r.inTx(ctx, func(tx *gorm.DB, conn *sql.Conn) error {
		return r.write(ctx, tx, conn, lay, rows)
	})
	if err != nil {
		r.clearKeys(rows, assigned)
		return translate(err)
	}
	return nil
}

// CopySeq inserts the rows of seq like Copy, in segments, so that memory stays bounded
// however many rows seq yields: the first segment has Config.BatchSize rows, and each
// next one twice as many, up to max(Config.BatchSize, 32,768) rows, so a long sequence
// takes few, large COPYs. CopySeq reserves keys only for the rows it has taken from seq:
// each segment gets its keys with one allocation once its rows are in, and is written
// with one COPY. After a segment is written, each (when not nil) is called with it, keys
// set, in batches of at most Config.BatchSize rows; the slice is reused, so copy what you
// keep. The rows are not committed until CopySeq returns nil. In a db.Transaction,
// where COPY cannot be reached, segments stay at Config.BatchSize rows, one INSERT each.
//
// All segments are written in one transaction (or a savepoint of the caller's): when
// seq yields an error, each returns one, or a write fails, CopySeq stops, nothing is
// written, and it returns that error and 0; the keys it reserved are gaps. Otherwise it
// returns the number of rows written. A row with invalid text is found before its
// segment gets keys; the *InvalidTextError's Row counts rows from the start of seq.
func (r *Repository[T]) CopySeq(ctx context.Context, seq iter.Seq2[T, error], each func(batch []T) error) (int64, error) {
	var n int64
	err := r.inTx(ctx, func(tx *gorm.DB, conn *sql.Conn) error {
		size := r.batch
		batch := make([]T, 0, size)
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			lay, err := r.prepare(ctx, batch, nil, int(n))
			if err != nil {
				return err
			}
			if _, err := r.assignKeys(ctx, tx, batch); err != nil {
				return err
			}
			if err := r.write(ctx, tx, conn, lay, batch); err != nil {
				return err
			}
			n += int64(len(batch))
			if each != nil {
				for start := 0; start < len(batch); start += r.batch {
					if err := each(batch[start:min(start+r.batch, len(batch))]); err != nil {
						return err
					}
				}
			}
			clear(batch)
			batch = batch[:0]
			if conn != nil && size < max(r.batch, maxCopySegment) {
				size = min(2*size, max(r.batch, maxCopySegment))
				batch = make([]T, 0, size)
			}
			return nil
		}
		for row, err := range seq {
			if err != nil {
				return err
			}
			batch = append(batch, row)
			if len(batch) == size {
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

// maxCopySegment is the number of rows CopySeq's segments grow to (unless Config.BatchSize
// is larger): large enough that a COPY's round trips and allocation cost little per
// row, small enough to keep memory bounded (tens of MB for rows of a few hundred bytes).
const maxCopySegment = 1 << 15

// write writes rows, prepared as lay says and with their keys, in tx: with one COPY
// per group of rows on conn when there is one, else with unnest INSERTs of
// Config.BatchSize rows.
func (r *Repository[T]) write(ctx context.Context, tx *gorm.DB, conn *sql.Conn, lay *layout, rows []T) error {
	for _, g := range lay.groups {
		var err error
		if conn != nil {
			err = r.copyRows(ctx, conn, g.fields, rows, g.idx)
		} else {
			err = r.insertBatches(ctx, tx, g.fields, rows, g.idx)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// insertBatches writes rows[idx] (all rows when idx is nil) with unnest INSERTs of
// Config.BatchSize rows on tx.
func (r *Repository[T]) insertBatches(ctx context.Context, tx *gorm.DB, fields []*schema.Field, rows []T, idx []int) error {
	types, err := r.columnTypes(ctx, tx.Statement.ConnPool)
	if err != nil {
		return err
	}
	if idx == nil {
		for start := 0; start < len(rows); start += r.batch {
			end := min(start+r.batch, len(rows))
			if err := r.insertRows(ctx, tx.Statement.ConnPool, types, fields, rows[start:end], nil); err != nil {
				return err
			}
		}
		return nil
	}
	for start := 0; start < len(idx); start += r.batch {
		end := min(start+r.batch, len(idx))
		if err := r.insertRows(ctx, tx.Statement.ConnPool, types, fields, rows, idx[start:end]); err != nil {
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
