package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/seqrepo/seqrepo/idgen"
	"gorm.io/gorm"
)

// This file lets writes go on after a keyed model's sequence was dropped and created
// again by something that knows nothing of seqrepo: GORM's own db.AutoMigrate after a
// DROP TABLE, or a test suite that resets its schema between tests. The allocator follows
// the sequence's name to the new sequence (idgen re-pins it), but the new sequence has the
// INCREMENT its CREATE gave it (1 for GORM's bigserial), so the refill fails with
// idgen.ErrIncrementMismatch. The plugin knows the model's table and key column, so it
// adopts the new sequence exactly as AutoMigrate would, and tries once more.
//
// A mismatch on the sequence the allocator is still pinned to is different: someone
// changed the INCREMENT under running writers, and the writers must stop (README, "A
// changed INCREMENT stops the writers"). adoptRecreated leaves that error as it is.

// recreatedSQL reads the OID the sequence name ($1) resolves to on a connection (0 when
// it resolves to nothing), and whether the sequence with OID $2 still exists.
const recreatedSQL = `SELECT coalesce(to_regclass($1)::oid::bigint, 0), EXISTS (SELECT FROM pg_class WHERE oid = $2::bigint::oid)`

// adoptRecreated is called when a refill of m's allocator a, on q, failed with err, to
// get the n keys the caller asked for once more. When err is an increment mismatch and
// m's sequence name now resolves on q to another sequence than the one a is pinned to,
// which no longer exists (it was dropped and the name created again), it adopts the new
// sequence for m — INCREMENT set to the allocation size, moved past the table's keys,
// the configuration marker written — under AutoMigrate's advisory lock, and returns the
// keys with handled true. Otherwise it returns handled false and the caller reports err.
//
// Where the adoption runs depends on q:
//   - On the pool: in a transaction of its own, committed before the keys are taken
//     through a (which re-pins to the new sequence).
//   - In the caller's transaction: behind a savepoint of that transaction. Adopting on
//     another connection would wait for the caller, whose earlier statements hold locks
//     on the new sequence (and maybe the pool's last connection). But ALTER SEQUENCE is
//     transactional, and so are the nextval calls after it in the same transaction: a
//     rollback of the caller's transaction undoes both. So the keys come from a
//     throwaway Allocator on q, without prefetch, that reserves only what this call
//     needs and shares nothing: if the caller rolls back, the keys vanish with the rows
//     that used them, and a's own pool never holds a key from the undone sequence. a
//     re-pins at its next refill, after the adoption is committed.
func (p *Plugin) adoptRecreated(ctx context.Context, m *model, q idgen.Querier, a *idgen.Allocator, n int, err error) (keys []int64, handled bool, _ error) {
	if !errors.Is(err, idgen.ErrIncrementMismatch) {
		return nil, false, nil
	}
	var (
		now    int64
		exists = true
	)
	rows, qerr := q.QueryContext(ctx, recreatedSQL, a.Config().Sequence, int64(a.SequenceOID()))
	if qerr != nil {
		return nil, false, nil // report the mismatch, not this
	}
	if rows.Next() {
		_ = rows.Scan(&now, &exists)
	}
	_ = rows.Close()
	if now == 0 || exists {
		return nil, false, nil
	}
	return p.adoptThenNext(ctx, m, q, a.Config(), n, func() ([]int64, error) { return a.NextN(ctx, n) })
}

// adoptThenNext adopts m's sequence (named in cfg) for the statement on q, as
// adoptRecreated says, and returns n keys: from next on the pool, from a throwaway
// Allocator in the caller's transaction. handled is always true.
func (p *Plugin) adoptThenNext(ctx context.Context, m *model, q idgen.Querier, cfg idgen.Config, n int, next func() ([]int64, error)) (keys []int64, handled bool, _ error) {
	fail := func(err error) ([]int64, bool, error) {
		return nil, true, fmt.Errorf("repo: model %s: adopting its sequence %s failed (run repo.AutoMigrate after creating or recreating tables): %w",
			m.name(), cfg.Sequence, err)
	}
	adopt := func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", AutoMigrateLockID); err != nil {
			return err
		}
		return adoptKey(ctx, tx, p, m.schema)
	}
	tx, inTx := q.(*sql.Tx)
	if !inTx {
		var aerr error
		if conn, ok := q.(*sql.Conn); ok {
			aerr = sqlTransaction(ctx, conn, adopt)
		} else {
			aerr = p.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
				sqlTx, ok := unwrapPool(tx.Statement.ConnPool).(*sql.Tx)
				if !ok {
					return fmt.Errorf("GORM's transaction is a %T, not a *sql.Tx", tx.Statement.ConnPool)
				}
				return adopt(sqlTx)
			})
		}
		if aerr != nil {
			return fail(aerr)
		}
		keys, err := next()
		return keys, true, err
	}
	if err := inSQLSavepoint(ctx, tx, adopt); err != nil {
		return fail(err)
	}
	cfg.NoPrefetch = true
	once, err := idgen.New(ctx, tx, cfg)
	if err != nil {
		return fail(err)
	}
	keys, err = once.NextN(ctx, n)
	return keys, true, err
}

// adoptFresh is called when making m's allocator on q failed with err. When err is an
// increment mismatch on a sequence at INCREMENT 1 that carries no seqrepo marker — a
// sequence nobody adopted yet, as GORM's own db.AutoMigrate leaves every bigserial key —
// it adopts the sequence as adoptRecreated does and returns n keys. A sequence with a
// marker, or at another INCREMENT, was configured by someone on purpose: its mismatch
// is reported, not changed.
func (p *Plugin) adoptFresh(ctx context.Context, m *model, q idgen.Querier, n int, err error) (keys []int64, handled bool, _ error) {
	var mm *idgen.IncrementMismatchError
	if !errors.As(err, &mm) || mm.Increment != 1 {
		return nil, false, nil
	}
	var marked bool
	rows, qerr := q.QueryContext(ctx, `SELECT coalesce(obj_description(to_regclass($1), 'pg_class'), '') LIKE '%seqrepo:%'`, mm.Sequence)
	if qerr != nil {
		return nil, false, nil
	}
	if rows.Next() {
		_ = rows.Scan(&marked)
	}
	_ = rows.Close()
	if marked {
		return nil, false, nil
	}
	cfg := m.cfg
	cfg.Sequence = mm.Sequence
	return p.adoptThenNext(ctx, m, q, cfg, n, func() ([]int64, error) {
		a, err := p.modelAllocator(ctx, m, q)
		if err != nil {
			return nil, err
		}
		return a.NextN(ctx, n)
	})
}

// sqlTransaction runs fn in a transaction on conn, committed when fn succeeds.
func sqlTransaction(ctx context.Context, conn *sql.Conn, fn func(*sql.Tx) error) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// inSQLSavepoint runs fn inside a savepoint of tx, rolled back when fn fails so that tx
// stays usable.
func inSQLSavepoint(ctx context.Context, tx *sql.Tx, fn func(*sql.Tx) error) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT seqrepo_adopt"); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_, _ = tx.ExecContext(context.WithoutCancel(ctx), "ROLLBACK TO SAVEPOINT seqrepo_adopt")
		return err
	}
	_, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT seqrepo_adopt")
	return err
}
