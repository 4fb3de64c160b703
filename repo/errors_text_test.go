package repo_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/gorm"
)

// onePrefix fails t unless msg has exactly one "repo:" prefix, at its start.
func onePrefix(t *testing.T, msg string) {
	t.Helper()
	if !strings.HasPrefix(msg, "repo: ") || strings.Count(msg, "repo:") != 1 {
		t.Errorf("want one \"repo:\" prefix, at the start:\n%s", msg)
	}
}

// Errors that wrap one of the package's sentinels say "repo:" once.
func TestErrorTextHasOnePrefix(t *testing.T) {
	db, _ := open(t)
	ctx := context.Background()
	r := newRepo[Widget](t, db)

	_, err := r.Get(ctx, 999999999)
	if !errors.Is(err, repo.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v, want ErrNotFound", err)
	}
	onePrefix(t, err.Error())
	if got, want := err.Error(), "repo: Widget 999999999: record not found"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for name, err := range map[string]error{
		"Update": r.Update(ctx, &Widget{ID: 999999999, Code: "x"}),
		"Delete": r.Delete(ctx, 999999999),
	} {
		if !errors.Is(err, repo.ErrNotFound) {
			t.Fatalf("%s of a missing key: %v, want ErrNotFound", name, err)
		}
		onePrefix(t, err.Error())
	}
}

type stringKeyModel struct {
	ID string `gorm:"primaryKey" idgen:"sequence:text_keys_id_seq"`
}

// New wraps the model's problem without a second "repo:".
func TestNewErrorHasOnePrefix(t *testing.T) {
	db, _ := open(t)
	_, err := repo.New[stringKeyModel](db)
	if err == nil {
		t.Fatal("New with a string key: nil error")
	}
	onePrefix(t, err.Error())
	if !strings.HasPrefix(err.Error(), "repo: New[stringKeyModel]: model ") {
		t.Errorf("got %q", err)
	}
}

// Upsert on columns that no unique constraint or index covers names the model and the
// columns, and says what to create, instead of PostgreSQL's bare 42P10.
func TestUpsertWithoutUniqueConstraintNamesColumns(t *testing.T) {
	upsertCases(t, func(t *testing.T, db *gorm.DB, upsert func(context.Context, []Widget, repo.OnConflict) (repo.UpsertResult, error)) {
		_, err := upsert(context.Background(), []Widget{{Code: "a", Name: "n"}}, repo.OnConflict{Columns: []string{"name"}})
		if err == nil {
			t.Fatal("Upsert on a column without a unique constraint: nil error")
		}
		msg := err.Error()
		onePrefix(t, msg)
		for _, want := range []string{"Widget", `"name"`, "unique"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error does not say %q:\n%s", want, msg)
			}
		}
	})
}

// With the database down, Plugin.Validate says so once, not once per model, like
// migrations.Validate.
func TestPluginValidateDatabaseDownOnce(t *testing.T) {
	db, p := open(t)
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.Close()
	err = p.Validate(context.Background(), &Widget{}, &Widget{}, &Widget{})
	if err == nil {
		t.Fatal("Validate with the database down: nil error")
	}
	if n := strings.Count(err.Error(), "\n"); n != 0 || strings.Count(err.Error(), "cannot query the database") != 1 {
		t.Errorf("want one line that says the database cannot be queried, got %d more:\n%s", n, err)
	}
	onePrefix(t, err.Error())
}
