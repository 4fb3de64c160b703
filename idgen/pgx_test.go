package idgen_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/seqrepo/seqrepo/idgen"
)

// openPool returns a pgx pool on a fresh, empty database of its own for t, with at most
// maxConns connections (pgxpool's default when 0) and tracer (none when nil), closed
// when t ends, and the database's DSN.
func openPool(t testing.TB, maxConns int32, tracer pgx.QueryTracer) (*pgxpool.Pool, string) {
	t.Helper()
	dsn := newDatabase(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	noErr(t, err, "parse DSN")
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	noErr(t, err, "pgxpool")
	t.Cleanup(pool.Close)
	return pool, dsn
}

// pgxExec runs statements that must succeed on a pgx handle.
func pgxExec(t testing.TB, q interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := q.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

var _ idgen.PgxQuerier = (*pgxpool.Pool)(nil)

// TestPgxHandles: New, WithTx, Check and CheckOne take every pgx handle as they are
// (*pgxpool.Pool, *pgx.Conn, pgx.Tx), and the keys they hand out are the sequence's.
func TestPgxHandles(t *testing.T) {
	ctx := testContext(t)
	pool, dsn := openPool(t, 0, nil)
	pgxExec(t, pool, `CREATE SEQUENCE s INCREMENT 50`, `CREATE SEQUENCE by10 INCREMENT 10`)
	conn, err := pgx.Connect(ctx, dsn)
	noErr(t, err, "pgx.Connect")
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	tx, err := pool.Begin(ctx)
	noErr(t, err, "begin")
	defer func() { _ = tx.Rollback(ctx) }()

	cfg := idgen.Config{Sequence: "s", AllocationSize: 50, NoPrefetch: true} // exact Stats: no headroom
	handles := []struct {
		name string
		db   idgen.PgxQuerier
	}{{"*pgxpool.Pool", pool}, {"*pgx.Conn", conn}, {"pgx.Tx", tx}}

	// New on each handle reserves its own block, one round trip each.
	var all []int64
	for i, h := range handles {
		a, err := idgen.New(ctx, h.db, cfg)
		noErr(t, err, "New on "+h.name)
		keys, err := a.NextN(ctx, 50)
		noErr(t, err, "NextN on "+h.name)
		equalKeys(t, keys, seqRange(int64(50*i+1), int64(50*i+50)))
		wantStats(t, a, idgen.Stats{RoundTrips: 1, ForegroundRoundTrips: 1, Blocks: 1, Keys: 50, Waits: 1})
		all = append(all, keys...)
	}

	// Through WithTx, each handle refills on it, and the keys go to the shared pool of keys.
	base, err := idgen.New(ctx, pool, cfg)
	noErr(t, err, "New")
	for i, h := range handles {
		keys, err := base.WithTx(h.db).NextN(ctx, 50)
		noErr(t, err, "WithTx("+h.name+").NextN")
		equalKeys(t, keys, seqRange(int64(150+50*i+1), int64(150+50*i+50)))
		all = append(all, keys...)
	}
	wantStats(t, base, idgen.Stats{RoundTrips: 3, ForegroundRoundTrips: 3, Blocks: 3, Keys: 150, Waits: 3})
	requireUnique(t, all)

	// Check and CheckOne, the startup check, on each handle.
	for _, h := range handles {
		noErr(t, idgen.Check(ctx, h.db, cfg), "Check on "+h.name)
		err := idgen.CheckOne(ctx, h.db, idgen.Config{Sequence: "by10", AllocationSize: 50})
		if !errors.Is(err, idgen.ErrIncrementMismatch) {
			t.Errorf("CheckOne on %s of a sequence with INCREMENT 10: %v, want ErrIncrementMismatch", h.name, err)
		}
	}
	noErr(t, tx.Commit(ctx), "commit")

	// A refill on a transaction that has ended fails with pgx's error and hands out nothing.
	_, err = base.WithTx(tx).NextN(ctx, 1)
	if !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("WithTx(a committed pgx.Tx).NextN: %v, want pgx.ErrTxClosed", err)
	}
}

// TestPgxRefusals: through pgx, New refuses what it refuses through database/sql, with
// the same errors, including those the server reports only when the statement runs.
func TestPgxRefusals(t *testing.T) {
	ctx := testContext(t)
	pool, _ := openPool(t, 0, nil)
	pgxExec(t, pool,
		`CREATE TABLE tbl (id bigint PRIMARY KEY)`,
		`CREATE SEQUENCE cyc INCREMENT 50 CYCLE`,
		`CREATE SEQUENCE by10 INCREMENT 10`,
		`CREATE SEQUENCE full100 INCREMENT 50 MAXVALUE 100`,
		`SELECT nextval('full100'), nextval('full100')`,
	)
	for _, tt := range []struct {
		seq  string
		want error
	}{
		{"nope_seq", idgen.ErrSequenceNotFound},
		{"noschema.s", idgen.ErrSequenceNotFound},
		{`"unterminated`, idgen.ErrSequenceNotFound},
		{"tbl", idgen.ErrSequenceNotFound},
		{"cyc", idgen.ErrCycle},
		{"by10", idgen.ErrIncrementMismatch},
		{"full100", idgen.ErrExhausted},
	} {
		a, err := idgen.New(ctx, pool, idgen.Config{Sequence: tt.seq, AllocationSize: 50})
		if a != nil || !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.seq) {
			t.Errorf("New(%s) through pgx: %v, %v; want no Allocator and %v naming it", tt.seq, a, err, tt.want)
		}
	}
}

