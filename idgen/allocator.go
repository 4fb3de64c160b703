package idgen

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Querier is what the allocator needs from a database/sql handle: one query that
// returns rows. *sql.DB, *sql.Tx and *sql.Conn satisfy it, and so does GORM's ConnPool.
// pgx handles are a PgxQuerier; New and WithTx take either (see DB).
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

var (
	_ Querier = (*sql.DB)(nil)
	_ Querier = (*sql.Tx)(nil)
	_ Querier = (*sql.Conn)(nil)
)

// Allocator hands out keys from blocks reserved in one PostgreSQL sequence.
//
// Keys are handed out from memory; a round trip happens only when the reserved
// blocks run out, and then one round trip reserves every block the call needs, shared
// by every caller short of keys at that moment. With prefetch (Config.NoPrefetch), a
// background round trip reserves the next blocks before they run out.
// Keys are unique across goroutines, processes and hosts as long as every writer of
// the sequence uses the same AllocationSize (equal to the sequence INCREMENT) and the
// same Optimizer, or inserts with DEFAULT nextval(...). Keys are not handed out in a
// global order, and keys never used leave gaps: both are normal for sequences.
//
// An Allocator is safe for concurrent use by multiple goroutines.
type Allocator struct {
	st *state
	// q runs refills. via is true for allocators made by WithTx: they refill on q with
	// the caller's context instead of sharing the background refill, because q may be
	// the caller's own transaction.
	q   DB
	via bool
	// verified is set once q was seen to resolve the name to the pinned sequence; only
	// Allocators from WithTx check, and only for names that are ambiguous (state.ambiguous).
	verified atomic.Bool
}

// state is shared by an Allocator and every Allocator that WithTx derives from it.
type state struct {
	cfg Config

	// ambiguous is true while cfg.Sequence is unqualified and sequences of that name
	// exist in more than one schema: then an Allocator from WithTx checks, before its
	// first key, that the name resolves on its Querier to the pinned sequence.
	ambiguous atomic.Bool

	mu sync.Mutex // protects the fields below; never held across a round trip
	// oid is the sequence every refill draws from: the one cfg.Sequence resolved to in
	// New, until that sequence is dropped and the name resolves to a new one (repin).
	oid int64
	// timeline is the server's WAL timeline the pooled blocks were reserved on, 0 before
	// the first refill. A refill on a later timeline (after a failover) drops the pool.
	timeline int64
	// high is the highest key ever accepted into the pool. After a re-pin, floor is the
	// high of the old sequences: a key at or below it is never accepted again.
	high, floor int64
	haveHigh    bool // high is set: a block was accepted
	repinned    bool // floor applies
	// blocks are reserved keys not yet handed out, in the order they are handed out.
	blocks []span
	// refill is the round trip in flight on the default Querier, or nil: at most one at
	// a time. waiters are the callers on the default Querier that found too few keys in
	// memory, in arrival order; every refill serves them as it finishes (prefetch.go).
	refill  *refill
	waiters []*waiter
	// prefetch is true unless cfg.NoPrefetch or q cannot be used from a background
	// goroutine; low is the watermark, in keys, below which a prefetch starts; paused is
	// set by a failed prefetch and cleared by the next refill that succeeds.
	prefetch bool
	low      int64
	paused   bool
	// q is the Querier New was given: the default Querier, which prefetches use.
	q DB
	// epoch counts the times the pool was dropped: after an increment mismatch
	// (dropAll), a failover to a new WAL timeline, or a re-pin to a sequence created
	// again. dropped is the mismatch that ended the latest epoch, or nil when the drop
	// lets calls go on. Keys taken, and blocks reserved by a round trip that began, in an
	// earlier epoch may come from a nextval issued under the old INCREMENT, on the old
	// timeline or from the old sequence: they are neither handed out nor pooled after
	// the drop. With a mismatch, no key is handed out while it lasts; otherwise the
	// calls that held them start over with new blocks.
	epoch   uint64
	dropped error

	fgTrips     atomic.Int64 // round trips a caller waited for
	bgTrips     atomic.Int64 // round trips of prefetches
	reserved    atomic.Int64
	handedOut   atomic.Int64
	waits       atomic.Int64
	prefetchErr atomic.Int64
}

