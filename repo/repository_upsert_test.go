package repo_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/gorm"
)

// dbKeys returns code → (key, name) of every widget in the database.
func dbKeys(t *testing.T, db *gorm.DB) map[string]Widget {
	t.Helper()
	var got []Widget
	if err := db.Find(&got).Error; err != nil {
		t.Fatal(err)
	}
	out := map[string]Widget{}
	for _, w := range got {
		out[w.Code] = w
	}
	return out
}

// upsertCases runs f against a repository forced to use unnest, one as it comes (the
// temporary table filled with COPY, in Upsert's own transaction), one using the
// temporary table inside InTx, and one in a db.Transaction, which hides its connection
// (unnest).
func upsertCases(t *testing.T, f func(t *testing.T, db *gorm.DB, upsert func(context.Context, []Widget, repo.OnConflict) (repo.UpsertResult, error))) {
	t.Run("unnest", func(t *testing.T) {
		db, _ := open(t)
		r := newRepo[Widget](t, db, repo.Config{BatchSize: 4})
		repo.UpsertViaUnnest(r)
		f(t, db, r.Upsert)
	})
	t.Run("default", func(t *testing.T) {
		db, _ := open(t)
		r := newRepo[Widget](t, db, repo.Config{BatchSize: 4})
		f(t, db, r.Upsert)
	})
	t.Run("temp table", func(t *testing.T) {
		db, _ := open(t)
		r := newRepo[Widget](t, db, repo.Config{BatchSize: 4})
		repo.UpsertViaTempTable(r)
		f(t, db, func(ctx context.Context, rows []Widget, on repo.OnConflict) (res repo.UpsertResult, err error) {
			err = repo.InTx(ctx, db, func(tx *gorm.DB) error {
				res, err = r.WithTx(tx).Upsert(ctx, rows, on)
				return err
			})
			return res, err
		})
	})
	t.Run("db.Transaction", func(t *testing.T) {
		db, _ := open(t)
		r := newRepo[Widget](t, db, repo.Config{BatchSize: 4})
		f(t, db, func(ctx context.Context, rows []Widget, on repo.OnConflict) (res repo.UpsertResult, err error) {
			err = db.Transaction(func(tx *gorm.DB) error {
				res, err = r.WithTx(tx).Upsert(ctx, rows, on)
				return err
			})
			return res, err
		})
	})
}

func TestRepositoryUpsertDoNothing(t *testing.T) {
	upsertCases(t, func(t *testing.T, db *gorm.DB, upsert func(context.Context, []Widget, repo.OnConflict) (repo.UpsertResult, error)) {
		ctx := context.Background()
		existing := []Widget{{Code: "a", Name: "old a"}, {Code: "b", Name: "old b"}}
		if err := db.Create(&existing).Error; err != nil {
			t.Fatal(err)
		}
		rows := []Widget{
			{Code: "a", Name: "new a"}, {Code: "c", Name: "c1"}, {Code: "c", Name: "c2"},
			{Code: "d", Name: "d"}, {Code: "b", Name: "new b"}, {Code: "a", Name: "a again"},
			{Code: "c", Name: "c3"}, {Code: "e", Name: "e"}, {Code: "e", Name: "e2"},
		}
		res, err := upsert(ctx, rows, repo.OnConflict{Columns: []string{"Code"}})
		if err != nil {
			t.Fatal(err)
		}
		want := []bool{false, true, false, true, false, false, false, true, false}
		if !slices.Equal(res.Inserted, want) || res.InsertedCount() != 3 {
			t.Errorf("Inserted %v, want %v", res.Inserted, want)
		}
		inDB := dbKeys(t, db)
		if len(inDB) != 5 {
			t.Fatalf("%d widgets, want 5", len(inDB))
		}
		for i, w := range rows {
			if w.ID != inDB[w.Code].ID {
				t.Errorf("row %d (%s): key %d, %d in the database", i, w.Code, w.ID, inDB[w.Code].ID)
			}
		}
		if inDB["a"].Name != "old a" || inDB["c"].Name != "c1" || inDB["e"].Name != "e" {
			t.Errorf("DO NOTHING changed rows or kept the wrong duplicate: %+v", inDB)
		}
		if inDB["a"].ID != existing[0].ID {
			t.Error("existing key changed")
		}
	})
}

