package repo_test

import (
	"context"
	"testing"
	"time"

	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/gorm"
)

// Widget.Stamp has a database default (default:now()). A row that leaves it zero gets
// the default, as GORM's create writes DEFAULT for it, even when a neighbouring row in
// the same batch sets it.

var (
	stampSet   = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	stampOther = time.Date(2002, 3, 4, 5, 6, 7, 0, time.UTC)
	// recent is before any now() the database can return while the tests run.
	recent = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
)

// mixedStamps returns n widgets; rows 1 and 4 (and every third after) set Stamp.
func mixedStamps(prefix string, n int) []Widget {
	rows := widgets(prefix, n)
	for i := 1; i < n; i += 3 {
		rows[i].Stamp = stampSet
	}
	return rows
}

// checkStamps checks that every row that set Stamp has it in the database and every row
// that left it zero has the database's default.
func checkStamps(t *testing.T, db *gorm.DB, rows []Widget) {
	t.Helper()
	inDB := dbKeys(t, db)
	for i, w := range rows {
		got, ok := inDB[w.Code]
		if !ok {
			t.Fatalf("row %d (%s) is not in the database", i, w.Code)
		}
		if w.Stamp.IsZero() {
			if !got.Stamp.After(recent) {
				t.Errorf("row %d (%s) left stamp zero: %v in the database, want the default now()", i, w.Code, got.Stamp)
			}
		} else if !got.Stamp.Equal(w.Stamp) {
			t.Errorf("row %d (%s): stamp %v in the database, want %v", i, w.Code, got.Stamp, w.Stamp)
		}
	}
}

func TestCopyPerRowDatabaseDefault(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		write func(r *repo.Repository[Widget], db *gorm.DB, rows []Widget) error
	}{
		{"Copy", func(r *repo.Repository[Widget], _ *gorm.DB, rows []Widget) error { return r.Copy(ctx, rows) }},
		{"Copy in InTx", func(r *repo.Repository[Widget], db *gorm.DB, rows []Widget) error {
			return repo.InTx(ctx, db, func(tx *gorm.DB) error { return r.WithTx(tx).Copy(ctx, rows) })
		}},
		{"Copy in db.Transaction", func(r *repo.Repository[Widget], db *gorm.DB, rows []Widget) error {
			return db.Transaction(func(tx *gorm.DB) error { return r.WithTx(tx).Copy(ctx, rows) })
		}},
		{"CopySeq", func(r *repo.Repository[Widget], _ *gorm.DB, rows []Widget) error {
			_, err := r.CopySeq(ctx, func(yield func(Widget, error) bool) {
				for i := range rows {
					if !yield(rows[i], nil) {
						return
					}
				}
			}, nil)
			return err
		}},
		{"CopySeq in db.Transaction", func(r *repo.Repository[Widget], db *gorm.DB, rows []Widget) error {
			return db.Transaction(func(tx *gorm.DB) error {
				_, err := r.WithTx(tx).CopySeq(ctx, func(yield func(Widget, error) bool) {
					for i := range rows {
						if !yield(rows[i], nil) {
							return
						}
					}
				}, nil)
				return err
			})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, _ := open(t)
			r := newRepo[Widget](t, db, repo.Config{BatchSize: 4})
			rows := mixedStamps("d", 11)
			if err := c.write(r, db, rows); err != nil {
				t.Fatal(err)
			}
			if n := count(t, db, "widgets"); n != int64(len(rows)) {
				t.Fatalf("%d widgets, want %d", n, len(rows))
			}
			checkStamps(t, db, rows)
		})
	}
}

func TestUpsertPerRowDatabaseDefault(t *testing.T) {
	upsertCases(t, func(t *testing.T, db *gorm.DB, upsert func(context.Context, []Widget, repo.OnConflict) (repo.UpsertResult, error)) {
		ctx := context.Background()
		existing := []Widget{{Code: "a", Name: "old a", Stamp: stampOther}, {Code: "b", Name: "old b", Stamp: stampOther}}
		if err := db.Create(&existing).Error; err != nil {
			t.Fatal(err)
		}

		// Inserted rows: each gets its own stamp or the default.
		rows := mixedStamps("n", 10)
		res, err := upsert(ctx, rows, repo.OnConflict{Columns: []string{"code"}})
		if err != nil {
			t.Fatal(err)
		}
		if res.InsertedCount() != len(rows) {
			t.Fatalf("%d inserted, want %d", res.InsertedCount(), len(rows))
		}
		checkStamps(t, db, rows)

		// UpdateAll updates a column with a database default from the rows that write
		// it; a row that leaves it zero keeps the stored value.
		all := []Widget{{Code: "a", Name: "new a"}, {Code: "b", Name: "new b", Stamp: stampSet}, {Code: "c", Name: "c"}, {Code: "d", Name: "d", Stamp: stampSet}}
		if _, err := upsert(ctx, all, repo.OnConflict{Columns: []string{"code"}, UpdateAll: true}); err != nil {
			t.Fatal(err)
		}
		inDB := dbKeys(t, db)
		if a := inDB["a"]; a.Name != "new a" || !a.Stamp.Equal(stampOther) {
			t.Errorf("a after UpdateAll: name %q, stamp %v; want %q and the stored %v", a.Name, a.Stamp, "new a", stampOther)
		}
		if b := inDB["b"]; b.Name != "new b" || !b.Stamp.Equal(stampSet) {
			t.Errorf("b after UpdateAll: name %q, stamp %v; want %q, %v", b.Name, b.Stamp, "new b", stampSet)
		}
		checkStamps(t, db, all[2:])
		for i, w := range all {
			if w.ID != dbKeys(t, db)[w.Code].ID {
				t.Errorf("row %d (%s): key %d, not the database's", i, w.Code, w.ID)
			}
		}

		// Update naming stamp sets it from each row: its value, or the default (EXCLUDED,
		// as GORM's DoUpdates), so a row that leaves it zero refreshes it.
		named := []Widget{{Code: "a", Name: "a"}, {Code: "b", Name: "b", Stamp: stampSet}, {Code: "e", Name: "e"}, {Code: "f", Name: "f", Stamp: stampSet}}
		if _, err := upsert(ctx, named, repo.OnConflict{Columns: []string{"code"}, Update: []string{"stamp"}}); err != nil {
			t.Fatal(err)
		}
		checkStamps(t, db, named)
		for i, w := range named {
			if w.ID != dbKeys(t, db)[w.Code].ID {
				t.Errorf("row %d (%s): key %d, not the database's", i, w.Code, w.ID)
			}
		}
	})
}