// trips counts n round trips, sent by a prefetch when background is true.
func (st *state) trips(background bool, n int64) {
	if background {
		st.bgTrips.Add(n)
	} else {
		st.fgTrips.Add(n)
	}
}

// Stats are counters of an Allocator since New. Every field only grows.
type Stats struct {
	// RoundTrips counts the queries sent to the database by refills (New's check
	// excluded): ForegroundRoundTrips + BackgroundRoundTrips.
	RoundTrips int64
	Blocks     int64 // blocks reserved with nextval
	Keys       int64 // keys handed out to callers
	// ForegroundRoundTrips counts the round trips of refills started for callers that
	// found too few keys in memory: they waited for it from its start.
	ForegroundRoundTrips int64
	// BackgroundRoundTrips counts the round trips of prefetches: refills started, while
	// no caller was waiting, because the pool fell below its watermark.
	BackgroundRoundTrips int64
	// Waits counts the calls that found too few keys in memory and waited for a round
	// trip: their own, one they shared, or a prefetch still in flight. With prefetch
	// keeping ahead of demand it stays still while keys are handed out.
	Waits int64
	// PrefetchErrors counts the prefetches that failed. A failed prefetch fails no call
	// by itself (see Config.NoPrefetch): the callers that need keys get a refill of
	// their own, and its error.
	PrefetchErrors int64
}

// New checks cfg against the database and returns an Allocator that reserves blocks
// through db. New returns an error, and no Allocator, when cfg is invalid
// (ErrInvalidConfig), the sequence does not exist or is not a sequence
// (ErrSequenceNotFound), is CYCLE (ErrCycle), has an INCREMENT other than
// AllocationSize (ErrIncrementMismatch), or cannot reserve another block (ErrExhausted).
// It also refuses (ErrMixedConfig) a Config whose Optimizer or AllocationSize differs
// from that of any Allocator of the same sequence this process made before: keys of
// that one's blocks may be handed out and written, so the first configuration holds
// for the life of the process.
//
// ctx only bounds New's own check. db, a database/sql or a pgx handle (see DB), is used
// for every later refill, except through the Allocators that WithTx returns, and for
// prefetches, from a background goroutine: with prefetch on, db must be safe for
// concurrent use, as a *sql.DB or a pool is (New does not prefetch on a *sql.Tx,
// *sql.Conn, pgx.Tx or *pgx.Conn).
func New(ctx context.Context, db DB, cfg Config) (*Allocator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := checkDB(cfg.Sequence, db); err != nil {
		return nil, err
	}
	oid, ambiguous, err := describe(ctx, db, cfg)
	if err != nil {
		return nil, err
	}
	st := &state{cfg: cfg, oid: oid}
	st.ambiguous.Store(ambiguous)
	st.initPrefetch(db)
	if err := register(ctx, db, st); err != nil {
		return nil, err
	}
	return &Allocator{st: st, q: db}, nil
}

// Config returns the configuration the Allocator was made with.
func (a *Allocator) Config() Config { return a.st.cfg }

// SequenceOID returns the OID of the sequence the Allocator is pinned to: the one
// Config.Sequence resolved to when New ran, or, after that sequence was dropped and
// created again, the one the name resolved to then. Allocators with equal SequenceOID
// draw from the same sequence, whatever names they were configured with.
func (a *Allocator) SequenceOID() uint32 {
	a.st.mu.Lock()
	defer a.st.mu.Unlock()
	return uint32(a.st.oid)
}