func TestRepositoryUpsertDoUpdate(t *testing.T) {
	upsertCases(t, func(t *testing.T, db *gorm.DB, upsert func(context.Context, []Widget, repo.OnConflict) (repo.UpsertResult, error)) {
		ctx := context.Background()
		existing := []Widget{{Code: "a", Name: "old a", Size: 1}}
		if err := db.Create(&existing).Error; err != nil {
			t.Fatal(err)
		}
		rows := []Widget{
			{Code: "a", Name: "a1", Size: 2}, {Code: "n", Name: "n1"}, {Code: "a", Name: "a2", Size: 3}, {Code: "n", Name: "n2"},
			{Code: "m", Name: "m"},
		}
		res, err := upsert(ctx, rows, repo.OnConflict{Columns: []string{"code"}, Update: []string{"name"}})
		if err != nil {
			t.Fatal(err)
		}
		// The last duplicate's values win; the first row with a new key is the inserted one.
		if want := []bool{false, true, false, false, true}; !slices.Equal(res.Inserted, want) {
			t.Errorf("Inserted %v, want %v", res.Inserted, want)
		}
		inDB := dbKeys(t, db)
		if inDB["a"].Name != "a2" || inDB["a"].Size != 1 || inDB["n"].Name != "n2" || len(inDB) != 3 {
			t.Errorf("after DO UPDATE: %+v", inDB)
		}
		for i, w := range rows {
			if w.ID != inDB[w.Code].ID {
				t.Errorf("row %d (%s): key %d, %d in the database", i, w.Code, w.ID, inDB[w.Code].ID)
			}
		}

		// UpdateAll: every column but the key, the conflict columns and created_at.
		again := []Widget{{Code: "a", Name: "all", Size: 9}}
		if _, err := upsert(ctx, again, repo.OnConflict{Columns: []string{"code"}, UpdateAll: true}); err != nil {
			t.Fatal(err)
		}
		if a := dbKeys(t, db)["a"]; a.Name != "all" || a.Size != 9 || a.ID != existing[0].ID || a.CreatedAt.Sub(existing[0].CreatedAt).Abs() > time.Microsecond {
			t.Errorf("after UpdateAll: %+v", a)
		}
	})
}

func TestRepositoryUpsertBadOptions(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Widget](t, db)
	rows := widgets("x", 1)
	for _, on := range []repo.OnConflict{
		{},
		{Columns: []string{"nope"}},
		{Columns: []string{"id"}},
		{Columns: []string{"code"}, Update: []string{"code"}},
		{Columns: []string{"code"}, Update: []string{"name"}, UpdateAll: true},
		{Columns: []string{"name"}}, // no unique index: PostgreSQL refuses
	} {
		if _, err := r.Upsert(ctx, rows, on); err == nil {
			t.Errorf("Upsert with %+v: no error", on)
		}
	}
	if rows[0].ID != 0 || count(t, db, "widgets") != 0 {
		t.Error("a failed Upsert wrote something")
	}
}

func TestRepositoryUpsertAllOrNothing(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Widget](t, db, repo.Config{BatchSize: 1000})
	rows := widgets("u", 5000)
	rows[2].ID = 77 // overwritten by Upsert, restored when it fails
	rows[4000].Name = "nul\x00"
	if _, err := r.Upsert(ctx, rows, repo.OnConflict{Columns: []string{"code"}}); err == nil {
		t.Fatal("no error")
	}
	if count(t, db, "widgets") != 0 || rows[2].ID != 77 || rows[0].ID != 0 {
		t.Errorf("failed Upsert: %d rows, keys %d %d", count(t, db, "widgets"), rows[2].ID, rows[0].ID)
	}
}

