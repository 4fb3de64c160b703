package repo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/seqrepo/seqrepo/models"
	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// ModeRow has a column of each kind the unnest path encodes: a key, a unique text, a
// jsonb Valuer, a nullable text, a timestamp, an array and a plain integer.
type ModeRow struct {
	ID   int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:mode_rows_id_seq;allocationSize:50"`
	Code string
	Meta models.Metadata `gorm:"type:jsonb"`
	Note *string
	At   time.Time
	Tags []string `gorm:"type:text[]"`
	N    int
}

const modeSchema = `
CREATE SEQUENCE mode_rows_id_seq INCREMENT 50;
CREATE TABLE mode_rows (
	id bigint PRIMARY KEY,
	code text NOT NULL UNIQUE,
	meta jsonb NOT NULL,
	note text,
	at timestamptz NOT NULL,
	tags text[],
	n bigint NOT NULL
);
`

// TestUpsertEveryExecMode runs Upsert, and Copy and CopySeq in a db.Transaction (which
// take the unnest path too), in each of pgx's exec modes and with GORM's
// PreferSimpleProtocol, and checks the rows and keys against the database. The modes
// that name prepared statements or bind in a second round trip get PostgreSQL directly
// in the rerun through PgBouncer (see pgtest.PgBouncerExecMode).
func TestUpsertEveryExecMode(t *testing.T) {
	cases := []struct {
		name, mode string
		simple     bool // postgres.Config{PreferSimpleProtocol: true}
		direct     bool
	}{
		{name: "cache_statement", mode: "cache_statement", direct: true},
		{name: "cache_describe", mode: "cache_describe"},
		{name: "describe_exec", mode: "describe_exec", direct: true},
		{name: "exec", mode: "exec"},
		{name: "simple_protocol", mode: "simple_protocol"},
		{name: "PreferSimpleProtocol", simple: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dsn := schemaDatabase(t, c.direct)
			if c.mode != "" {
				dsn += " default_query_exec_mode=" + c.mode // the later keyword wins
			}
			db, err := gorm.Open(postgres.New(postgres.Config{DSN: dsn, PreferSimpleProtocol: c.simple}), &gorm.Config{Logger: logger.Discard})
			if err != nil {
				t.Fatal(err)
			}
			sqlDB, err := db.DB()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sqlDB.Close() })
			if err := db.Exec(modeSchema).Error; err != nil {
				t.Fatal(err)
			}
			if err := db.Use(repo.NewPlugin()); err != nil {
				t.Fatal(err)
			}
			checkExecMode(t, db)
		})
	}
}

func checkExecMode(t *testing.T, db *gorm.DB) {
	ctx := context.Background()
	r := newRepo[ModeRow](t, db, repo.Config{BatchSize: 3}) // more than one batch: Upsert sorts its rows first
	at := time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.UTC)
	odd := `a"b\c,{} NULL`
	row := func(code string, n int) ModeRow {
		note := fmt.Sprintf("%s %d", odd, n)
		return ModeRow{
			Code: code, N: n, Note: &note, At: at.Add(time.Duration(n) * time.Hour),
			Meta: models.Metadata{"k": odd, "n": n}, Tags: []string{"x", "a,b", `q"d`, "NULL", ""},
		}
	}
	bare := func(code string, n int) ModeRow { // NULL note, NULL tags, {} metadata
		return ModeRow{Code: code, N: n, At: at.Add(time.Duration(n) * time.Hour)}
	}
	want := map[string]ModeRow{} // code → the row the table should hold
	keys := map[string]int64{}   // code → its key
	record := func(t *testing.T, r *repo.Repository[ModeRow], rows []ModeRow, update bool) {
		t.Helper()
		for i := range rows {
			k := r.Key(&rows[i])
			if k == 0 {
				t.Fatalf("%s has no key", rows[i].Code)
			}
			if old, ok := keys[rows[i].Code]; ok && old != k {
				t.Errorf("%s: key %d, want %d", rows[i].Code, k, old)
			}
			keys[rows[i].Code] = k
			if _, ok := want[rows[i].Code]; !ok || update {
				want[rows[i].Code] = rows[i]
			}
		}
	}

	// Insert, with a duplicate: DO UPDATE keeps the last one's values.
	rows := []ModeRow{row("a", 1), bare("b", 2), row("c", 3), row("a", 4), bare("d", 5)}
	res, err := r.Upsert(ctx, rows, repo.OnConflict{Columns: []string{"code"}, UpdateAll: true})
	if err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	if got := fmt.Sprint(res.Inserted); got != "[true true true false true]" {
		t.Errorf("Inserted = %s", got)
	}
	want["a"] = rows[3]
	record(t, r, rows, true)

	// Conflicts, DO NOTHING: the stored rows stay.
	rows = []ModeRow{row("b", 6), row("e", 7), bare("a", 8), row("e", 9)}
	res, err = r.Upsert(ctx, rows, repo.OnConflict{Columns: []string{"code"}})
	if err != nil {
		t.Fatalf("second Upsert: %v", err)
	}
	if got := fmt.Sprint(res.Inserted); got != "[false true false false]" {
		t.Errorf("second Inserted = %s", got)
	}
	record(t, r, rows, false)

	// Copy and CopySeq in a db.Transaction, which hides its connection from COPY.
	err = db.Transaction(func(tx *gorm.DB) error {
		rt := r.WithTx(tx)
		rows := []ModeRow{row("f", 10), bare("g", 11), row("h", 12), row("i", 13)}
		if err := rt.Copy(ctx, rows); err != nil {
			return fmt.Errorf("Copy: %w", err)
		}
		record(t, rt, rows, false)
		seq := func(yield func(ModeRow, error) bool) {
			for i, code := range []string{"j", "k", "l", "m"} {
				v := row(code, 14+i)
				if i%2 == 1 {
					v = bare(code, 14+i)
				}
				if !yield(v, nil) {
					return
				}
			}
		}
		_, err := rt.CopySeq(ctx, seq, func(batch []ModeRow) error {
			record(t, rt, batch, false)
			return nil
		})
		if err != nil {
			return fmt.Errorf("CopySeq: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var got []struct {
		ID                     int64
		Code, Meta, Note, Tags string
		At                     time.Time
		N                      int
	}
	err = db.Raw(`SELECT id, code, meta::text AS meta, coalesce(note, '<null>') AS note, at,
	coalesce(tags::text, '<null>') AS tags, n FROM mode_rows ORDER BY code`).Scan(&got).Error
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("table holds %d rows, want %d", len(got), len(want))
	}
	for _, g := range got {
		w, ok := want[g.Code]
		if !ok {
			t.Errorf("unexpected row %q", g.Code)
			continue
		}
		wantMeta := "{}"
		if w.Meta != nil {
			wantMeta = fmt.Sprintf(`{"k": %q, "n": %d}`, odd, w.N)
		}
		wantNote, wantTags := "<null>", "<null>"
		if w.Note != nil {
			wantNote, wantTags = *w.Note, `{x,"a,b","q\"d","NULL",""}`
		}
		if g.ID != keys[g.Code] || g.Meta != wantMeta || g.Note != wantNote || g.Tags != wantTags ||
			!g.At.Equal(w.At.Truncate(time.Microsecond)) || g.N != w.N {
			t.Errorf("row %s = %+v\nwant key %d, meta %s, note %q, tags %s, at %v, n %d",
				g.Code, g, keys[g.Code], wantMeta, wantNote, wantTags, w.At, w.N)
		}
	}
}
