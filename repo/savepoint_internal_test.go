package repo

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/seqrepo/seqrepo/internal/pgtest"
)

type spRow struct {
	ID   int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:sp_rows_id_seq;allocationSize:50"`
	Name string
}

// TestSavepointReleasedOnSuccess: a batch write in a caller's transaction releases the
// savepoint it took once it succeeds, so a long transaction does not pile up
// subtransactions (past 64, PostgreSQL's subtransaction cache overflows). It predicts
// the savepoint's name from the process-wide counter, so it must not run in parallel.
func TestSavepointReleasedOnSuccess(t *testing.T) {
	ctx := context.Background()
	db, err := gorm.Open(postgres.Open(pgtest.NewDatabase(t)), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Use(NewPlugin()); err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`CREATE SEQUENCE sp_rows_id_seq INCREMENT 50; CREATE TABLE sp_rows (id bigint PRIMARY KEY, name text NOT NULL)`).Error; err != nil {
		t.Fatal(err)
	}
	rows, err := New[spRow](db)
	if err != nil {
		t.Fatal(err)
	}
	err = InTx(ctx, db, func(tx *gorm.DB) error {
		name := "seqrepo_sp_" + strconv.FormatUint(savepoints.Load()+1, 10)
		if err := rows.WithTx(tx).CreateAll(ctx, []spRow{{Name: "a"}, {Name: "b"}}); err != nil {
			return err
		}
		// The savepoint CreateAll took is gone: rolling back to it is an error.
		err := tx.Exec("ROLLBACK TO SAVEPOINT " + name).Error
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "3B001" { // invalid_savepoint_specification
			t.Errorf("ROLLBACK TO SAVEPOINT %s after a successful CreateAll: %v; want 3B001, the savepoint released", name, err)
		}
		return errors.New("roll back the test transaction")
	})
	if err == nil {
		t.Fatal("InTx: want the test's own error")
	}
}