// TestNotADatabaseHandle: a value that is neither a Querier nor a PgxQuerier is refused
// by New and Check with a message that names its type and what to pass, and an
// Allocator that WithTx gave it fails its refill instead of handing out keys.
func TestNotADatabaseHandle(t *testing.T) {
	ctx := testContext(t)
	pool, _ := openPool(t, 0, nil)
	pgxExec(t, pool, `CREATE SEQUENCE s INCREMENT 50`)
	cfg := idgen.Config{Sequence: "s", AllocationSize: 50}
	type notADB struct{}
	for what, err := range map[string]error{
		"New":      func() error { _, err := idgen.New(ctx, notADB{}, cfg); return err }(),
		"Check":    idgen.Check(ctx, notADB{}, cfg),
		"CheckOne": idgen.CheckOne(ctx, notADB{}, cfg),
	} {
		if !errors.Is(err, idgen.ErrInvalidConfig) || !strings.Contains(err.Error(), "idgen_test.notADB") ||
			!strings.Contains(err.Error(), "*pgxpool.Pool") {
			t.Errorf("%s(notADB{}): %v; want ErrInvalidConfig naming the type and what to pass", what, err)
		}
	}
	if _, err := idgen.New(ctx, notADB{}, cfg); strings.Count(err.Error(), "idgen:") != 1 {
		t.Errorf("New(notADB{}): %v, want one prefix", err)
	}
	if _, err := idgen.New(ctx, nil, cfg); !errors.Is(err, idgen.ErrInvalidConfig) {
		t.Errorf("New(nil): %v, want ErrInvalidConfig", err)
	}
	a, err := idgen.New(ctx, pool, cfg)
	noErr(t, err, "New")
	if _, err := a.WithTx(notADB{}).Next(ctx); err == nil || !strings.Contains(err.Error(), "idgen_test.notADB") {
		t.Errorf("WithTx(notADB{}).Next: %v, want an error naming the type", err)
	}
}

// poolGuard is a pgx tracer whose pool fails every Acquire while it is armed, at
// once, and counts them: a test that arms it learns, without waiting, whether code
// that must not take a connection from the pool tried to.
type poolGuard struct {
	armed    atomic.Bool
	acquires atomic.Int64
}