// WithTx returns an Allocator that shares a's reserved keys and statistics but runs
// any refill it needs on q with the caller's context. q is any handle the caller holds:
// a transaction (*sql.Tx, pgx.Tx) or a single connection (*sql.Conn, *pgx.Conn), named
// WithTx after sqlc's Queries.WithTx and repo.Repository.WithTx. Use it when the calling goroutine holds a connection that the
// allocator's default handle might need (a one-connection pool held by the caller's
// transaction would otherwise deadlock). The refill's nextval is not undone if q's
// transaction rolls back, so keys reserved through q stay unique either way.
//
// Refills through q reserve, in the same round trip, the keys prefetch keeps ahead of
// demand; no query runs on q outside the calls made through the returned Allocator.
// When the shared pool runs low, the prefetch runs on a's own database handle.
//
// The returned Allocator is as safe for concurrent use as q is (a *sql.Tx, a pgx.Tx
// and a *pgx.Conn are for one goroutine at a time). Keep it no longer than q: once q's
// transaction has ended, its calls still hand out keys already reserved, but a call
// that needs a refill fails with q's error (sql.ErrTxDone, pgx.ErrTxClosed) and hands
// out nothing; so does one when q is neither a Querier nor a PgxQuerier (see DB).
func (a *Allocator) WithTx(q DB) *Allocator {
	if q == nil {
		return a
	}
	return &Allocator{st: a.st, q: q, via: true}
}

// Stats returns the Allocator's counters. They are shared with the Allocators made by WithTx.
func (a *Allocator) Stats() Stats {
	fg, bg := a.st.fgTrips.Load(), a.st.bgTrips.Load()
	return Stats{
		RoundTrips:           fg + bg,
		Blocks:               a.st.reserved.Load(),
		Keys:                 a.st.handedOut.Load(),
		ForegroundRoundTrips: fg,
		BackgroundRoundTrips: bg,
		Waits:                a.st.waits.Load(),
		PrefetchErrors:       a.st.prefetchErr.Load(),
	}
}

// Next returns one new key. It waits for a round trip only when no reserved key is
// left; ctx bounds that wait, but cancelling it does not cancel a refill that other
// callers share.
func (a *Allocator) Next(ctx context.Context) (int64, error) {
	st := a.st
	st.mu.Lock()
	if len(st.blocks) > 0 {
		k := st.popLocked()
		a.prefetchLocked()
		st.mu.Unlock()
		st.handedOut.Add(1)
		return k, nil
	}
	st.mu.Unlock()
	keys, err := a.NextN(ctx, 1)
	if err != nil {
		return 0, err
	}
	return keys[0], nil
}

// NextN returns n new keys. Keys already reserved are used first; every block still
// needed is reserved in one round trip (SELECT nextval … FROM generate_series), which
// the callers short of keys at the same moment share. n == 0 returns nil without a
// round trip. On error no key is handed out.
//
// ctx bounds the wait; a refill shared with other callers is not cancelled with it.
func (a *Allocator) NextN(ctx context.Context, n int) ([]int64, error) {
	if n < 0 {
		return nil, fmt.Errorf("idgen: NextN(%d): n must not be negative", n)
	}
	if n == 0 {
		return nil, nil
	}
	st := a.st
	if a.via && st.ambiguous.Load() && !a.verified.Load() {
		if err := a.verify(ctx); err != nil {
			return nil, err
		}
	}
	keys := make([]int64, 0, n)
	var epoch uint64 // the epoch keys were taken in
	waited := false
	for {
		st.mu.Lock()
		if len(keys) > 0 && st.epoch != epoch { // keys from before a drop: see state.epoch
			if err := st.dropped; err != nil {
				st.mu.Unlock()
				return nil, err
			}
			keys = keys[:0] // dropped after a failover or a re-pin: start over
		}
		if len(keys) == 0 {
			epoch = st.epoch
		}
		keys = st.takeLocked(keys, n-len(keys))
		if len(keys) == n {
			a.prefetchLocked()
			st.mu.Unlock()
			st.handedOut.Add(int64(n))
			return keys, nil
		}
		if !waited {
			waited = true
			st.waits.Add(1)
		}
		st.lateLocked()
		want := n - len(keys)
		var got []int64
		var gotEpoch uint64
		var err error
		if a.via {
			more := st.headroomLocked()
			st.mu.Unlock()
			got, gotEpoch, err = a.refillVia(ctx, want, more)
		} else {
			got, gotEpoch, err = a.wait(ctx, want) // unlocks st.mu
		}
		if err != nil {
			return nil, st.fail(keys, epoch, err)
		}
		if keys, epoch, err = st.join(keys, epoch, got, gotEpoch); err != nil {
			return nil, err
		}
	}
}

