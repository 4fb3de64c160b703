package idgen

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
)

// fetchSQL reserves up to $2 blocks from the sequence whose OID is $1 in one round trip
// and reads, in the same statement, the parameters each nextval value was issued under,
// the server's WAL timeline, and whether the name is still safe to use.
//
// It always returns at least one row; s.v is NULL in it when no value was taken.
//
// The Allocator is pinned to the sequence New resolved its name to. pinned checks,
// before any nextval runs, that the name ($3) still resolves to that sequence on this
// connection; when it does not (a different search_path, or the sequence was dropped
// and created again) no nextval runs and no value is burned. Without the pin, keys
// reserved from two different sequences would share one pool.
//
// The filter on each series row runs just before that row's nextval, so a nextval runs
// only while the sequence can still issue a value at or below MAXVALUE: a request for
// more blocks than are left takes the ones that fit instead of failing with all of
// them burned.
//
// timeline is the server's current WAL timeline, which a promotion raises at once;
// ambiguous is true when $3 is unqualified and sequences of that name exist in more
// than one schema (schema per tenant); $5 says whether $3 is unqualified. When $4 is true, durable writes a transactional
// WAL record (an empty logical decoding message), so the statement's commit waits for
// the synchronous standbys like any writing transaction: nextval alone writes no WAL
// when its values are covered by a record another session logged, and a commit that
// wrote none does not wait.
//
// The order matters. nextval takes a RowExclusiveLock on the sequence that is held to
// the end of the transaction, and ALTER SEQUENCE needs a ShareRowExclusiveLock, so once
// the first nextval has run, the INCREMENT cannot change under this statement. The
// CASE makes pg_sequence_parameters depend on the row nextval produced, which forces
// the planner to call it after nextval (without it, the planner runs it first, and an
// ALTER committed in between would go unseen).
const fetchSQL = `SELECT w.pinned, w.timeline, w.ambiguous, w.durable IS NOT NULL, s.v, p.increment, p.start_value, p.maximum_value
FROM (SELECT $3::text::regclass = $1::bigint::oid::regclass AS pinned,
             ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint AS timeline,
             CASE WHEN $5::bool THEN
                  (SELECT count(*) > 1 FROM pg_class AS c
                   WHERE c.relkind = 'S' AND c.relname = (SELECT r.relname FROM pg_class AS r WHERE r.oid = $1::bigint::oid))
             ELSE false END AS ambiguous,
             CASE WHEN $4::bool THEN pg_logical_emit_message(true, 'idgen', '') END AS durable,
             (SELECT q.seqincrement FROM pg_sequence AS q WHERE q.seqrelid = $1::bigint::oid) AS incr,
             (SELECT q.seqmax FROM pg_sequence AS q WHERE q.seqrelid = $1::bigint::oid) AS max) AS w
LEFT JOIN LATERAL (
      SELECT nextval($1::bigint::oid::regclass) AS v FROM generate_series(1, $2::int)
      WHERE CASE WHEN w.pinned THEN
            coalesce(pg_sequence_last_value($1::bigint::oid::regclass)::numeric + w.incr <= w.max, true)
            ELSE false END) AS s ON true
LEFT JOIN LATERAL pg_sequence_parameters(CASE WHEN s.v IS NOT NULL THEN $1::bigint::oid::regclass END) AS p ON true`

// describeSQL reads what New checks before it hands out anything: the sequence, its
// parameters and last value, the marker seqrepo's migrations write in its comment
// (marker.go), and whether an unqualified name names sequences in several schemas.
const describeSQL = `SELECT c.oid::bigint, c.relkind::text, s.seqstart, s.seqincrement, s.seqmax, s.seqcycle,
	CASE WHEN c.relkind = 'S' THEN pg_sequence_last_value(c.oid) END,
	obj_description(c.oid, 'pg_class'),
	CASE WHEN $2::bool THEN
		(SELECT count(*) > 1 FROM pg_class AS o WHERE o.relname = c.relname AND o.relkind = 'S')
	ELSE false END
FROM pg_class c LEFT JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE c.oid = $1::text::regclass`

// unqualified reports whether a sequence name, as regclass reads it, names no schema:
// it has no dot outside double quotes, so the search_path decides what it means.
func unqualified(name string) bool {
	quoted := false
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '"':
			quoted = !quoted
		case '.':
			if !quoted {
				return false
			}
		}
	}
	return true
}

// fetched is what one refill statement returned.
type fetched struct {
	blocks    []span // in nextval order
	timeline  int64  // the server's WAL timeline when the statement ran
	ambiguous bool   // the unqualified name now names sequences in several schemas
}

// errPinLost is returned by fetch when the name no longer resolves to the sequence the
// Allocator is pinned to, on the connection the statement ran on. No value was taken.
var errPinLost = errors.New("idgen: name no longer resolves to the pinned sequence")

