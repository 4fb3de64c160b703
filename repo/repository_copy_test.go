package repo_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"testing"

	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/gorm"
)

// checkWidgetsInDB checks that the database holds exactly rows, each under its key.
func checkWidgetsInDB(t *testing.T, db *gorm.DB, rows []Widget) {
	t.Helper()
	byCode := map[string]int64{}
	for _, w := range rows {
		if w.ID == 0 {
			t.Fatalf("widget %s has no key", w.Code)
		}
		byCode[w.Code] = w.ID
	}
	var got []Widget
	if err := db.Find(&got).Error; err != nil {
		t.Fatal(err)
	}
	if len(got) != len(byCode) {
		t.Fatalf("%d widgets in the database, want %d", len(got), len(byCode))
	}
	for _, g := range got {
		if byCode[g.Code] != g.ID {
			t.Fatalf("widget %s: key %d in the database, %d in the slice", g.Code, g.ID, byCode[g.Code])
		}
	}
}

func TestRepositoryCopy(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	db, _ := open(t, logTo(rec))
	r := newRepo[Widget](t, db)
	rows := widgets("c", 10_000)
	note := "a note"
	rows[5].Note = &note
	rows[6].ID = 9_000_000_000 // an explicit key is kept
	rec.take("")
	if err := r.Copy(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if copies := rec.take("COPY"); len(copies) != 1 || !strings.HasPrefix(copies[0], `COPY "widgets" ("id", "code", "name", "note", "size", "created_at") FROM STDIN`) {
		t.Errorf("COPY statements: %q", copies)
	}
	keysOf(t, r, rows)
	if rows[6].ID != 9_000_000_000 {
		t.Errorf("explicit key replaced by %d", rows[6].ID)
	}
	checkWidgetsInDB(t, db, rows)
	got, err := r.Get(ctx, rows[5].ID)
	if err != nil {
		t.Fatal(err)
	}
	// default:7 and autoCreateTime filled in as GORM would; the database default of stamp applies.
	if got.Note == nil || *got.Note != note || got.Size != 7 || rows[5].Size != 7 || got.CreatedAt.IsZero() || got.Stamp.IsZero() {
		t.Errorf("copied row %+v", got)
	}
}

func TestRepositoryCopyAllOrNothing(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Widget](t, db)
	if err := r.Create(ctx, &Widget{Code: "before", Name: "x"}); err != nil {
		t.Fatal(err)
	}
	rows := widgets("c", 20_000)
	rows[15_000].Name = "nul\x00byte"
	if err := r.Copy(ctx, rows); err == nil {
		t.Fatal("Copy of a NUL byte: no error")
	}
	if n := count(t, db, "widgets"); n != 1 {
		t.Errorf("%d widgets after a failed Copy, want 1", n)
	}
	for i := range rows {
		if rows[i].ID != 0 {
			t.Fatalf("row %d keeps key %d after the failed Copy", i, rows[i].ID)
		}
	}
	rows[15_000].Name = "fixed"
	rows[19_999].Code = "before"
	var dup *repo.DuplicateKeyError
	if err := r.Copy(ctx, rows); !errors.As(err, &dup) {
		t.Fatalf("Copy of a duplicate: %v", err)
	}
	if n := count(t, db, "widgets"); n != 1 {
		t.Errorf("%d widgets after a failed Copy, want 1", n)
	}
}

// widgetSeq yields n widgets, then failAt's error if failAt >= 0 (at that position).
func widgetSeq(prefix string, n, failAt int) iter.Seq2[Widget, error] {
	return func(yield func(Widget, error) bool) {
		for i := 0; i < n; i++ {
			if i == failAt {
				yield(Widget{}, errors.New("source failed"))
				return
			}
			if !yield(Widget{Code: fmt.Sprintf("%s-%d", prefix, i), Name: "streamed"}, nil) {
				return
			}
		}
	}
}

