package idgen_test

import (
	"context"
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

	alloc := newAlloc(t, db, "s", 50) // public.s, through the pool's search_path

	tx, err := db.BeginTx(ctx, nil)
	noErr(t, err, "begin")
	defer tx.Rollback()
	mustExec(t, tx, `SET LOCAL search_path TO t1`)
	_, err = alloc.Using(tx).NextN(ctx, 10)
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

// TestSequenceRecreated: a sequence dropped and created again under the same name is a
// different sequence; the Allocator refuses it rather than mixing its values with the
// old one's.
func TestSequenceRecreated(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT BY 50`)
	alloc := newAlloc(t, db, "s", 50)
	_, err := alloc.NextN(ctx, 50) // use up the first block
	noErr(t, err, "NextN")
	mustExec(t, db, `DROP SEQUENCE s`)
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT BY 50`)
	if _, err := alloc.Next(ctx); !errors.Is(err, idgen.ErrSequenceChanged) {
		t.Fatalf("Next after DROP/CREATE: got %v, want ErrSequenceChanged", err)
	}
	if _, called := lastValue(t, db, "s"); called {
		t.Errorf("the new sequence was called")
	}
}