// join adds got, keys taken in gotEpoch, to keys, taken in epoch. When a drop came in
// between (see state.epoch), keys are not handed out: the call fails with the mismatch
// that ended their epoch, or goes on with got alone. (Comparing keys against the epoch
// of before the drop would throw got away too, a block per failover.)
func (st *state) join(keys []int64, epoch uint64, got []int64, gotEpoch uint64) ([]int64, uint64, error) {
	if len(keys) == 0 || gotEpoch == epoch {
		return append(keys, got...), gotEpoch, nil
	}
	st.mu.Lock()
	err := st.dropped
	current := st.epoch == gotEpoch
	st.mu.Unlock()
	if err != nil && current {
		return nil, 0, err
	}
	return append(keys[:0], got...), gotEpoch, nil
}

// runRefill reserves want keys on the default Querier, puts them in the pool, serves
// the waiters in arrival order and starts the next refill when some are still short
// (or the pool is below its watermark). A refill that fails fails the waiters with its
// error, except a prefetch's: its waiters get a refill of their own.
func (a *Allocator) runRefill(ctx context.Context, r *refill, want int) {
	blocks, epoch, err := a.reserve(ctx, a.st.q, want, r.background)
	st := a.st
	st.mu.Lock()
	if st.epoch != epoch {
		// Reserved before a drop (see state.epoch): discard. After a mismatch the
		// waiters fail with it; otherwise the next refill serves them.
		blocks = nil
		if err == nil {
			err = st.dropped
		}
	}
	st.acceptLocked(blocks) // blocks that fit below MAXVALUE stay even when err says the rest did not
	st.refill = nil
	switch {
	case err != nil && r.background:
		st.prefetchErr.Add(1)
		st.paused = true
		st.serveLocked()
		if len(st.waiters) > 0 {
			a.startLocked(context.Background())
		}
	case err != nil:
		st.serveLocked() // what the refill kept below MAXVALUE
		st.failWaitersLocked(err)
	default:
		st.paused = false
		st.serveLocked()
		if len(st.waiters) > 0 {
			a.startLocked(context.Background())
		} else {
			a.prefetchLocked()
		}
	}
	st.mu.Unlock()
	close(r.done)
}

// refillVia reserves the blocks for want+more keys on a's own Querier, synchronously
// with the caller's ctx, and returns want keys and their epoch; the rest go to the
// shared pool.
func (a *Allocator) refillVia(ctx context.Context, want, more int) ([]int64, uint64, error) {
	blocks, epoch, err := a.reserve(ctx, a.q, want+more, false)
	st := a.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.epoch != epoch {
		// Reserved before a drop (see state.epoch): discard. nil keys and a nil error
		// send the caller round again.
		if err != nil {
			return nil, 0, err
		}
		return nil, 0, st.dropped
	}
	st.acceptLocked(blocks) // blocks that fit below MAXVALUE stay even when err says the rest did not
	if err != nil {
		return nil, 0, err
	}
	keys := st.takeLocked(make([]int64, 0, want), want)
	st.paused = false // refills work again (callers in transactions refill only here)
	a.prefetchLocked()
	return keys, epoch, nil
}

