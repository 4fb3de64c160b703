package idgen

import (
	"context"
	"database/sql"
	"errors"
	"github.com/jackc/pgx/v5"
	"slices"
)

// How refills on the default Querier are scheduled
//
// At most one refill is in flight at a time (state.refill). A caller that finds too
// few keys in memory takes what there is, queues as a waiter for the rest, and starts
// a refill unless one is in flight. A refill, as it finishes, hands its keys to the
// waiters in arrival order and, when some are still short (they came while it was in
// flight), starts the next one at once, sized for all of them: callers that run short
// at the same moment share one round trip instead of making one each in a row.
//
// Prefetch: when a take leaves fewer than low keys in the pool and no refill is in
// flight, a background refill (a prefetch) reserves enough blocks to bring the pool back
// to 2*low, so steady-state callers find their keys in memory. A refill started for
// waiters reserves that headroom too, in the same round trip. low starts at one block
// and doubles, up to maxLow keys, each time a caller runs short while a prefetch is
// still in flight: demand outran it. Every refill is a goroutine of its own that ends
// with its round trip; an Allocator nobody uses holds none.

// maxLow caps the watermark, in keys: at most 2*maxLow keys (or two blocks, when a
// block is larger) are held ahead of demand, and lost as a gap when the process ends.
const maxLow = 1024

// refill is one round trip in flight on the default Querier.
type refill struct {
	done       chan struct{} // closed once it has finished and served the waiters
	background bool          // a prefetch: no caller was waiting when it started
	late       bool          // a caller ran short while it was in flight; protected by state.mu
}

// waiter is a caller on the default Querier waiting for keys. Its fields are protected
// by state.mu until ready is closed, and final afterwards.
type waiter struct {
	need  int     // keys still missing
	keys  []int64 // keys given so far, all of the current epoch: a drop takes them back
	epoch uint64  // the epoch of keys, once served
	err   error   // why the refill failed it, instead of serving it
	done  bool    // ready is closed
	ready chan struct{}
}

// initPrefetch sets up prefetching on q, the database handle New was given. A *sql.Tx,
// *sql.Conn, pgx.Tx or *pgx.Conn is for one goroutine at a time, so no background query
// runs on it.
func (st *state) initPrefetch(q DB) {
	st.q = q
	st.low = int64(st.cfg.AllocationSize)
	switch q.(type) {
	case *sql.Tx, *sql.Conn, pgx.Tx, *pgx.Conn:
		return
	}
	st.prefetch = !st.cfg.NoPrefetch
}

// wait queues the caller for want keys, starts a refill unless one is in flight, and
// waits until a refill serves it, fails it, or ctx ends. It returns the keys and their
// epoch. st.mu must be held; wait unlocks it.
func (a *Allocator) wait(ctx context.Context, want int) ([]int64, uint64, error) {
	st := a.st
	w := &waiter{need: want, keys: make([]int64, 0, want), ready: make(chan struct{})}
	st.waiters = append(st.waiters, w)
	if st.refill == nil {
		// The refill serves everyone waiting, so it runs with the caller's values but
		// without its cancellation.
		a.startLocked(context.WithoutCancel(ctx))
	}
	st.mu.Unlock()
	select {
	case <-w.ready:
	case <-ctx.Done():
		st.mu.Lock()
		if !w.done {
			st.removeLocked(w)
			st.giveBackLocked(w.keys)
			st.mu.Unlock()
			return nil, 0, ctx.Err()
		}
		st.mu.Unlock() // served as ctx ended: the keys are ours
	}
	if w.err != nil {
		return nil, 0, w.err
	}
	return w.keys, w.epoch, nil
}

// startLocked starts a refill on the default Querier for every waiter's missing keys,
// plus the headroom prefetch keeps; with no waiter it is a prefetch. st.mu must be held
// and no refill in flight.
func (a *Allocator) startLocked(ctx context.Context) {
	st := a.st
	var need int64
	for _, w := range st.waiters {
		need += int64(w.need)
	}
	want := need
	if st.prefetch {
		want += 2 * st.low
	}
	want -= st.availLocked(want)
	r := &refill{done: make(chan struct{}), background: len(st.waiters) == 0}
	st.refill = r
	go a.runRefill(ctx, r, int(max(want, 1)))
}

// prefetchLocked starts a prefetch when the pool is below the watermark and no refill
// is in flight; st.mu must be held.
func (a *Allocator) prefetchLocked() {
	st := a.st
	if !st.prefetch || st.paused || st.refill != nil || st.availLocked(st.low) >= st.low {
		return
	}
	a.startLocked(context.Background())
}

// lateLocked notes a caller that ran short of keys: when a prefetch is in flight, it
// started too late for the demand, and the watermark doubles (once per prefetch, up to
// maxLow keys or one block). st.mu must be held.
func (st *state) lateLocked() {
	r := st.refill
	if r == nil || !r.background || r.late {
		return
	}
	r.late = true
	st.low = min(2*st.low, max(maxLow, int64(st.cfg.AllocationSize)))
}

// headroomLocked is how many keys a refill through WithTx reserves beyond the caller's,
// for the pool: the prefetch's share, unless a prefetch is in flight already; st.mu
// must be held. The pool itself is never refilled through a caller's Querier
// otherwise: that may be a transaction about to end, and is not for background use.
func (st *state) headroomLocked() int {
	if !st.prefetch || st.refill != nil {
		return 0
	}
	return int(2 * st.low)
}

// availLocked returns how many keys the pool holds, counting no further than limit;
// st.mu must be held.
func (st *state) availLocked(limit int64) int64 {
	var n int64
	for _, b := range st.blocks {
		if n >= limit {
			break
		}
		n += b.len()
	}
	return n
}

// serveLocked hands keys from the pool to the waiters in arrival order, as far as
// they go; st.mu must be held.
func (st *state) serveLocked() {
	served := 0
	for _, w := range st.waiters {
		had := len(w.keys)
		w.keys = st.takeLocked(w.keys, w.need)
		w.need -= len(w.keys) - had
		if w.need > 0 {
			break
		}
		w.epoch, w.done = st.epoch, true
		close(w.ready)
		served++
	}
	st.waiters = slices.Delete(st.waiters, 0, served)
}

// failWaitersLocked ends every waiter with err, giving the keys they were given back
// to the pool (except after an increment mismatch, which dropped them); st.mu must be
// held.
func (st *state) failWaitersLocked(err error) {
	for _, w := range st.waiters {
		if !errors.Is(err, ErrIncrementMismatch) {
			st.giveBackLocked(w.keys)
		}
		w.keys, w.err, w.done = nil, err, true
		close(w.ready)
	}
	clear(st.waiters)
	st.waiters = st.waiters[:0]
}

// removeLocked takes w, whose caller gave up, out of the queue; st.mu must be held.
func (st *state) removeLocked(w *waiter) {
	if i := slices.Index(st.waiters, w); i >= 0 {
		st.waiters = slices.Delete(st.waiters, i, i+1) // clears the vacated element
	}
}
