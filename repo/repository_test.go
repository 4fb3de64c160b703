package repo_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/gorm"
)

// newRepo returns a Repository or fails the test.
func newRepo[T any](t testing.TB, db *gorm.DB, cfg ...repo.Config) *repo.Repository[T] {
	t.Helper()
	var c repo.Config
	if len(cfg) > 0 {
		c = cfg[0]
	}
	r, err := repo.NewWithConfig[T](db, c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// keysOf returns the keys of rows, failing the test on a zero or repeated key.
func keysOf[T any](t testing.TB, r *repo.Repository[T], rows []T) []int64 {
	t.Helper()
	seen := map[int64]bool{}
	keys := make([]int64, len(rows))
	for i := range rows {
		k := r.Key(&rows[i])
		if k == 0 {
			t.Fatalf("row %d has no key", i)
		}
		if seen[k] {
			t.Fatalf("row %d: key %d given twice", i, k)
		}
		seen[k] = true
		keys[i] = k
	}
	return keys
}

func TestNew(t *testing.T) {
	db, _ := open(t)
	if _, err := repo.New[Plain](db); err == nil || !strings.Contains(err.Error(), "Plain") {
		t.Errorf("New[Plain]: %v, want an error naming Plain", err)
	}
	if _, err := repo.New[*Team](db); err == nil {
		t.Error("New[*Team]: no error")
	}
	if _, err := repo.NewWithConfig[Team](db, repo.Config{BatchSize: -1}); err == nil || !strings.Contains(err.Error(), "BatchSize is -1") {
		t.Errorf("Config{BatchSize: -1}: %v, want an error naming BatchSize", err)
	}
	if _, err := repo.NewWithConfig[Team](db, repo.Config{}); err != nil {
		t.Errorf("Config{} (the defaults): %v", err)
	}
	bare, err := gorm.Open(postgresOpen(pgtestDatabase(t)), &gorm.Config{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.New[Team](bare); !errors.Is(err, repo.ErrNoPlugin) {
		t.Errorf("New without the plugin: %v", err)
	}
}

func TestRepositoryCRUD(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Widget](t, db)

	w := Widget{Code: "a", Name: "first"}
	if err := r.Create(ctx, &w); err != nil {
		t.Fatal(err)
	}
	got, err := r.Get(ctx, w.ID)
	if err != nil || got.Name != "first" || got.Size != 7 {
		t.Fatalf("Get: %+v, %v", got, err)
	}
	_, err = r.Get(ctx, w.ID+1)
	if !errors.Is(err, repo.ErrNotFound) || !errors.Is(err, gorm.ErrRecordNotFound) {
		t.Errorf("Get of a missing key: %v", err)
	}

	got.Name = "renamed"
	if err := r.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if again, _ := r.Get(ctx, w.ID); again.Name != "renamed" {
		t.Errorf("after Update: %q", again.Name)
	}
	if err := r.Update(ctx, &Widget{ID: w.ID + 1, Code: "zz", Name: "ghost"}); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("Update of a missing key: %v", err)
	}
	if err := r.Update(ctx, &Widget{Name: "no key"}); err == nil {
		t.Error("Update without a key: no error")
	}

	s := Widget{Code: "b", Name: "saved"}
	if err := r.Save(ctx, &s); err != nil || s.ID == 0 {
		t.Fatalf("Save of a new row: key %d, %v", s.ID, err)
	}
	s.Name = "saved again"
	if err := r.Save(ctx, &s); err != nil {
		t.Fatal(err)
	}
	explicit := Widget{ID: 99_000_000, Code: "c", Name: "explicit"}
	if err := r.Save(ctx, &explicit); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Count(ctx); n != 3 {
		t.Errorf("Count %d, want 3", n)
	}

	many, err := r.GetMany(ctx, []int64{explicit.ID, 12345, w.ID, explicit.ID, s.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(many) != 3 || many[0].ID != explicit.ID || many[1].ID != w.ID || many[2].ID != s.ID || many[2].Name != "saved again" {
		t.Errorf("GetMany: %+v", many)
	}

	if err := r.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, s.ID); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("second Delete: %v", err)
	}
	if n, _ := r.Count(ctx); n != 2 {
		t.Errorf("Count %d after Delete, want 2", n)
	}
}

func TestRepositoryList(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Team](t, db)
	rows := teams(95)
	if err := r.CreateAll(ctx, rows); err != nil {
		t.Fatal(err)
	}
	var listed []Team
	var after int64
	for {
		page, err := r.List(ctx, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, page...)
		if len(page) < 10 {
			break
		}
		after = r.Key(&page[len(page)-1])
	}
	if len(listed) != 95 {
		t.Fatalf("listed %d rows, want 95", len(listed))
	}
	for i := 1; i < len(listed); i++ {
		if listed[i].ID <= listed[i-1].ID {
			t.Fatalf("not in key order at %d", i)
		}
	}
	if _, err := r.List(ctx, 0, 0); err == nil {
		t.Error("List with limit 0: no error")
	}
}

func TestRepositoryDuplicateKeyError(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Widget](t, db)
	if err := r.Create(ctx, &Widget{Code: "dup", Name: "one"}); err != nil {
		t.Fatal(err)
	}
	err := r.Create(ctx, &Widget{Code: "dup", Name: "two"})
	var dup *repo.DuplicateKeyError
	if !errors.As(err, &dup) {
		t.Fatalf("Create of a duplicate: %v", err)
	}
	var pgErr *pgconn.PgError
	if dup.Constraint != "widgets_code_key" || dup.Table != "widgets" || !strings.Contains(dup.Detail, "(code)=(dup)") ||
		!errors.As(err, &pgErr) || !errors.Is(err, gorm.ErrDuplicatedKey) {
		t.Errorf("DuplicateKeyError %+v", dup)
	}
	for name, write := range map[string]func() error{
		"CreateAll": func() error { return r.CreateAll(ctx, []Widget{{Code: "dup"}}) },
		"Copy":      func() error { return r.Copy(ctx, []Widget{{Code: "dup"}}) },
		"Save":      func() error { return r.Save(ctx, &Widget{Code: "dup"}) },
	} {
		if err := write(); !errors.As(err, &dup) || dup.Constraint != "widgets_code_key" {
			t.Errorf("%s: %v, want a *DuplicateKeyError", name, err)
		}
	}
}

