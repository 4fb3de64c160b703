package repo_test

import (
	"context"
	"errors"
	"testing"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/internal/pgtest"
	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/gorm"
)

// A keyed model's table dropped and created again by GORM's own db.AutoMigrate (what
// GORM's TestMigrate and test suites that reset their schema do) comes back with a
// bigserial sequence at INCREMENT 1. Writes go on: the plugin adopts the new sequence and
// every struct holds its row's key, on the pool and inside a caller's transaction. A
// changed INCREMENT on the sequence the writers are still pinned to keeps stopping them.
func TestTableRecreatedByGORMAutoMigrate(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	db, _, sqlDB := openWith(t, dsn, repo.PluginConfig{})
	if err := repo.AutoMigrate(ctx, db, &Shelf{}, &Book{}); err != nil {
		t.Fatal(err)
	}
	// More shelves than the allocator holds, prefetched headroom included, so every
	// write needs a refill.
	create := func(tx *gorm.DB, name string) []Shelf {
		t.Helper()
		shelves := make([]Shelf, 2500)
		for i := range shelves {
			shelves[i] = Shelf{Name: name, Books: []Book{{Title: name}}}
		}
		if err := tx.Create(&shelves).Error; err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return shelves
	}
	check := func(shelves []Shelf) {
		t.Helper()
		for _, s := range shelves {
			if got := queryOne[string](t, sqlDB, `SELECT name FROM shelves WHERE id = $1`, s.ID); got != s.Name {
				t.Fatalf("shelf %s has key %d, but that row is %q", s.Name, s.ID, got)
			}
			for _, b := range s.Books {
				if got := queryOne[int64](t, sqlDB, `SELECT shelf_id FROM books WHERE id = $1`, b.ID); got != int64(s.ID) {
					t.Fatalf("book %d of shelf %d has shelf_id %d", b.ID, s.ID, got)
				}
			}
		}
	}
	check(create(db, "before"))

	for _, inTx := range []bool{true, false} { // on the pool last: the writers are then pinned to the new sequence
		if err := db.Migrator().DropTable(&Book{}, &Shelf{}); err != nil {
			t.Fatal(err)
		}
		if err := db.AutoMigrate(&Shelf{}, &Book{}); err != nil { // GORM's own: INCREMENT 1
			t.Fatal(err)
		}
		if inc := queryOne[int64](t, sqlDB, `SELECT increment_by FROM pg_sequences WHERE sequencename = 'shelves_id_seq'`); inc != 1 {
			t.Fatalf("GORM's AutoMigrate made INCREMENT %d, the test expects 1", inc)
		}
		if inTx {
			var shelves []Shelf
			if err := db.Transaction(func(tx *gorm.DB) error { shelves = create(tx, "in-tx"); return nil }); err != nil {
				t.Fatal(err)
			}
			check(shelves)
			continue
		}
		check(create(db, "after"))
		if inc := queryOne[int64](t, sqlDB, `SELECT increment_by FROM pg_sequences WHERE sequencename = 'shelves_id_seq'`); inc != 50 {
			t.Errorf("after the write the sequence has INCREMENT %d, want 50", inc)
		}
	}

	// The same sequence, its INCREMENT changed under the running writers: they stop.
	mustExecSQL(t, sqlDB, `ALTER SEQUENCE shelves_id_seq INCREMENT BY 7`)
	var err error
	for i := 0; i < 20 && err == nil; i++ { // past the keys already held
		batch := make([]Shelf, 500)
		for j := range batch {
			batch[j].Name = "stopped"
		}
		err = db.Create(&batch).Error
	}
	if !errors.Is(err, idgen.ErrIncrementMismatch) {
		t.Fatalf("after ALTER … INCREMENT 7 on the pinned sequence: %v, want ErrIncrementMismatch", err)
	}
	if inc := queryOne[int64](t, sqlDB, `SELECT increment_by FROM pg_sequences WHERE sequencename = 'shelves_id_seq'`); inc != 7 {
		t.Errorf("the plugin changed the INCREMENT of a sequence it was pinned to: %d", inc)
	}
}