// fetch reserves up to count blocks from the sequence oid through q in one round trip
// and returns them in nextval order. No block is returned unless every value was
// issued under an INCREMENT equal to the allocation size. When fewer than count blocks
// fit below MAXVALUE, it returns the ones that fit together with an error matching
// ErrExhausted: they are the caller's to keep.
func fetch(ctx context.Context, q DB, cfg Config, oid int64, count int) (fetched, error) {
	rows, err := query(ctx, q, fetchSQL, oid, count, cfg.Sequence, !cfg.NoDurableRefill, unqualified(cfg.Sequence))
	if err != nil {
		return fetched{}, classify(cfg.Sequence, err)
	}
	defer rows.Close()
	size := int64(cfg.AllocationSize)
	var f fetched
	f.blocks = make([]span, 0, count)
	pinned, durable := false, false
	var mismatch *IncrementMismatchError
	var blockErr error
	for rows.Next() {
		var v, increment, start, max sql.NullInt64
		if err := rows.Scan(&pinned, &f.timeline, &f.ambiguous, &durable, &v, &increment, &start, &max); err != nil {
			return fetched{}, fmt.Errorf("idgen: sequence %s: scan nextval: %w", cfg.Sequence, err)
		}
		if !v.Valid {
			continue // no value taken: the pin failed or nothing fits below MAXVALUE
		}
		p := seqParams{increment: increment.Int64, start: start.Int64, max: max.Int64}
		if p.increment != size {
			mismatch = &IncrementMismatchError{Sequence: cfg.Sequence, Increment: p.increment, AllocationSize: cfg.AllocationSize}
			continue // read the rest so the statement completes; hand out nothing
		}
		b, err := blockOf(cfg.Optimizer, size, p, v.Int64)
		if errors.Is(err, ErrExhausted) && cfg.Optimizer == PooledLo && v.Int64 <= p.max {
			// The last block below MAXVALUE: v..MAXVALUE is this writer's alone, since the
			// sequence's next value would pass MAXVALUE.
			b, err = span{next: v.Int64, last: p.max}, nil
		}
		if err != nil {
			blockErr = err
			continue
		}
		f.blocks = append(f.blocks, b)
	}
	if err := rows.Err(); err != nil {
		return fetched{}, classify(cfg.Sequence, err)
	}
	if !pinned {
		return fetched{}, errPinLost
	}
	if mismatch != nil {
		return fetched{}, mismatch
	}
	if blockErr != nil {
		return fetched{}, &SequenceError{Sequence: cfg.Sequence, Err: blockErr}
	}
	if durable == cfg.NoDurableRefill {
		return fetched{}, fmt.Errorf("idgen: sequence %s: the refill's durable WAL write did not run", cfg.Sequence)
	}
	if len(f.blocks) < count {
		return f, &SequenceError{Sequence: cfg.Sequence, Err: ErrExhausted,
			Detail: fmt.Sprintf("%d of the %d blocks asked for fit below MAXVALUE", len(f.blocks), count)}
	}
	return f, nil
}

// describe checks, before any key is handed out, that cfg's sequence exists, is a
// sequence, does not CYCLE, has INCREMENT equal to the allocation size, carries no
// marker of another configuration, and can still reserve a key. It returns the
// sequence's OID, which the name resolves to on q, and whether an unqualified name
// also names sequences in other schemas.
func describe(ctx context.Context, q DB, cfg Config) (oid int64, ambiguous bool, err error) {
	rows, err := query(ctx, q, describeSQL, cfg.Sequence, unqualified(cfg.Sequence))
	if err != nil {
		return 0, false, classify(cfg.Sequence, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return 0, false, classify(cfg.Sequence, err)
		}
		return 0, false, &SequenceError{Sequence: cfg.Sequence, Err: ErrSequenceNotFound}
	}
	var (
		relkind               string
		seqOID                int64
		start, increment, max sql.NullInt64
		cycle                 sql.NullBool
		lastValue             sql.NullInt64
		comment               sql.NullString
	)
	if err := rows.Scan(&seqOID, &relkind, &start, &increment, &max, &cycle, &lastValue, &comment, &ambiguous); err != nil {
		return 0, false, fmt.Errorf("idgen: sequence %s: %w", cfg.Sequence, err)
	}
	if err := rows.Close(); err != nil {
		return 0, false, classify(cfg.Sequence, err)
	}
	oid = seqOID
	if relkind != "S" {
		return 0, false, &SequenceError{Sequence: cfg.Sequence, Detail: fmt.Sprintf("relation kind %q is not a sequence", relkind), Err: ErrSequenceNotFound}
	}
	if cycle.Bool {
		return 0, false, &SequenceError{Sequence: cfg.Sequence, Detail: "ALTER SEQUENCE … NO CYCLE", Err: ErrCycle}
	}
	size := int64(cfg.AllocationSize)
	if increment.Int64 != size {
		return 0, false, &IncrementMismatchError{Sequence: cfg.Sequence, Increment: increment.Int64, AllocationSize: cfg.AllocationSize}
	}
	if err := checkMarker(cfg, comment); err != nil {
		return 0, false, err
	}
	next := start.Int64
	if lastValue.Valid {
		// last+increment > max, written so that neither side can wrap around int64
		// (increment equals size here, so it is at least 1).
		if lastValue.Int64 > math.MaxInt64-increment.Int64 || lastValue.Int64+increment.Int64 > max.Int64 {
			return 0, false, &SequenceError{Sequence: cfg.Sequence, Detail: fmt.Sprintf("last value %d is at MAXVALUE %d", lastValue.Int64, max.Int64), Err: ErrExhausted}
		}
		next = lastValue.Int64 + increment.Int64
	}
	if _, err := blockOf(cfg.Optimizer, size, seqParams{increment: increment.Int64, start: start.Int64, max: max.Int64}, next); err != nil {
		if errors.Is(err, ErrExhausted) {
			return 0, false, &SequenceError{Sequence: cfg.Sequence, Detail: fmt.Sprintf("next block from %d does not fit below MAXVALUE %d", next, max.Int64), Err: ErrExhausted}
		}
		return 0, false, err
	}
	return oid, ambiguous, nil
}

