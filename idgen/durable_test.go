package idgen_test

import (
	"testing"

	"github.com/seqrepo/seqrepo/idgen"
)

// TestRefillWritesWAL: a refill writes a transactional WAL record, so its commit (or,
// through WithTx, the caller's commit) waits for the synchronous standbys like any
// writing transaction. A transaction that ran only nextval has no transaction ID and
// its commit waits for nothing. With NoDurableRefill the refill writes none.
func TestRefillWritesWAL(t *testing.T) {
	db, _ := openDB(t)
	ctx := t.Context()
	// The first nextval WAL-logs 32 values ahead (and so gets a transaction ID); the
	// refills below draw values that record covers, as in issue 12.
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`, `CREATE SEQUENCE n INCREMENT 50`,
		`SELECT nextval('s'), nextval('n')`)
	for _, tt := range []struct {
		seq       string
		noDurable bool
		want      bool
	}{{"s", false, true}, {"n", true, false}} {
		a, err := idgen.New(ctx, db, idgen.Config{Sequence: tt.seq, AllocationSize: 50, NoDurableRefill: tt.noDurable})
		noErr(t, err, "New")
		tx, err := db.BeginTx(ctx, nil)
		noErr(t, err, "begin")
		_, err = a.WithTx(tx).NextN(ctx, 10)
		noErr(t, err, "NextN")
		var wrote bool
		noErr(t, tx.QueryRowContext(ctx, `SELECT pg_current_xact_id_if_assigned() IS NOT NULL`).Scan(&wrote), "xid")
		noErr(t, tx.Commit(), "commit")
		if wrote != tt.want {
			t.Errorf("NoDurableRefill %v: the refill's transaction has a transaction ID: %v, want %v", tt.noDurable, wrote, tt.want)
		}
	}
	// The autocommit refill on the pool works at this server's wal_level.
	a, err := idgen.New(ctx, db, idgen.Config{Sequence: "s", AllocationSize: 50})
	noErr(t, err, "New")
	_, err = a.NextN(ctx, 100)
	noErr(t, err, "NextN on the pool")
}
