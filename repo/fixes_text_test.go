package repo_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/gorm"
)

// Text PostgreSQL cannot store is refused before anything is sent: no key is reserved
// and nothing is written, and the error says which row and field.
func TestRepositoryInvalidText(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Widget](t, db, repo.Config{BatchSize: 100})
	bad := map[string]func(w *Widget){
		"NUL byte":      func(w *Widget) { w.Name = "nul\x00byte" },
		"invalid UTF-8": func(w *Widget) { w.Name = "caf\xe9" },
		"NUL in *string": func(w *Widget) {
			s := "\x00"
			w.Note = &s
		},
	}
	writes := map[string]func(r *repo.Repository[Widget], rows []Widget) error{
		"CreateAll": func(r *repo.Repository[Widget], rows []Widget) error { return r.CreateAll(ctx, rows) },
		"Copy":      func(r *repo.Repository[Widget], rows []Widget) error { return r.Copy(ctx, rows) },
		"Upsert": func(r *repo.Repository[Widget], rows []Widget) error {
			_, err := r.Upsert(ctx, rows, repo.OnConflict{Columns: []string{"code"}})
			return err
		},
		"CopySeq": func(r *repo.Repository[Widget], rows []Widget) error {
			_, err := r.CopySeq(ctx, fixSeq(rows), nil)
			return err
		},
	}
	// A closed pool fails any round trip: the write must fail on the text first.
	closed, closedSQL, _ := fixOpen(t, gorm.Config{}, 0, "")
	closedSQL.Close()
	rc := newRepo[Widget](t, closed)

	for wname, write := range writes {
		for bname, spoil := range bad {
			t.Run(wname+"/"+bname, func(t *testing.T) {
				rows := widgets("t", 350)
				rows[7].ID = 12345 // a key the caller set stays
				spoil(&rows[321])
				err := write(r, rows)
				var it *repo.InvalidTextError
				if !errors.Is(err, repo.ErrInvalidText) || !errors.As(err, &it) {
					t.Fatalf("%s: %v, want an *InvalidTextError", wname, err)
				}
				field := "Name"
				if bname == "NUL in *string" {
					field = "Note"
				}
				if it.Model != "Widget" || it.Field != field || it.Row != 321 || it.Reason == "" {
					t.Errorf("%+v, want model Widget, field %s, row 321", *it, field)
				}
				if n := count(t, db, "widgets"); n != 0 {
					t.Errorf("%d widgets written", n)
				}
				for i := range rows {
					if explicit := i == 7; (explicit && rows[i].ID != 12345) || (!explicit && rows[i].ID != 0) {
						t.Fatalf("row %d: key %d after the refused write", i, rows[i].ID)
					}
				}
				if wname == "CopySeq" {
					return // it opens its transaction before it reads the sequence
				}
				if err := write(rc, rows); !errors.Is(err, repo.ErrInvalidText) {
					t.Errorf("%s on a closed pool: %v, want ErrInvalidText before any round trip", wname, err)
				}
			})
		}
	}
	// Rows in a later batch of CopySeq: the index counts from the sequence's start, and
	// the batches already written are rolled back.
	rows := widgets("s", 350)
	rows[345].Code = "\xff"
	n, err := r.CopySeq(ctx, fixSeq(rows), nil)
	var it *repo.InvalidTextError
	if !errors.As(err, &it) || it.Row != 345 || it.Field != "Code" || n != 0 {
		t.Errorf("CopySeq: %d, %v, want row 345 field Code", n, err)
	}
	if c := count(t, db, "widgets"); c != 0 {
		t.Errorf("%d widgets written", c)
	}
	// Valid text of every kind passes.
	ok := widgets("ok", 3)
	ok[0].Name = "naïve ☃ 𝄞"
	if err := r.Copy(ctx, ok); err != nil {
		t.Fatal(err)
	}
}

// Label is a named string type: its text is checked like a string's.
type Label string

// Audit is embedded in Memo by value, Origin through a pointer.
type Audit struct{ Author string }

type Origin struct{ Source string }

type Memo struct {
	ID   int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:memos_id_seq;allocationSize:50"`
	Kind Label
	Body sql.NullString
	Raw  Fragile // a Valuer: what is sent is not the Go string, and it is not checked
	Audit
	*Origin
}

const memoSchema = `
CREATE SEQUENCE memos_id_seq INCREMENT 50;
CREATE TABLE memos (id bigint PRIMARY KEY, kind text, body text, raw text, author text, source text);
`

func TestRepositoryInvalidTextFieldKinds(t *testing.T) {
	ctx := context.Background()
	db, _, _ := fixOpen(t, gorm.Config{}, 0, memoSchema)
	r := newRepo[Memo](t, db)
	memos := func() []Memo {
		out := make([]Memo, 4)
		for i := range out {
			out[i] = Memo{Kind: "k", Body: sql.NullString{String: "b", Valid: true}, Raw: "r", Audit: Audit{Author: "a"}}
		}
		out[1].Origin = &Origin{Source: "s"}
		return out
	}
	spoils := map[string]func(m *Memo){
		"Kind":   func(m *Memo) { m.Kind = "\x00" },
		"Body":   func(m *Memo) { m.Body.String = "\xc3" },
		"Author": func(m *Memo) { m.Author = "\x00" },
		"Source": func(m *Memo) { m.Origin = &Origin{Source: "\xff"} },
	}
	for field, spoil := range spoils {
		for _, write := range []struct {
			name string
			fn   func([]Memo) error
		}{
			{"CreateAll", func(rows []Memo) error { return r.CreateAll(ctx, rows) }},
			{"Copy", func(rows []Memo) error { return r.Copy(ctx, rows) }},
		} {
			rows := memos()
			spoil(&rows[2])
			var it *repo.InvalidTextError
			if err := write.fn(rows); !errors.As(err, &it) || it.Field != field || it.Row != 2 || it.Model != "Memo" {
				t.Errorf("%s with bad %s: %v", write.name, field, err)
			}
		}
	}
	// Not checked: an invalid NullString, and a Valuer's Go string.
	rows := memos()
	rows[0].Body = sql.NullString{String: "\x00"}
	rows[1].Raw = "\x00 is the Valuer's business"
	if err := r.Copy(ctx, rows); err == nil || errors.Is(err, repo.ErrInvalidText) {
		t.Errorf("Copy: %v, want PostgreSQL's own error for the Valuer's NUL", err)
	}
	rows[1].Raw = "fine"
	if err := r.Copy(ctx, rows); err != nil {
		t.Errorf("Copy of a NULL NullString holding a NUL: %v", err)
	}
	if n := count(t, db, "memos"); n != 4 {
		t.Errorf("%d memos, want 4", n)
	}
}