// resolveSQL reads, on one connection, the OID the name resolves to now (NULL when it
// names nothing) and whether the sequence the Allocator is pinned to still exists.
const resolveSQL = `SELECT to_regclass($1::text)::oid::bigint,
	EXISTS (SELECT 1 FROM pg_class AS c WHERE c.oid = $2::bigint::oid AND c.relkind = 'S')`

// resolve returns the OID cfg.Sequence resolves to on q (0 when it names nothing) and
// whether the sequence with OID pinned still exists.
func resolve(ctx context.Context, q DB, cfg Config, pinned int64) (now int64, exists bool, err error) {
	rows, err := query(ctx, q, resolveSQL, cfg.Sequence, pinned)
	if err != nil {
		return 0, false, classify(cfg.Sequence, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return 0, false, classify(cfg.Sequence, rows.Err())
	}
	var oid sql.NullInt64
	if err := rows.Scan(&oid, &exists); err != nil {
		return 0, false, fmt.Errorf("idgen: sequence %s: %w", cfg.Sequence, err)
	}
	return oid.Int64, exists, classify0(cfg.Sequence, rows.Close())
}

// classify0 is classify that keeps a nil error nil.
func classify0(seq string, err error) error {
	if err == nil {
		return nil
	}
	return classify(seq, err)
}

// advanceSQL moves the sequence forward with nextval, $2 times, and returns the last
// value: unlike setval, nextval can never move a sequence backwards, whatever other
// writers do at the same time.
const advanceSQL = `SELECT max(nextval($1::bigint::oid::regclass)) FROM generate_series(1, $2::bigint)`

// lastValueSQL reads the last value a sequence issued (NULL when it has not been
// called since it was created, RESTARTed or setval(…, false)) and its START; both need
// only USAGE on the sequence.
const lastValueSQL = `SELECT pg_sequence_last_value($1::bigint::oid::regclass), s.seqstart
FROM pg_sequence AS s WHERE s.seqrelid = $1::bigint::oid`

// advance moves the sequence oid forward until it has issued a value at or above
// floor, so that every block it issues later, under either optimizer, lies above floor:
// pooled-lo's block starts at the next value, which is above floor, and pooled's at
// that value minus AllocationSize plus one, which is above floor too. It takes one
// nextval per block skipped, in a statement or two, and never moves the sequence back.
func advance(ctx context.Context, q DB, cfg Config, oid, floor int64) error {
	size := int64(cfg.AllocationSize)
	for {
		var last sql.NullInt64
		var start int64
		if err := queryRow(ctx, q, cfg, lastValueSQL, []any{oid}, &last, &start); err != nil {
			return err
		}
		var n int64 // nextval calls until one returns floor or more
		switch {
		case last.Valid && last.Int64 >= floor:
			return nil
		case last.Valid:
			n = steps(last.Int64, floor, size) // values last+size, last+2*size, …
		case start > floor:
			// Not called since START: it issues START next, a block of its own under
			// pooled, above floor. (After setval(…, false) to a lower value, a refill's
			// blocks are still cut at floor: see state.floor.)
			return nil
		default:
			n = steps(start, floor, size) + 1 // values start, start+size, …
		}
		var v int64
		if err := queryRow(ctx, q, cfg, advanceSQL, []any{oid, n}, &v); err != nil {
			return err
		}
		if v >= floor {
			return nil
		}
	}
}

// steps returns how many times size must be added to from to reach floor or more
// (floor > from), without overflowing int64.
func steps(from, floor, size int64) int64 {
	if from < 0 && floor > math.MaxInt64+from { // floor-from would overflow
		return math.MaxInt64/size + 1
	}
	return (floor - from + size - 1) / size
}

// queryRow runs a query that returns one row and scans it into dest, with errors
// classified for cfg's sequence.
func queryRow(ctx context.Context, q DB, cfg Config, query string, args []any, dest ...any) error {
	switch err := scanRow(ctx, q, query, args, dest...); {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return &SequenceError{Sequence: cfg.Sequence, Err: ErrSequenceNotFound}
	default:
		return classify(cfg.Sequence, err)
	}
}