func TestRepositoryCopySeq(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	db, _ := open(t, logTo(rec))
	r := newRepo[Widget](t, db, repo.Config{BatchSize: 4000})
	var seen []Widget
	var batches int
	rec.take("")
	n, err := r.CopySeq(ctx, widgetSeq("s", 25_000, -1), func(batch []Widget) error {
		batches++
		if len(batch) > 4000 {
			t.Errorf("batch of %d rows", len(batch))
		}
		seen = append(seen, batch...)
		return nil
	})
	if err != nil || n != 25_000 {
		t.Fatalf("CopySeq: %d, %v", n, err)
	}
	// Segments of 4000, 8000 and 13000 rows, each handed to the callback in batches
	// of at most 4000.
	if copies := len(rec.take("COPY")); batches != 7 || copies != 3 {
		t.Errorf("%d batches and %d COPYs, want 7 and 3", batches, copies)
	}
	keysOf(t, r, seen)
	checkWidgetsInDB(t, db, seen)

	// A failing source, or a failing callback, leaves the table as it was.
	if n, err := r.CopySeq(ctx, widgetSeq("f", 10_000, 9000), nil); err == nil || n != 0 {
		t.Errorf("CopySeq of a failing source: %d, %v", n, err)
	}
	stop := errors.New("stop")
	calls := 0
	_, err = r.CopySeq(ctx, widgetSeq("g", 10_000, -1), func([]Widget) error {
		if calls++; calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("CopySeq with a failing callback: %v", err)
	}
	if got := count(t, db, "widgets"); got != 25_000 {
		t.Errorf("%d widgets, want 25000", got)
	}
}

func TestRepositoryCopyInTransactions(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	db, _ := open(t, logTo(rec))
	r := newRepo[Widget](t, db, repo.Config{BatchSize: 300})
	boom := errors.New("boom")

	// InTx: COPY runs on the transaction's connection, inside it.
	rec.take("")
	var kept []Widget
	err := repo.InTx(ctx, db, func(tx *gorm.DB) error {
		rt := r.WithTx(tx)
		rows := widgets("intx", 1000)
		if err := rt.Copy(ctx, rows); err != nil {
			return err
		}
		if n, err := rt.Count(ctx); n != 1000 || err != nil {
			t.Errorf("Count inside InTx: %d, %v", n, err)
		}
		kept = rows
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.take("COPY")) != 1 {
		t.Error("Copy in InTx did not COPY")
	}
	err = repo.InTx(ctx, db, func(tx *gorm.DB) error {
		if err := r.WithTx(tx).Copy(ctx, widgets("rolled-back", 500)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	checkWidgetsInDB(t, db, kept)

	// db.Transaction hides its connection: unnest INSERTs, in the transaction.
	rec.take("")
	err = db.Transaction(func(tx *gorm.DB) error {
		rt := r.WithTx(tx)
		rows := widgets("plain", 1000)
		if err := rt.Copy(ctx, rows); err != nil {
			return err
		}
		if _, err := rt.CopySeq(ctx, widgetSeq("plain-seq", 700, -1), nil); err != nil {
			return err
		}
		kept = append(kept, rows...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if stmts := rec.take(`INSERT INTO "widgets"`); len(stmts) != 4+3 || !strings.Contains(stmts[0], "unnest(") {
		t.Errorf("%d INSERTs in db.Transaction, want 7 batches of at most 300 rows: %.200q", len(stmts), stmts)
	}
	if got := count(t, db, "widgets"); got != 2700 {
		t.Errorf("%d widgets, want 2700", got)
	}
	err = db.Transaction(func(tx *gorm.DB) error {
		if err := r.WithTx(tx).Copy(ctx, widgets("rolled-back", 500)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || count(t, db, "widgets") != 2700 {
		t.Errorf("rollback of db.Transaction: %v", err)
	}
}

func TestRepositoryOneConnection(t *testing.T) {
	// Every method inside a transaction that holds the pool's only connection, and
	// outside one: none may wait for a second connection.
	ctx := context.Background()
	db, _ := open(t, oneConn)
	r := newRepo[Widget](t, db, repo.Config{BatchSize: 120})
	var all []Widget
	write := func(rt *repo.Repository[Widget], prefix string) error {
		a := widgets(prefix+"a", 130)
		if err := rt.CreateAll(ctx, a); err != nil {
			return fmt.Errorf("CreateAll: %w", err)
		}
		b := widgets(prefix+"b", 130)
		if err := rt.Copy(ctx, b); err != nil {
			return fmt.Errorf("Copy: %w", err)
		}
		var c []Widget
		if _, err := rt.CopySeq(ctx, widgetSeq(prefix+"c", 250, -1), func(batch []Widget) error {
			c = append(c, batch...)
			return nil
		}); err != nil {
			return fmt.Errorf("CopySeq: %w", err)
		}
		d := append(widgets(prefix+"d", 130), a[:10]...) // 10 already there
		res, err := rt.Upsert(ctx, d, repo.OnConflict{Columns: []string{"code"}})
		if err != nil {
			return fmt.Errorf("Upsert: %w", err)
		}
		if res.InsertedCount() != 130 || d[130].ID != a[0].ID {
			return fmt.Errorf("Upsert: %d inserted, key %d for %d", res.InsertedCount(), d[130].ID, a[0].ID)
		}
		d = d[:130]
		e := Widget{Code: prefix + "e", Name: "one"}
		if err := rt.Save(ctx, &e); err != nil {
			return fmt.Errorf("Save: %w", err)
		}
		all = append(all, a...)
		all = append(all, b...)
		all = append(all, c...)
		all = append(all, d...)
		all = append(all, e)
		return nil
	}
	if err := write(r, "pool"); err != nil {
		t.Fatal(err)
	}
	if err := repo.InTx(ctx, db, func(tx *gorm.DB) error { return write(r.WithTx(tx), "intx") }); err != nil {
		t.Fatal(err)
	}
	if err := db.Transaction(func(tx *gorm.DB) error { return write(r.WithTx(tx), "gormtx") }); err != nil {
		t.Fatal(err)
	}
	checkWidgetsInDB(t, db, all)
}

func TestRepositoryConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Widget](t, db, repo.Config{BatchSize: 250})
	const goroutines = 8
	results := make([][]Widget, goroutines)
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := widgets(fmt.Sprint("all", g), 600)
			if errs[g] = r.CreateAll(ctx, a); errs[g] != nil {
				return
			}
			b := widgets(fmt.Sprint("copy", g), 700)
			if errs[g] = r.Copy(ctx, b); errs[g] != nil {
				return
			}
			var c []Widget
			_, errs[g] = r.CopySeq(ctx, widgetSeq(fmt.Sprint("seq", g), 800, -1), func(batch []Widget) error {
				c = append(c, batch...)
				return nil
			})
			results[g] = append(append(a, b...), c...)
		}()
	}
	wg.Wait()
	var all []Widget
	for g := range goroutines {
		if errs[g] != nil {
			t.Fatal(errs[g])
		}
		all = append(all, results[g]...)
	}
	keysOf(t, r, all)
	checkWidgetsInDB(t, db, all)
}