// reserve runs round trips until the blocks hold at least want keys. One round trip
// suffices except for the Pooled optimizer's first value of a fresh sequence, a block
// of one key, and after a failover or a re-pin, which start over. It also returns the
// epoch the blocks belong to. With an error matching ErrExhausted it also returns the
// blocks that fit below MAXVALUE, which the caller keeps. background says the round
// trips are a prefetch's, for Stats.
func (a *Allocator) reserve(ctx context.Context, q DB, want int, background bool) ([]span, uint64, error) {
	st := a.st
	st.mu.Lock()
	epoch, oid, floor, repinned := st.epoch, st.oid, st.floor, st.repinned
	st.mu.Unlock()
	size := int64(st.cfg.AllocationSize)
	var blocks []span
	var have int64
	for repins := 0; have < int64(want); {
		count := (int64(want) - have + size - 1) / size
		st.trips(background, 1)
		got, err := fetch(ctx, q, st.cfg, oid, int(count))
		if errors.Is(err, errPinLost) {
			if repins++; repins > 2 {
				return nil, 0, &SequenceError{Sequence: st.cfg.Sequence, Err: ErrSequenceChanged,
					Detail: "the name kept resolving to another sequence than the one just pinned"}
			}
			if err := a.repin(ctx, q, oid, background); err != nil {
				return nil, 0, err
			}
			st.mu.Lock()
			epoch, oid, floor, repinned = st.epoch, st.oid, st.floor, st.repinned
			st.mu.Unlock()
			blocks, have = nil, 0
			continue
		}
		if errors.Is(err, ErrIncrementMismatch) {
			st.dropAll(err)
		}
		if err != nil && !errors.Is(err, ErrExhausted) {
			return nil, 0, err
		}
		st.reserved.Add(int64(len(got.blocks)))
		st.ambiguous.Store(got.ambiguous)
		st.mu.Lock()
		if got.timeline < st.timeline {
			st.mu.Unlock()
			return nil, 0, &SequenceError{Sequence: st.cfg.Sequence, Err: ErrOlderTimeline,
				Detail: fmt.Sprintf("the server is on WAL timeline %d, a refill before saw %d", got.timeline, st.timeline)}
		}
		if got.timeline > st.timeline {
			if st.timeline != 0 {
				// A failover: blocks reserved on an earlier timeline may be issued again by
				// the promoted server. Drop them, and this call's earlier ones; go on with
				// this statement's, unless another drop made them stale already.
				current := st.epoch == epoch
				st.dropLocked(nil)
				if current {
					epoch = st.epoch
				}
				blocks, have = nil, 0
			}
			st.timeline = got.timeline
		}
		st.mu.Unlock()
		for _, b := range got.blocks {
			if repinned && b.last <= floor {
				continue // below a key reserved from the sequence's former incarnation
			}
			if repinned && b.next <= floor {
				b.next = floor + 1
			}
			have += b.len()
			blocks = append(blocks, b)
		}
		if err != nil { // ErrExhausted, with the blocks that fit
			return blocks, epoch, err
		}
	}
	return blocks, epoch, nil
}

// repin moves the Allocator to the sequence its name now resolves to on q, when the
// sequence it was pinned to (oid) no longer exists: dropped, then created again by a
// migration or a test that resets its schema. It drops every key still held, checks
// the new sequence as New does, and moves it forward past every key reserved from the
// old one (advance), so that this process never hands out a key twice. When the old
// sequence still exists, the name means another sequence on q (another search_path),
// and it returns ErrSequenceChanged.
func (a *Allocator) repin(ctx context.Context, q DB, oid int64, background bool) error {
	st := a.st
	seq := st.cfg.Sequence
	st.trips(background, 1)
	now, exists, err := resolve(ctx, q, st.cfg, oid)
	if err != nil {
		return err
	}
	if now == 0 {
		return &SequenceError{Sequence: seq, Err: ErrSequenceNotFound}
	}
	if now == oid {
		return nil // the name resolves to the pinned sequence again
	}
	if exists {
		return &SequenceError{Sequence: seq, Err: ErrSequenceChanged,
			Detail: fmt.Sprintf("on this connection the name resolves to the sequence with OID %d, not to the one with OID %d the Allocator is pinned to, which still exists: a different search_path? Use a schema-qualified name", now, oid)}
	}
	st.mu.Lock()
	current := st.oid
	if current == oid {
		// The pinned sequence is gone: no key reserved from it is handed out from now on,
		// even if checking the new one fails (dropLocked ends the epoch, so a prefetch
		// begun before is dropped too).
		st.dropLocked(nil)
	}
	st.mu.Unlock()
	if current != oid { // another call re-pinned already
		return nil
	}
	st.trips(background, 2)
	newOID, ambiguous, err := describe(ctx, q, st.cfg)
	if err != nil {
		return err
	}
	if err := register(ctx, q, &state{cfg: st.cfg, oid: newOID}); err != nil {
		return err
	}
	st.mu.Lock()
	if st.oid != oid {
		st.mu.Unlock()
		return nil
	}
	st.oid = newOID
	st.ambiguous.Store(ambiguous)
	st.dropLocked(nil)
	if !st.haveHigh {
		st.mu.Unlock()
		return nil // nothing was ever reserved from the old sequence
	}
	if !st.repinned || st.high > st.floor {
		st.floor = st.high
	}
	st.repinned = true
	floor := st.floor
	st.mu.Unlock()
	return advance(ctx, q, st.cfg, newOID, floor)
}