func TestRepositoryUpsertConcurrent(t *testing.T) {
	// Writers upsert the same codes in different orders at once. Rows the INSERT finds
	// taken by a transaction that commits while it waits are looked up afterwards.
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Widget](t, db, repo.Config{BatchSize: 100})
	const goroutines, codes = 8, 600
	results := make([][]Widget, goroutines)
	inserted := make([]int, goroutines)
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows := widgets("k", codes)
			rand.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
			res, err := r.Upsert(ctx, rows, repo.OnConflict{Columns: []string{"code"}})
			results[g], inserted[g], errs[g] = rows, res.InsertedCount(), err
		}()
	}
	wg.Wait()
	inDB := dbKeys(t, db)
	total := 0
	for g := range goroutines {
		if errs[g] != nil {
			t.Fatal(errs[g])
		}
		total += inserted[g]
		for _, w := range results[g] {
			if w.ID != inDB[w.Code].ID {
				t.Fatalf("goroutine %d: %s has key %d, %d in the database", g, w.Code, w.ID, inDB[w.Code].ID)
			}
		}
	}
	if len(inDB) != codes || total != codes {
		t.Errorf("%d rows, %d reported inserted, want %d", len(inDB), total, codes)
	}
}

func TestRepositoryUpsertLarge(t *testing.T) {
	// Many batches with the default size, half the rows already there.
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Widget](t, db)
	if err := r.Copy(ctx, widgets("big", 6000)[:3000]); err != nil {
		t.Fatal(err)
	}
	rows := widgets("big", 12_000)
	for i := range rows {
		rows[i].Name = fmt.Sprint("v2 ", i)
	}
	res, err := r.Upsert(ctx, rows, repo.OnConflict{Columns: []string{"code"}, Update: []string{"name"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.InsertedCount() != 9000 {
		t.Errorf("%d inserted, want 9000", res.InsertedCount())
	}
	keysOf(t, r, rows)
	checkWidgetsInDB(t, db, rows)
}

func TestRepositoryUpsertStatements(t *testing.T) {
	// Where COPY can be reached, all rows go through the temporary table: one COPY and
	// one INSERT however many batches they make; in a db.Transaction, unnest batches.
	ctx := context.Background()
	rec := &recorder{}
	db, _ := open(t, logTo(rec))
	r := newRepo[Widget](t, db, repo.Config{BatchSize: 4})
	if err := r.Copy(ctx, widgets("s", 5)); err != nil {
		t.Fatal(err)
	}
	rows := widgets("s", 12) // 5 already there
	rec.take("")
	res, err := r.Upsert(ctx, rows, repo.OnConflict{Columns: []string{"code"}})
	if err != nil {
		t.Fatal(err)
	}
	var copies []string
	inserts := 0
	if res.InsertedCount() != 7 {
		t.Errorf("%d inserted, want 7", res.InsertedCount())
	}
	keysOf(t, r, rows)
	checkWidgetsInDB(t, db, rows)

	rec.take("")
	more := widgets("s", 16) // 12 already there
	if _, err := r.Upsert(ctx, more, repo.OnConflict{Columns: []string{"code"}}); err != nil {
		t.Fatal(err)
	}
	all := rec.take("")
	copies = nil
	for _, s := range all {
		switch {
		case strings.HasPrefix(s, "COPY"):
			copies = append(copies, s)
		case strings.HasPrefix(s, `INSERT INTO "widgets"`):
			inserts++
		}
	}
	if len(copies) != 1 || !strings.Contains(copies[0], `"pg_temp"."seqrepo_upsert"`) || inserts != 1 {
		t.Errorf("%d COPYs, %d INSERTs into widgets; want 1 into the temporary table, 1: %q", len(copies), inserts, all)
	}
	checkWidgetsInDB(t, db, more)

	rec.take("")
	err = db.Transaction(func(tx *gorm.DB) error {
		_, err := r.WithTx(tx).Upsert(ctx, widgets("s", 20), repo.OnConflict{Columns: []string{"code"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	inserts = 0
	for _, s := range rec.take("") {
		if strings.HasPrefix(s, "COPY") {
			t.Errorf("COPY in a db.Transaction: %q", s)
		}
		if strings.HasPrefix(s, `INSERT INTO "widgets"`) {
			inserts++
			if !strings.Contains(s, "unnest(") {
				t.Errorf("INSERT without unnest in a db.Transaction: %.200q", s)
			}
		}
	}
	if inserts != 5 {
		t.Errorf("%d INSERTs in a db.Transaction, want 5 batches of 4", inserts)
	}
}
