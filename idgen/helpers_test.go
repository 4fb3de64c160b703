package idgen_test

import (
	"context"
	"database/sql"
	"sort"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/seqrepo/seqrepo/idgen"
)

// openDB returns a handle on a fresh, empty database of its own for t, closed when t ends.
func openDB(t testing.TB) (*sql.DB, string) {
	t.Helper()
	dsn := newDatabase(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, dsn
}

// mustExec runs statements that must succeed.
func mustExec(t testing.TB, q interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := q.ExecContext(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// newAlloc makes an allocator with PooledLo unless opt says otherwise.
func newAlloc(t testing.TB, q idgen.Querier, seq string, size int, opt ...idgen.Optimizer) *idgen.Allocator {
	t.Helper()
	cfg := idgen.Config{Sequence: seq, AllocationSize: size}
	if len(opt) > 0 {
		cfg.Optimizer = opt[0]
	}
	a, err := idgen.New(context.Background(), q, cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return a
}

// seqRange returns lo, lo+1, …, hi.
func seqRange(lo, hi int64) []int64 {
	out := make([]int64, 0, hi-lo+1)
	for i := int64(0); i <= hi-lo; i++ { // counting up to hi itself would overflow at MaxInt64
		out = append(out, lo+i)
	}
	return out
}

// requireUnique fails t if any key occurs twice, naming the first duplicate.
func requireUnique(t testing.TB, keys []int64) {
	t.Helper()
	sorted := append([]int64(nil), keys...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			t.Fatalf("key %d handed out twice (of %d keys)", sorted[i], len(keys))
		}
	}
}

// equalKeys fails t unless got equals want, saying where they first differ.
func equalKeys(t testing.TB, got, want []int64) {
	t.Helper()
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			t.Fatalf("key %d is %d, want %d (got %d keys, want %d)", i, got[i], want[i], len(got), len(want))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d keys, want %d", len(got), len(want))
	}
}

// wantStats fails t unless a's counters are want.
func wantStats(t testing.TB, a *idgen.Allocator, want idgen.Stats) {
	t.Helper()
	if got := a.Stats(); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
}

// noErr fails t now if err is not nil.
func noErr(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
