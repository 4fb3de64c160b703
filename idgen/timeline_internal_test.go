package idgen

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/seqrepo/seqrepo/internal/pgtest"
)

// timelineExpr is the part of fetchSQL that reads the server's WAL timeline.
const timelineExpr = `('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint`

// fakeTimeline is a Querier that runs every statement on db, except that refills report
// the WAL timeline in tli instead of the server's: a failover without a standby.
type fakeTimeline struct {
	db  *sql.DB
	tli atomic.Int64
}

func (f *fakeTimeline) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if query == fetchSQL {
		query = strings.Replace(query, timelineExpr, strconv.FormatInt(f.tli.Load(), 10)+`::bigint`, 1)
	}
	return f.db.QueryContext(ctx, query, args...)
}

// TestTimelineChangeDropsBlocks: a refill that reports a later WAL timeline than the
// one the pooled blocks were reserved on (a promoted standby) drops them all, and the
// call goes on with blocks from the new timeline; keys a caller had taken from the old
// pool are not handed out either. A refill that reports an older timeline fails with
// ErrOlderTimeline and hands out nothing.
func TestTimelineChangeDropsBlocks(t *testing.T) {
	if !strings.Contains(fetchSQL, timelineExpr) {
		t.Fatal("fetchSQL no longer reads the timeline with timelineExpr; update the test")
	}
	db, err := sql.Open("pgx", pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, `CREATE SEQUENCE s INCREMENT 50`); err != nil {
		t.Fatal(err)
	}
	q := &fakeTimeline{db: db}
	q.tli.Store(1)
	a, err := New(ctx, q, Config{Sequence: "s", AllocationSize: 50, NoPrefetch: true})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := a.NextN(ctx, 10) // 1..10; 11..50 stay in the pool
	if err != nil || keys[0] != 1 || keys[9] != 10 {
		t.Fatalf("NextN(10) = %v, %v; want 1..10", keys, err)
	}

	// Failover: the next refill reports timeline 2. NextN(60) takes 11..50 from the
	// pool first, then refills: every one of those keys was reserved on timeline 1.
	q.tli.Store(2)
	keys, err = a.NextN(ctx, 60)
	if err != nil {
		t.Fatalf("NextN(60) after the timeline changed: %v", err)
	}
	for _, k := range keys {
		if k <= 50 {
			t.Fatalf("key %d, reserved on timeline 1, handed out after a refill saw timeline 2 (keys %v)", k, keys)
		}
	}
	if len(keys) != 60 {
		t.Fatalf("NextN(60) = %d keys, want 60", len(keys))
	}
	a.st.mu.Lock()
	tli := a.st.timeline
	a.st.mu.Unlock()
	if tli != 2 {
		t.Fatalf("timeline %d after the refill, want 2", tli)
	}

	// Keys still pooled from timeline 2 are handed out as usual, without a refill.
	trips := a.Stats().RoundTrips
	k, err := a.Next(ctx)
	if err != nil || k != keys[59]+1 || a.Stats().RoundTrips != trips {
		t.Fatalf("Next = %d, %v after %d; want %d from the pool", k, err, trips, keys[59]+1)
	}

	// A server on an older timeline than seen before (a demoted primary).
	q.tli.Store(1)
	if _, err := a.NextN(ctx, 100); !errors.Is(err, ErrOlderTimeline) {
		t.Fatalf("NextN on timeline 1 after 2: %v, want ErrOlderTimeline", err)
	}
	next, err := a.Next(ctx) // the pool is untouched by the refused refill
	if err != nil || next != k+1 {
		t.Fatalf("Next = %d, %v; want %d from the pool", next, err, k+1)
	}
}

// TestTimelineChangeWithTx: the same through WithTx, where refills run on the
// caller's Querier.
func TestTimelineChangeWithTx(t *testing.T) {
	db, err := sql.Open("pgx", pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, `CREATE SEQUENCE s INCREMENT 50 START 1000`); err != nil {
		t.Fatal(err)
	}
	q := &fakeTimeline{db: db}
	q.tli.Store(5)
	a, err := New(ctx, db, Config{Sequence: "s", AllocationSize: 50, Optimizer: Pooled, NoPrefetch: true})
	if err != nil {
		t.Fatal(err)
	}
	via := a.WithTx(q)
	if keys, err := via.NextN(ctx, 3); err != nil || len(keys) != 3 {
		t.Fatalf("NextN(3) = %v, %v", keys, err) // pooled: 1000, then 1001..1050
	}
	// Failover. Keys in memory are handed out until a refill sees the new timeline:
	// NextN(100) takes 1003..1050 from the pool, then refills on timeline 6.
	q.tli.Store(6)
	keys, err := via.NextN(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k <= 1050 {
			t.Fatalf("key %d from timeline 5 handed out after timeline 6 was seen", k)
		}
	}
}
