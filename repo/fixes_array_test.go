package repo_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/gorm"
)

// StrArr is a text[] value the way pq.StringArray is one: a Valuer (and Scanner) that
// sends PostgreSQL's array text.
type StrArr []string

func (a StrArr) Value() (driver.Value, error) {
	if a == nil {
		return nil, nil
	}
	quoted := make([]string, len(a))
	for i, s := range a {
		quoted[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
	}
	return "{" + strings.Join(quoted, ",") + "}", nil
}

func (a *StrArr) Scan(v any) error { return errors.New("StrArr: not scanned in these tests") }

type Doc struct {
	ID    int64    `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:docs_id_seq;allocationSize:50"`
	Slug  string   `gorm:"uniqueIndex"`
	Tags  StrArr   `gorm:"type:text[]"`
	Words []string `gorm:"type:text[]"` // pgx encodes it itself (GORM's own INSERT cannot)
	Nums  []int32  `gorm:"type:integer[]"`
}

const docSchema = `
CREATE SEQUENCE docs_id_seq INCREMENT 50;
CREATE TABLE docs (id bigint PRIMARY KEY, slug text NOT NULL UNIQUE, tags text[], words text[], nums integer[]);
`

// docRows returns the docs table as slug → "tags|words|nums", each in array text form.
func docRows(t *testing.T, db *gorm.DB) map[string]string {
	t.Helper()
	var rows []struct{ Slug, Val string }
	err := db.Raw(`SELECT slug, coalesce(tags::text, 'NULL') || '|' || coalesce(words::text, 'NULL') || '|' || coalesce(nums::text, 'NULL') AS val FROM docs`).
		Scan(&rows).Error
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rows {
		out[r.Slug] = r.Val
	}
	return out
}

// Array columns are written as arrays on every write path; unnest would flatten them.
func TestRepositoryArrayColumns(t *testing.T) {
	ctx := context.Background()
	db, _, _ := fixOpen(t, gorm.Config{}, 0, docSchema)
	r := newRepo[Doc](t, db, repo.Config{BatchSize: 2})
	doc := func(slug string) Doc {
		return Doc{Slug: slug, Tags: StrArr{"x", "a,b", `q"d`}, Words: []string{"{w}", "NULL", ""}, Nums: []int32{1, 2, 3}}
	}
	const want = `{x,"a,b","q\"d"}|{"{w}","NULL",""}|{1,2,3}`
	const empty = `NULL|NULL|NULL`

	for _, via := range []string{"unnest", "temp table"} {
		rv := newRepo[Doc](t, db, repo.Config{BatchSize: 2})
		if via == "temp table" {
			repo.UpsertViaTempTable(rv)
		} else {
			repo.UpsertViaUnnest(rv)
		}
		p := strings.ReplaceAll(via, " ", "-") + "-"
		err := repo.InTx(ctx, db, func(tx *gorm.DB) error {
			rows := []Doc{doc(p + "a"), {Slug: p + "b"}, doc(p + "c"), doc(p + "a")}
			res, err := rv.WithTx(tx).Upsert(ctx, rows, repo.OnConflict{Columns: []string{"slug"}, UpdateAll: true})
			if err == nil && res.InsertedCount() != 3 {
				err = fmt.Errorf("%d inserted, want 3", res.InsertedCount())
			}
			return err
		})
		if err != nil {
			t.Fatalf("Upsert via %s: %v", via, err)
		}
		// Update an existing row's arrays.
		changed := Doc{Slug: p + "b", Tags: StrArr{"new"}, Nums: []int32{}}
		if _, err := rv.Upsert(ctx, []Doc{changed}, repo.OnConflict{Columns: []string{"slug"}, UpdateAll: true}); err != nil {
			t.Fatalf("Upsert via %s of an existing row: %v", via, err)
		}
	}
	copied := []Doc{doc("copy-a"), {Slug: "copy-b"}, doc("copy-c")}
	if err := r.Copy(ctx, copied); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	err := db.Transaction(func(tx *gorm.DB) error {
		return r.WithTx(tx).Copy(ctx, []Doc{doc("gormtx-a"), {Slug: "gormtx-b"}, doc("gormtx-c")})
	})
	if err != nil {
		t.Fatalf("Copy in db.Transaction: %v", err)
	}

	got := docRows(t, db)
	for _, p := range []string{"unnest-", "temp-table-", "copy-", "gormtx-"} {
		for _, s := range []string{"a", "c"} {
			if got[p+s] != want {
				t.Errorf("%s%s: %s, want %s", p, s, got[p+s], want)
			}
		}
		wantB := empty
		if p == "unnest-" || p == "temp-table-" {
			wantB = `{new}|NULL|{}`
		}
		if got[p+"b"] != wantB {
			t.Errorf("%sb: %s, want %s", p, got[p+"b"], wantB)
		}
	}
	if len(got) != 12 {
		t.Errorf("%d docs, want 12", len(got))
	}
}