func TestRepositoryCreateAllParameterLimit(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	rec := recordCreates(t, db)                                // not the logger: it would expand 65,535 parameters per statement
	r := newRepo[Wide](t, db, repo.Config{BatchSize: 100_000}) // asks for far too many
	rows := newWides(20_000)
	rec.take("")
	if err := r.CreateAll(ctx, rows); err != nil {
		t.Fatal(err)
	}
	keysOf(t, r, rows)
	perBatch := 65535 / wideColumns
	want := (len(rows) + perBatch - 1) / perBatch
	if got := len(rec.take(`INSERT INTO "wides"`)); got != want {
		t.Errorf("%d INSERTs, want %d of at most %d rows", got, want, perBatch)
	}
	if n := count(t, db, "wides"); n != 20_000 {
		t.Errorf("%d rows, want 20000", n)
	}
	var sum int64
	if err := db.Raw(`SELECT sum(n38) FROM wides`).Scan(&sum).Error; err != nil || sum != 38*19_999*20_000/2 {
		t.Errorf("sum(n38) = %d, %v", sum, err)
	}
}

func TestRepositoryCreateAllAllOrNothing(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Widget](t, db, repo.Config{BatchSize: 1000})
	rows := widgets("w", 20_000)
	rows[15_000].Code = rows[3].Code // fails in the 16th batch
	err := r.CreateAll(ctx, rows)
	var dup *repo.DuplicateKeyError
	if !errors.As(err, &dup) {
		t.Fatalf("CreateAll: %v", err)
	}
	if n := count(t, db, "widgets"); n != 0 {
		t.Errorf("%d rows written by a failed CreateAll", n)
	}
	for i := range rows {
		if rows[i].ID != 0 {
			t.Fatalf("row %d keeps key %d after the failed CreateAll", i, rows[i].ID)
		}
	}
}

func TestRepositoryCallerTransaction(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Team](t, db)
	boom := errors.New("boom")

	// Rolled back: nothing stays.
	err := db.Transaction(func(tx *gorm.DB) error {
		rt := r.WithTx(tx)
		if err := rt.CreateAll(ctx, teams(30)); err != nil {
			return err
		}
		if n, _ := rt.Count(ctx); n != 30 {
			t.Errorf("Count in the transaction: %d", n)
		}
		return boom
	})
	if !errors.Is(err, boom) || count(t, db, "teams") != 0 {
		t.Fatalf("after rollback: %v, %d rows", err, count(t, db, "teams"))
	}

	// A failed CreateAll inside a transaction rolls back to its savepoint only.
	err = db.Transaction(func(tx *gorm.DB) error {
		rt := r.WithTx(tx)
		if err := rt.Create(ctx, &Team{Name: "kept"}); err != nil {
			return err
		}
		bad := teams(3)
		bad[2].ID = 1 // a key that will collide
		bad[0].ID = 1
		if err := rt.CreateAll(ctx, bad); err == nil {
			t.Error("CreateAll of colliding keys: no error")
		}
		return rt.Create(ctx, &Team{Name: "after"})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "teams"); n != 2 {
		t.Errorf("%d teams, want 2", n)
	}
}