// A caller's transaction that adopted a recreated sequence and then rolled back undoes
// the adoption and every nextval after it. No key it reserved may be handed out again:
// later writers, in this process and in another, adopt again and write without a
// duplicate key.
func TestRecreatedAdoptionRolledBack(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	db, _, sqlDB := openWith(t, dsn, repo.PluginConfig{})
	other, _, _ := openWith(t, dsn, repo.PluginConfig{}) // another process's plugin
	if err := repo.AutoMigrate(ctx, db, &Shelf{}, &Book{}); err != nil {
		t.Fatal(err)
	}
	shelves := func(n int, name string) []Shelf {
		s := make([]Shelf, n)
		for i := range s {
			s[i] = Shelf{Name: name, Books: []Book{{Title: name}}}
		}
		return s
	}
	for _, w := range []*gorm.DB{db, other} {
		if err := w.Create(&[]Shelf{{Name: "warm", Books: []Book{{Title: "warm"}}}}).Error; err != nil { // both allocators made
			t.Fatal(err)
		}
	}
	if err := db.Migrator().DropTable(&Book{}, &Shelf{}); err != nil {
		t.Fatal(err)
	}
	if err := db.AutoMigrate(&Shelf{}, &Book{}); err != nil {
		t.Fatal(err)
	}
	rolledBack := errors.New("roll back")
	err := db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(shelvesPtr(shelves(2500, "undone"))).Error; err != nil {
			return err
		}
		return rolledBack
	})
	if !errors.Is(err, rolledBack) {
		t.Fatalf("transaction: %v", err)
	}
	if inc := queryOne[int64](t, sqlDB, `SELECT increment_by FROM pg_sequences WHERE sequencename = 'shelves_id_seq'`); inc != 1 {
		t.Fatalf("after the rollback the sequence has INCREMENT %d, want 1 (the adoption undone)", inc)
	}
	for i, w := range []*gorm.DB{db, other, db, other} {
		if err := w.Create(shelvesPtr(shelves(2500, "kept"))).Error; err != nil {
			t.Fatalf("write %d after the rolled-back adoption: %v", i, err)
		}
	}
	if n := queryOne[int64](t, sqlDB, `SELECT count(*) FROM shelves`); n != 4*2500 {
		t.Fatalf("%d shelves, want %d", n, 4*2500)
	}
}

func shelvesPtr(s []Shelf) *[]Shelf { return &s }

// A table that GORM's own db.AutoMigrate created (bigserial, INCREMENT 1, no seqrepo
// marker) is adopted by the first create that needs its keys, in a caller's transaction
// as on the pool; a sequence whose INCREMENT someone set on purpose is not.
func TestFreshGORMTableAdoptedOnFirstUse(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db, _, sqlDB := openWith(t, dsn, repo.PluginConfig{})
	if err := db.AutoMigrate(&Shelf{}, &Book{}); err != nil { // GORM's own: INCREMENT 1
		t.Fatal(err)
	}
	var shelves []Shelf
	if err := db.Transaction(func(tx *gorm.DB) error {
		shelves = []Shelf{{Name: "first", Books: []Book{{Title: "a"}, {Title: "b"}}}}
		return tx.Create(&shelves).Error
	}); err != nil {
		t.Fatalf("first create, in a transaction: %v", err)
	}
	more := []Shelf{{Name: "second", Books: []Book{{Title: "c"}}}}
	if err := db.Create(&more).Error; err != nil {
		t.Fatalf("second create, on the pool: %v", err)
	}
	for _, s := range append(shelves, more...) {
		if got := queryOne[string](t, sqlDB, `SELECT name FROM shelves WHERE id = $1`, s.ID); got != s.Name {
			t.Fatalf("shelf %s has key %d, but that row is %q", s.Name, s.ID, got)
		}
		for _, b := range s.Books {
			if got := queryOne[int64](t, sqlDB, `SELECT shelf_id FROM books WHERE id = $1`, b.ID); got != int64(s.ID) {
				t.Fatalf("book %d of shelf %d has shelf_id %d", b.ID, s.ID, got)
			}
		}
	}
	for _, seq := range []string{"shelves_id_seq", "books_id_seq"} {
		if inc := queryOne[int64](t, sqlDB, `SELECT increment_by FROM pg_sequences WHERE sequencename = $1`, seq); inc != 50 {
			t.Errorf("%s has INCREMENT %d after the first writes, want 50", seq, inc)
		}
	}

	// INCREMENT 7, set on purpose: reported, not changed.
	mustExecSQL(t, sqlDB, `CREATE TABLE crate7 (id bigserial PRIMARY KEY, name text)`, `ALTER SEQUENCE crate7_id_seq INCREMENT BY 7`)
	err := db.Create(&Crate7{Name: "x"}).Error
	if !errors.Is(err, idgen.ErrIncrementMismatch) {
		t.Fatalf("create on a sequence at INCREMENT 7: %v, want ErrIncrementMismatch", err)
	}
	if inc := queryOne[int64](t, sqlDB, `SELECT increment_by FROM pg_sequences WHERE sequencename = 'crate7_id_seq'`); inc != 7 {
		t.Errorf("the plugin changed an INCREMENT set on purpose to %d", inc)
	}
}

// Crate7's sequence has an INCREMENT set on purpose (TestFreshGORMTableAdoptedOnFirstUse).
type Crate7 struct {
	ID   int64 `gorm:"primaryKey" idgen:"allocationSize:50"`
	Name string
}

func (Crate7) TableName() string { return "crate7" }
