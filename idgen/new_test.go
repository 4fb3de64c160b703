package idgen_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/seqrepo/seqrepo/idgen"
)

// TestNewRefuses checks that New refuses every unusable sequence with the sentinel the
// caller can act on and a message that names the sequence and the numbers involved,
// and that Check reports the same problem.
func TestNewRefuses(t *testing.T) {
	db, _ := openDB(t)
	mustExec(t, db,
		`CREATE TABLE tbl (id bigint PRIMARY KEY)`,
		`CREATE VIEW vw AS SELECT 1 AS one`,
		`CREATE SEQUENCE cyc INCREMENT 50 CYCLE`,
		`CREATE SEQUENCE by10 INCREMENT 10`,
		`CREATE SEQUENCE full100 INCREMENT 50 MAXVALUE 100`,
		`SELECT nextval('full100'), nextval('full100')`, // last value 51: block 51..100 was the last
		`CREATE SEQUENCE short120 INCREMENT 50 MAXVALUE 120`,
		`SELECT nextval('short120'), nextval('short120')`,           // next would be 101..150, past 120
		`CREATE SEQUENCE fresh75 INCREMENT 50 MAXVALUE 75 START 51`, // 51..100 does not fit
		`CREATE SEQUENCE maxed INCREMENT 50 START 9223372036854775800`,
		`SELECT nextval('maxed')`, // at MaxInt64-7: next nextval would pass it
		// An ascending sequence whose whole range lies just above MinInt64, at its MAXVALUE.
		`CREATE SEQUENCE lowmax INCREMENT 50 MINVALUE -9223372036854775808 MAXVALUE -9223372036854775800 START -9223372036854775808`,
		`SELECT nextval('lowmax')`,
	)

	tests := []struct {
		name     string
		cfg      idgen.Config
		want     error
		mentions []string
	}{
		{"missing", idgen.Config{Sequence: "nope_seq", AllocationSize: 50}, idgen.ErrSequenceNotFound, []string{"nope_seq"}},
		{"missing schema", idgen.Config{Sequence: "noschema.s", AllocationSize: 50}, idgen.ErrSequenceNotFound, []string{"noschema.s"}},
		{"table", idgen.Config{Sequence: "tbl", AllocationSize: 50}, idgen.ErrSequenceNotFound, []string{"tbl", "not a sequence"}},
		{"view", idgen.Config{Sequence: "vw", AllocationSize: 50}, idgen.ErrSequenceNotFound, []string{"vw", "not a sequence"}},
		{"bad name syntax", idgen.Config{Sequence: `"unterminated`, AllocationSize: 50}, idgen.ErrSequenceNotFound, []string{`"unterminated`}},
		{"too many dots", idgen.Config{Sequence: "a.b.c.d", AllocationSize: 50}, idgen.ErrSequenceNotFound, []string{"a.b.c.d"}},
		{"cycle", idgen.Config{Sequence: "cyc", AllocationSize: 50}, idgen.ErrCycle, []string{"cyc", "CYCLE"}},
		{"increment 10 size 50", idgen.Config{Sequence: "by10", AllocationSize: 50}, idgen.ErrIncrementMismatch, []string{"by10", "INCREMENT 10", "AllocationSize is 50"}},
		{"increment 10 size 50 pooled", idgen.Config{Sequence: "by10", AllocationSize: 50, Optimizer: idgen.Pooled}, idgen.ErrIncrementMismatch, []string{"by10", "10", "50"}},
		{"at MAXVALUE", idgen.Config{Sequence: "full100", AllocationSize: 50}, idgen.ErrExhausted, []string{"full100", "51", "MAXVALUE 100"}},
		{"at MAXVALUE pooled", idgen.Config{Sequence: "full100", AllocationSize: 50, Optimizer: idgen.Pooled}, idgen.ErrExhausted, []string{"full100", "MAXVALUE 100"}},
		{"next block passes MAXVALUE", idgen.Config{Sequence: "short120", AllocationSize: 50}, idgen.ErrExhausted, []string{"short120", "101", "MAXVALUE 120"}},
		{"first block passes MAXVALUE", idgen.Config{Sequence: "fresh75", AllocationSize: 50}, idgen.ErrExhausted, []string{"fresh75", "51", "MAXVALUE 75"}},
		{"at MaxInt64", idgen.Config{Sequence: "maxed", AllocationSize: 50}, idgen.ErrExhausted, []string{"maxed", "9223372036854775807"}},
		{"at MaxInt64 pooled", idgen.Config{Sequence: "maxed", AllocationSize: 50, Optimizer: idgen.Pooled}, idgen.ErrExhausted, []string{"maxed"}},
		{"at MAXVALUE near MinInt64", idgen.Config{Sequence: "lowmax", AllocationSize: 50}, idgen.ErrExhausted, []string{"lowmax", "-9223372036854775800"}},
		{"at MAXVALUE near MinInt64 pooled", idgen.Config{Sequence: "lowmax", AllocationSize: 50, Optimizer: idgen.Pooled}, idgen.ErrExhausted, []string{"lowmax", "-9223372036854775800"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := idgen.New(t.Context(), db, tt.cfg)
			if a != nil || !errors.Is(err, tt.want) {
				t.Fatalf("New(%+v) = %v, %v; want no Allocator and %v", tt.cfg, a, err, tt.want)
			}
			for _, m := range tt.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if cerr := idgen.CheckOne(t.Context(), db, tt.cfg); !errors.Is(cerr, tt.want) {
				t.Errorf("CheckOne = %v, want %v", cerr, tt.want)
			}
		})
	}

	t.Run("IncrementMismatchError", func(t *testing.T) {
		_, err := idgen.New(t.Context(), db, idgen.Config{Sequence: "by10", AllocationSize: 50})
		var mm *idgen.IncrementMismatchError
		if !errors.As(err, &mm) {
			t.Fatalf("New: %v (%T), want an *IncrementMismatchError", err, err)
		}
		if mm.Sequence != "by10" || mm.Increment != 10 || mm.AllocationSize != 50 {
			t.Fatalf("got %+v, want sequence by10, increment 10, size 50", *mm)
		}
	})

	t.Run("Check reports every problem", func(t *testing.T) {
		mustExec(t, db, `CREATE SEQUENCE ok50 INCREMENT 50`)
		err := idgen.Check(t.Context(), db,
			idgen.Config{Sequence: "ok50", AllocationSize: 50},
			idgen.Config{Sequence: "by10", AllocationSize: 50},
			idgen.Config{Sequence: "nope_seq", AllocationSize: 50},
			idgen.Config{Sequence: "cyc", AllocationSize: 50},
			idgen.Config{Sequence: "ok50", AllocationSize: 0},
		)
		var ce *idgen.CheckError
		if !errors.As(err, &ce) || len(ce.Problems) != 4 {
			t.Fatalf("Check = %v, want a *CheckError with 4 problems", err)
		}
		for _, want := range []error{idgen.ErrIncrementMismatch, idgen.ErrSequenceNotFound, idgen.ErrCycle, idgen.ErrInvalidConfig} {
			if !errors.Is(err, want) {
				t.Errorf("Check error does not match %v: %v", want, err)
			}
		}
		noErr(t, idgen.Check(t.Context(), db, idgen.Config{Sequence: "ok50", AllocationSize: 50}), "Check of a sound sequence")
	})
}

