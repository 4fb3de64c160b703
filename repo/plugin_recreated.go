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

// adoptRecreated is called when a refill of m's allocator a, on q, failed with err. When
// err is an increment mismatch and m's sequence name now resolves on q to another
// sequence than the one a is pinned to (the pinned one was dropped and the name created
// again), it adopts the new sequence for m — INCREMENT set to the allocation size, moved
// past the table's keys, the configuration marker written — under AutoMigrate's advisory
// lock, in the caller's transaction (behind a savepoint) when q is one, else in a
// transaction of its own. It reports whether it did, in which case the caller tries the
// refill once more.
func (p *Plugin) adoptRecreated(ctx context.Context, m *model, q idgen.Querier, a *idgen.Allocator, err error) (bool, error) {
	if !errors.Is(err, idgen.ErrIncrementMismatch) {
		return false, nil
	}
	var (
		now    int64
		exists = true
	)
	rows, qerr := q.QueryContext(ctx, recreatedSQL, a.Config().Sequence, int64(a.SequenceOID()))
	if qerr != nil {
		return false, nil // report the mismatch, not this
	}
	if rows.Next() {
		_ = rows.Scan(&now, &exists)
	}
	_ = rows.Close()
	if now == 0 || exists {
		return false, nil
	}
	adopt := func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", AutoMigrateLockID); err != nil {
			return err
		}
		return adoptKey(ctx, tx, p, m.schema)
	}
	var aerr error
	if tx, ok := q.(*sql.Tx); ok {
		aerr = inSQLSavepoint(ctx, tx, adopt)
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
		return false, fmt.Errorf("repo: model %s: its sequence %s was dropped and created again, and adopting the new one failed (run repo.AutoMigrate after recreating tables): %w",
			m.name(), a.Config().Sequence, aerr)
	}
	return true, nil
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
