package idgen_test

import (
	"database/sql"
	"errors"
	"testing"

	"github.com/seqrepo/seqrepo/idgen"
)

// lastValue reads a sequence's last_value and is_called without calling nextval.
func lastValue(t *testing.T, db *sql.DB, seq string) (int64, bool) {
	t.Helper()
	var v int64
	var called bool
	if err := db.QueryRowContext(t.Context(), `SELECT last_value, is_called FROM `+seq).Scan(&v, &called); err != nil {
		t.Fatalf("read %s: %v", seq, err)
	}
	return v, called
}

// TestPinnedToTheSequenceNewResolved: an Allocator draws from the sequence its name
// resolved to in New. A refill on a connection where the name means another sequence
// (schema-per-tenant search_path) fails with ErrSequenceChanged and takes no value from
// either sequence, so keys of two sequences never share one pool.
func TestPinnedToTheSequenceNewResolved(t *testing.T) {
	db, _ := openDB(t)
	ctx := t.Context()
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT BY 50`)
	mustExec(t, db, `CREATE SCHEMA t1`)
	mustExec(t, db, `CREATE SEQUENCE t1.s INCREMENT BY 50`)

	alloc := exactAlloc(t, db, "s", 50) // public.s, through the pool's search_path

	tx, err := db.BeginTx(ctx, nil)
	noErr(t, err, "begin")
	defer tx.Rollback()
	mustExec(t, tx, `SET LOCAL search_path TO t1`)
	_, err = alloc.WithTx(tx).NextN(ctx, 10)
	if !errors.Is(err, idgen.ErrSequenceChanged) {
		t.Fatalf("NextN through a tx whose search_path resolves s to t1.s: got %v, want ErrSequenceChanged", err)
	}
	noErr(t, tx.Rollback(), "rollback")
	for _, seq := range []string{"public.s", "t1.s"} {
		if _, called := lastValue(t, db, seq); called {
			t.Errorf("%s: nextval was called; a refill that fails the name check must take no value", seq)
		}
	}

	// The same allocator on its own pool still works, from public.s.
	keys, err := alloc.NextN(ctx, 3)
	noErr(t, err, "NextN on the pool")
	equalKeys(t, keys, seqRange(1, 3))
	if v, _ := lastValue(t, db, "public.s"); v != 1 {
		t.Errorf("public.s last_value = %d, want 1", v)
	}

	// An allocator made where the name means t1.s is pinned to t1.s.
	conn, err := db.Conn(ctx)
	noErr(t, err, "conn")
	defer conn.Close()
	mustExec(t, conn, `SET search_path TO t1`)
	tenant, err := idgen.New(ctx, conn, idgen.Config{Sequence: "s", AllocationSize: 50})
	noErr(t, err, "New under search_path t1")
	if tenant.SequenceOID() == alloc.SequenceOID() {
		t.Fatalf("allocators for public.s and t1.s report the same SequenceOID %d", alloc.SequenceOID())
	}
}

// TestSequenceRecreated: a sequence dropped and created again under the same name (a
// test suite that resets its schema, AutoMigrate after a DROP) is a different sequence.
// The Allocator re-pins to it at its next refill: it drops the keys it still held from
// the old one, moves the new one past every key it reserved from the old one, and goes
// on without handing out any key twice.
func TestSequenceRecreated(t *testing.T) {
	for _, opt := range []idgen.Optimizer{idgen.PooledLo, idgen.Pooled} {
		t.Run(opt.String(), func(t *testing.T) {
			db, _ := openDB(t)
			ctx := t.Context()
			mustExec(t, db, `CREATE SEQUENCE s INCREMENT BY 50`)
			alloc := newAlloc(t, db, "s", 50, opt)
			before := alloc.SequenceOID()
			old, err := alloc.NextN(ctx, 120) // pooled-lo: 1..150 reserved, 121..150 still held
			noErr(t, err, "NextN")
			mustExec(t, db, `DROP SEQUENCE s`, `CREATE SEQUENCE s INCREMENT BY 50`)

			keys, err := alloc.NextN(ctx, 200)
			noErr(t, err, "NextN after DROP/CREATE")
			if alloc.SequenceOID() == before {
				t.Fatalf("SequenceOID is still %d, the dropped sequence's", before)
			}
			requireUnique(t, append(append([]int64(nil), old...), keys...))
			highest := seqRange(1, 150)[149] // the highest key reserved from the old sequence
			if opt == idgen.Pooled {
				highest = 151 // 1, 2..51, 52..101, 102..151
			}
			for _, k := range keys {
				if k <= highest {
					t.Fatalf("key %d handed out after the re-pin is not above %d, the highest key reserved from the old sequence", k, highest)
				}
			}
			// The new sequence itself moved past them too: a new Allocator, as another
			// process would make, gets keys above them as well.
			other := newAlloc(t, db, "s", 50, opt)
			k, err := other.Next(ctx)
			noErr(t, err, "Next of a new Allocator")
			if k <= highest {
				t.Fatalf("a new Allocator got %d, not above %d", k, highest)
			}
		})
	}
}

// TestTenantSchemasKeysInMemory: with schema-per-tenant code (an unqualified name and
// SET LOCAL search_path per transaction), keys the Allocator holds in memory must not
// reach a transaction where the name means another tenant's sequence. When sequences
// of the name exist in several schemas, an Allocator from WithTx checks on its
// Querier, before it hands out a key, that the name resolves to the pinned sequence.
// A name that only one schema has costs no check.
func TestTenantSchemasKeysInMemory(t *testing.T) {
	db, _ := openDB(t)
	ctx := t.Context()
	mustExec(t, db, `CREATE SEQUENCE items_id_seq INCREMENT 50`, `CREATE SEQUENCE solo_id_seq INCREMENT 50`,
		`CREATE SCHEMA t2`, `CREATE SEQUENCE t2.items_id_seq INCREMENT 50`)
	alloc := newAlloc(t, db, "items_id_seq", 50) // public.items_id_seq
	k, err := alloc.Next(ctx)                    // 1; 2..50 stay in memory
	noErr(t, err, "Next")
	if k != 1 {
		t.Fatalf("first key %d", k)
	}

	inTx := func(path string, f func(tx *sql.Tx)) {
		t.Helper()
		tx, err := db.BeginTx(ctx, nil)
		noErr(t, err, "begin")
		defer tx.Rollback()
		mustExec(t, tx, `SET LOCAL search_path TO `+path)
		f(tx)
	}
	inTx("t2", func(tx *sql.Tx) {
		keys, err := alloc.WithTx(tx).NextN(ctx, 5)
		if !errors.Is(err, idgen.ErrSequenceChanged) || keys != nil {
			t.Fatalf("NextN where items_id_seq means t2.items_id_seq = %v, %v; want no keys and ErrSequenceChanged", keys, err)
		}
	})
	inTx("public", func(tx *sql.Tx) {
		keys, err := alloc.WithTx(tx).NextN(ctx, 5)
		noErr(t, err, "NextN where the name means the pinned sequence")
		equalKeys(t, keys, seqRange(2, 6))
	})

	solo := newAlloc(t, db, "solo_id_seq", 50)
	_, err = solo.Next(ctx)
	noErr(t, err, "Next")
	before := solo.Stats().RoundTrips
	inTx("public", func(tx *sql.Tx) {
		_, err := solo.WithTx(tx).NextN(ctx, 5)
		noErr(t, err, "NextN of a name in one schema only")
	})
	if got := solo.Stats().RoundTrips; got != before {
		t.Errorf("keys in memory of a name in one schema took %d round trips, want none", got-before)
	}
}