// TestNewInvalidConfig needs no database: an invalid Config is refused before any query.
func TestNewInvalidConfig(t *testing.T) {
	tests := []struct {
		name     string
		cfg      idgen.Config
		mentions string
	}{
		{"size 0", idgen.Config{Sequence: "s", AllocationSize: 0}, "AllocationSize is 0"},
		{"size -1", idgen.Config{Sequence: "s", AllocationSize: -1}, "AllocationSize is -1"},
		{"no sequence", idgen.Config{AllocationSize: 50}, "Sequence is empty"},
		{"blank sequence", idgen.Config{Sequence: "  ", AllocationSize: 50}, "Sequence is empty"},
		{"NUL in name", idgen.Config{Sequence: "a\x00b", AllocationSize: 50}, "NUL"},
		{"unknown optimizer", idgen.Config{Sequence: "s", AllocationSize: 50, Optimizer: idgen.Optimizer(7)}, "Optimizer 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A nil Querier: New must not get as far as asking the database.
			a, err := idgen.New(context.Background(), nil, tt.cfg)
			if a != nil || !errors.Is(err, idgen.ErrInvalidConfig) {
				t.Fatalf("New(%+v) = %v, %v; want ErrInvalidConfig", tt.cfg, a, err)
			}
			if !strings.Contains(err.Error(), tt.mentions) {
				t.Fatalf("error %q does not mention %q", err, tt.mentions)
			}
		})
	}
	t.Run("nil Querier", func(t *testing.T) {
		_, err := idgen.New(context.Background(), nil, idgen.Config{Sequence: "s", AllocationSize: 50})
		if !errors.Is(err, idgen.ErrInvalidConfig) {
			t.Fatalf("New with a nil Querier: %v, want ErrInvalidConfig", err)
		}
	})
}

