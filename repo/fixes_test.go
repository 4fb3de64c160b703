package repo_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"iter"
	"slices"
	"testing"

	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Regression tests for bugs found in review: each names the scenario it reproduces.

// fixOpen returns a GORM handle with the plugin, configured by gc, on a fresh copy of
// the test schema to which ddl has been applied, and its *sql.DB.
func fixOpen(t testing.TB, gc gorm.Config, maxConns int, ddl string) (*gorm.DB, *sql.DB, *repo.Plugin) {
	t.Helper()
	if gc.Logger == nil {
		gc.Logger = logger.Discard
	}
	db, err := gorm.Open(postgres.Open(pgtestDatabase(t)), &gc)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	if maxConns > 0 {
		sqlDB.SetMaxOpenConns(maxConns)
	}
	if ddl != "" {
		if err := db.Exec(ddl).Error; err != nil {
			t.Fatal(err)
		}
	}
	p := repo.NewPlugin()
	if err := db.Use(p); err != nil {
		t.Fatal(err)
	}
	return db, sqlDB, p
}

// errFragile is the error Fragile's Value returns.
var errFragile = errors.New("fragile: refused")

// Fragile is text whose driver value fails for "fail": a Go-side error raised while a
// write is under way, after earlier batches reached the database.
type Fragile string

func (f Fragile) Value() (driver.Value, error) {
	if f == "fail" {
		return nil, errFragile
	}
	return string(f), nil
}

type Gadget struct {
	ID    int64  `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:gadgets_id_seq;allocationSize:50"`
	Code  string `gorm:"uniqueIndex"`
	Label Fragile
}

const gadgetSchema = `
CREATE SEQUENCE gadgets_id_seq INCREMENT 50;
CREATE TABLE gadgets (id bigint PRIMARY KEY, code text NOT NULL UNIQUE, label text NOT NULL);
`

// gadgets returns n gadgets, codes prefix00 … in sort order, the one at fail labelled "fail".
func gadgets(prefix string, n, fail int) []Gadget {
	out := make([]Gadget, n)
	for i := range out {
		out[i] = Gadget{Code: fmt.Sprintf("%s%02d", prefix, i), Label: "ok"}
	}
	if fail >= 0 {
		out[fail].Label = "fail"
	}
	return out
}

// gadgetCodes returns the codes in the gadgets table, sorted.
func gadgetCodes(t *testing.T, db *gorm.DB) []string {
	t.Helper()
	var codes []string
	if err := db.Raw(`SELECT code FROM gadgets ORDER BY code`).Scan(&codes).Error; err != nil {
		t.Fatal(err)
	}
	return codes
}

// fixSeq yields rows, without error.
func fixSeq[T any](rows []T) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for _, row := range rows {
			if !yield(row, nil) {
				return
			}
		}
	}
}

// txBegin runs fn in a caller's transaction, the way a caller of the repository would.
type txBegin func(ctx context.Context, db *gorm.DB, fn func(tx *gorm.DB) error) error

var callerTransactions = []struct {
	name  string
	begin txBegin
}{
	{"InTx", func(ctx context.Context, db *gorm.DB, fn func(*gorm.DB) error) error { return repo.InTx(ctx, db, fn) }},
	{"db.Transaction", func(ctx context.Context, db *gorm.DB, fn func(*gorm.DB) error) error {
		return db.WithContext(ctx).Transaction(fn)
	}},
}

// With gorm.Config.DisableNestedTransaction, db.Transaction inside a transaction takes no
// savepoint. A batch write that fails after some of its batches reached the database
// must still leave nothing behind in the caller's transaction, which goes on and commits.
func TestRepositorySavepointWithDisableNestedTransaction(t *testing.T) {
	ctx := context.Background()
	db, _, _ := fixOpen(t, gorm.Config{DisableNestedTransaction: true}, 0, gadgetSchema)
	r := newRepo[Gadget](t, db, repo.Config{BatchSize: 10})
	// 25 rows in batches of 10; the third batch fails on the Go side.
	writes := []struct {
		name  string
		write func(rt *repo.Repository[Gadget]) error
	}{
		{"CreateAll", func(rt *repo.Repository[Gadget]) error { return rt.CreateAll(ctx, gadgets("w", 25, 22)) }},
		{"Copy", func(rt *repo.Repository[Gadget]) error { return rt.Copy(ctx, gadgets("w", 25, 22)) }},
		{"CopySeq", func(rt *repo.Repository[Gadget]) error {
			_, err := rt.CopySeq(ctx, fixSeq(gadgets("w", 25, 22)), nil)
			return err
		}},
		{"CopySeq source error", func(rt *repo.Repository[Gadget]) error {
			seq := iter.Seq2[Gadget, error](func(yield func(Gadget, error) bool) {
				for _, g := range gadgets("w", 25, -1) {
					if !yield(g, nil) {
						return
					}
				}
				yield(Gadget{}, errors.New("source failed"))
			})
			_, err := rt.CopySeq(ctx, seq, nil)
			return err
		}},
		{"Upsert", func(rt *repo.Repository[Gadget]) error {
			_, err := rt.Upsert(ctx, gadgets("w", 25, 22), repo.OnConflict{Columns: []string{"code"}})
			return err
		}},
	}
	for _, caller := range callerTransactions {
		for _, w := range writes {
			t.Run(caller.name+"/"+w.name, func(t *testing.T) {
				if err := db.Exec(`DELETE FROM gadgets`).Error; err != nil {
					t.Fatal(err)
				}
				err := caller.begin(ctx, db, func(tx *gorm.DB) error {
					rt := r.WithTx(tx)
					if err := rt.Create(ctx, &Gadget{Code: "before", Label: "x"}); err != nil {
						return err
					}
					if err := w.write(rt); err == nil {
						t.Errorf("%s: no error", w.name)
					}
					// The caller logs the error and goes on with its transaction.
					return rt.Create(ctx, &Gadget{Code: "z-after", Label: "x"})
				})
				if err != nil {
					t.Fatalf("the caller's transaction after a failed %s: %v", w.name, err)
				}
				if got := gadgetCodes(t, db); !slices.Equal(got, []string{"before", "z-after"}) {
					t.Errorf("committed %d rows %.80q, want only the caller's two", len(got), got)
				}
			})
		}
	}
}