// verify checks, for an Allocator from WithTx whose name is ambiguous, that the name
// resolves on a.q to the pinned sequence, before any key is handed out through it.
func (a *Allocator) verify(ctx context.Context) error {
	st := a.st
	st.mu.Lock()
	oid := st.oid
	st.mu.Unlock()
	st.trips(false, 1)
	now, _, err := resolve(ctx, a.q, st.cfg, oid)
	if err != nil {
		return err
	}
	if now != oid {
		return &SequenceError{Sequence: st.cfg.Sequence, Err: ErrSequenceChanged,
			Detail: fmt.Sprintf("on this connection the unqualified name resolves to the sequence with OID %d, not to the one with OID %d the Allocator is pinned to; sequences of that name exist in several schemas: use a schema-qualified name, or an Allocator per schema", now, oid)}
	}
	a.verified.Store(true)
	return nil
}

// acceptLocked puts blocks reserved in the current epoch at the end of the pool, after
// the keys still in it (a prefetch's blocks come after the ones being handed out);
// st.mu must be held.
func (st *state) acceptLocked(blocks []span) {
	for _, b := range blocks {
		if !st.haveHigh || b.last > st.high {
			st.high, st.haveHigh = b.last, true
		}
	}
	st.blocks = append(st.blocks, blocks...)
}

// popLocked hands out the next key; st.mu must be held and st.blocks non-empty.
func (st *state) popLocked() int64 {
	b := &st.blocks[0]
	k := b.next
	if b.next == b.last {
		st.blocks = st.blocks[1:]
	} else {
		b.next++
	}
	return k
}

// takeLocked appends up to n keys from the pool to keys; st.mu must be held.
func (st *state) takeLocked(keys []int64, n int) []int64 {
	for n > 0 && len(st.blocks) > 0 {
		b := &st.blocks[0]
		take := b.len()
		if take > int64(n) {
			take = int64(n)
		}
		for i := int64(0); i < take; i++ { // b.next+take wraps when the block ends at MaxInt64
			keys = append(keys, b.next+i)
		}
		n -= int(take)
		if take == b.len() {
			st.blocks = st.blocks[1:]
		} else {
			b.next += take
		}
	}
	return keys
}

// fail ends a call that took keys in epoch but could not complete with err. The keys
// go back to the front of the pool so the failed call loses none, unless err is an
// increment mismatch or a mismatch has dropped the pool since epoch: keys reserved
// under the old INCREMENT are dropped, not handed out later.
func (st *state) fail(keys []int64, epoch uint64, err error) error {
	if len(keys) == 0 || errors.Is(err, ErrIncrementMismatch) {
		return err
	}
	st.mu.Lock()
	if st.epoch == epoch {
		st.giveBackLocked(keys)
	}
	st.mu.Unlock()
	return err
}

// giveBackLocked puts keys of the current epoch back at the front of the pool; st.mu
// must be held.
func (st *state) giveBackLocked(keys []int64) {
	var back []span
	for _, k := range keys {
		if n := len(back); n > 0 && back[n-1].last+1 == k {
			back[n-1].last = k
			continue
		}
		back = append(back, span{next: k, last: k})
	}
	st.blocks = append(back, st.blocks...)
}

// dropAll forgets every reserved key and starts a new epoch ended by the mismatch err:
// after the sequence's INCREMENT changed, keys reserved under the old one may overlap
// blocks other writers get under the new one.
func (st *state) dropAll(err error) {
	st.mu.Lock()
	st.dropLocked(err)
	st.mu.Unlock()
}

// dropLocked forgets every reserved key and starts a new epoch that err ended (nil:
// calls go on with new blocks); st.mu must be held.
func (st *state) dropLocked(err error) {
	st.blocks = nil
	st.epoch++
	st.dropped = err
	for _, w := range st.waiters { // the keys a waiter was given so far are pool keys too
		w.need += len(w.keys)
		w.keys = w.keys[:0]
	}
}