// TestSequenceNames checks that schema-qualified and quoted names resolve as
// identifiers, and that a name built to inject SQL is only ever a name.
func TestSequenceNames(t *testing.T) {
	db, _ := openDB(t)
	mustExec(t, db,
		`CREATE SCHEMA ingest`,
		`CREATE SEQUENCE ingest.commits_id_seq INCREMENT 50`,
		`CREATE SEQUENCE "Odd.Name" INCREMENT 50 START 1000`,
		`CREATE SEQUENCE ingest."Mixed Case;seq" INCREMENT 5`,
		`CREATE TABLE victim (id int)`,
		`CREATE SEQUENCE "x'; DROP TABLE victim; --" INCREMENT 50 START 7`,
	)
	victimExists := func(t *testing.T) {
		t.Helper()
		var ok bool
		noErr(t, db.QueryRowContext(t.Context(), `SELECT to_regclass('public.victim') IS NOT NULL`).Scan(&ok), "look for victim")
		if !ok {
			t.Fatal("table victim was dropped: a sequence name was executed as SQL")
		}
	}

	works := []struct {
		seq   string
		size  int
		first int64
	}{
		{"ingest.commits_id_seq", 50, 1},
		{`ingest."commits_id_seq"`, 50, 51}, // the same sequence: its next block
		{`"Odd.Name"`, 50, 1000},
		{`ingest."Mixed Case;seq"`, 5, 1},
		{`"x'; DROP TABLE victim; --"`, 50, 7},
	}
	for _, w := range works {
		t.Run(w.seq, func(t *testing.T) {
			a := exactAlloc(t, db, w.seq, w.size)
			keys, err := a.NextN(t.Context(), 3)
			noErr(t, err, "NextN")
			equalKeys(t, keys, seqRange(w.first, w.first+2))
			victimExists(t)
		})
	}

	refused := []string{
		"commits_id_seq", // not on the search path
		"Odd.Name",       // unquoted: schema "odd", relation "name"
		`"odd.name"`,     // quoted names keep their case
		"x'; DROP TABLE victim; --",
		`victim; DROP TABLE victim`,
		`victim'); DROP TABLE victim; --`,
		`"x'; DROP TABLE victim; --"'::regclass); DROP TABLE victim; --`,
		`nextval('x')`,
		`$1`,
	}
	for _, name := range refused {
		t.Run("refused/"+name, func(t *testing.T) {
			_, err := idgen.New(t.Context(), db, idgen.Config{Sequence: name, AllocationSize: 50})
			if !errors.Is(err, idgen.ErrSequenceNotFound) {
				t.Fatalf("New(%q): %v, want ErrSequenceNotFound", name, err)
			}
			victimExists(t)
		})
	}
}

// TestNewInsideTransaction makes an Allocator on a *sql.Tx and on a *sql.Conn.
func TestNewInsideTransaction(t *testing.T) {
	db, _ := openDB(t)
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
	ctx := t.Context()
	tx, err := db.BeginTx(ctx, nil)
	noErr(t, err, "begin")
	defer func() { _ = tx.Rollback() }()
	a := newAlloc(t, tx, "s", 50)
	keys, err := a.NextN(ctx, 2)
	noErr(t, err, "NextN on a transaction")
	equalKeys(t, keys, []int64{1, 2})
	noErr(t, tx.Rollback(), "rollback")

	// nextval is not transactional: the rolled-back block stays used.
	conn, err := db.Conn(ctx)
	noErr(t, err, "conn")
	defer conn.Close()
	var _ idgen.Querier = conn
	b := newAlloc(t, conn, "s", 50)
	k, err := b.Next(ctx)
	noErr(t, err, "Next on a conn")
	if k != 51 {
		t.Fatalf("first key after a rolled-back block = %d, want 51", k)
	}
}

// TestUsagePrivilegeSuffices: an application role that may only use the sequence
// (GRANT USAGE, all that nextval needs) can make an Allocator and reserve keys; New's
// check and the fetch read nothing that needs more.
func TestUsagePrivilegeSuffices(t *testing.T) {
	db, _ := openDB(t)
	ctx := t.Context()
	var dbname string
	noErr(t, db.QueryRowContext(ctx, `SELECT current_database()`).Scan(&dbname), "current_database")
	role := `"` + dbname + `_app"` // roles are per server: name it after this test's database
	mustExec(t, db,
		`CREATE ROLE `+role+` NOLOGIN`,
		`CREATE SEQUENCE s INCREMENT 50`,
		`CREATE SEQUENCE other INCREMENT 50`,
		`GRANT USAGE ON SEQUENCE s TO `+role,
	)
	t.Cleanup(func() { mustExec(t, db, `DROP OWNED BY `+role, `DROP ROLE `+role) })
	conn, err := db.Conn(ctx)
	noErr(t, err, "conn")
	t.Cleanup(func() {
		mustExec(t, conn, `RESET ROLE`) // before the connection goes back to the pool
		_ = conn.Close()
	})
	mustExec(t, conn, `SET ROLE `+role)

	a := newAlloc(t, conn, "s", 50)
	keys, err := a.NextN(ctx, 60)
	noErr(t, err, "NextN as a role with USAGE only")
	equalKeys(t, keys, seqRange(1, 60))

	if _, err := idgen.New(ctx, conn, idgen.Config{Sequence: "other", AllocationSize: 50}); err == nil || !strings.Contains(err.Error(), "other") {
		t.Fatalf("New on a sequence the role may not use: %v, want an error naming it", err)
	}
}