var errPoolAcquire = errors.New("acquired a connection from the pool while the test forbids it")

func (g *poolGuard) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	if !g.armed.Load() {
		return ctx
	}
	g.acquires.Add(1)
	ctx, cancel := context.WithCancelCause(ctx)
	cancel(errPoolAcquire) // the acquire returns at once instead of waiting for a connection
	return ctx
}

func (g *poolGuard) TraceAcquireEnd(context.Context, *pgxpool.Pool, pgxpool.TraceAcquireEndData) {}

func (g *poolGuard) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (g *poolGuard) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

var _ pgxpool.AcquireTracer = (*poolGuard)(nil)

// TestPgxWithTxOneConnection: on a pgx pool with MaxConns=1, inside a pgx.Tx that holds
// the pool's only connection, alloc.WithTx(tx).NextN refills on the transaction and
// completes. The old workaround, an Allocator on stdlib.OpenDBFromPool(pool), and the
// pool-backed Allocator itself refill through the pool, so they wait for the
// connection the transaction holds until their context ends: the pool guard makes
// that wait fail at once, so the test shows it without waiting.
func TestPgxWithTxOneConnection(t *testing.T) {
	ctx := testContext(t)
	guard := &poolGuard{}
	pool, _ := openPool(t, 1, guard)
	pgxExec(t, pool, `CREATE SEQUENCE s INCREMENT 50`, `CREATE TABLE t (id bigint PRIMARY KEY)`)
	// No prefetch: the test shows where each refill runs, and a background prefetch on
	// the pool would race with the guard.
	alloc, err := idgen.New(ctx, pool, idgen.Config{Sequence: "s", AllocationSize: 50, NoPrefetch: true})
	noErr(t, err, "New")
	viaStdlib := stdlib.OpenDBFromPool(pool)
	defer viaStdlib.Close()
	viaStdlib.SetMaxIdleConns(0) // give the connection back to the pool after each use
	workaround, err := idgen.New(ctx, viaStdlib, idgen.Config{Sequence: "s", AllocationSize: 50, NoPrefetch: true})
	noErr(t, err, "New on stdlib.OpenDBFromPool")

	tx, err := pool.Begin(ctx) // holds the pool's only connection
	noErr(t, err, "begin")
	defer func() { _ = tx.Rollback(ctx) }()
	guard.armed.Store(true)

	keys, err := alloc.WithTx(tx).NextN(ctx, 500)
	if err != nil {
		t.Fatalf("WithTx(tx).NextN with the only connection held by tx: %v", err)
	}
	if n := guard.acquires.Load(); n != 0 {
		t.Fatalf("WithTx(tx).NextN took a connection from the pool %d times", n)
	}
	equalKeys(t, keys, seqRange(1, 500))
	rows := make([][]any, len(keys))
	for i, k := range keys {
		rows[i] = []any{k}
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"id"}, pgx.CopyFromRows(rows))
	if err != nil || n != 500 {
		t.Fatalf("CopyFrom in tx: %d, %v", n, err)
	}

	// The pool-backed Allocator, and the workaround, would wait for the connection tx holds.
	for what, a := range map[string]*idgen.Allocator{"pool-backed": alloc, "stdlib.OpenDBFromPool": workaround} {
		before := guard.acquires.Load()
		if _, err := a.NextN(ctx, 1); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s NextN while tx holds the only connection: %v, want it to go to the pool", what, err)
		}
		if guard.acquires.Load() == before {
			t.Fatalf("%s NextN did not ask the pool for a connection; the guard proves nothing", what)
		}
	}
	guard.armed.Store(false)
	noErr(t, tx.Commit(ctx), "commit")

	// With the connection free, the pool works again, and no key collides.
	keys, err = alloc.NextN(ctx, 100)
	noErr(t, err, "NextN after commit")
	_, err = pool.Exec(ctx, `INSERT INTO t SELECT unnest($1::bigint[])`, keys)
	noErr(t, err, "insert after commit")
}
