package idgen

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
)

// fetchSQL reserves $2 blocks from the sequence whose OID is $1 in one round trip and
// reads, in the same statement, the parameters each nextval value was issued under.
//
// The Allocator is pinned to the sequence New resolved its name to. The one-time filter
// checks, before any nextval runs, that the name ($3) still resolves to that sequence
// on this connection; when it does not (a different search_path, or the sequence was
// dropped and created again) the statement returns no rows and burns no values. Without
// the pin, keys reserved from two different sequences would share one pool.
//
// The order matters. nextval takes a RowExclusiveLock on the sequence that is held to
// the end of the transaction, and ALTER SEQUENCE needs a ShareRowExclusiveLock, so once
// the first nextval has run, the INCREMENT cannot change under this statement. The
// CASE makes pg_sequence_parameters depend on the row nextval produced, which forces
// the planner to call it after nextval (without it, the planner runs it first, and an
// ALTER committed in between would go unseen).
const fetchSQL = `SELECT s.v, p.increment, p.start_value, p.maximum_value
FROM (SELECT nextval($1::bigint::oid::regclass) AS v FROM generate_series(1, $2::int)
      WHERE $3::text::regclass = $1::bigint::oid::regclass) AS s,
LATERAL pg_sequence_parameters(CASE WHEN s.v IS NOT NULL THEN $1::bigint::oid::regclass END) AS p`

// describeSQL reads what New checks before it hands out anything.
const describeSQL = `SELECT c.oid::bigint, c.relkind::text, s.seqstart, s.seqincrement, s.seqmax, s.seqcycle,
	CASE WHEN c.relkind = 'S' THEN pg_sequence_last_value(c.oid) END
FROM pg_class c LEFT JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE c.oid = $1::text::regclass`

// fetch reserves count blocks from cfg's sequence through q in one round trip and
// returns them in nextval order. Nothing is returned unless every value was issued
// under an INCREMENT equal to the allocation size and every block fits below MAXVALUE.
func fetch(ctx context.Context, q DB, cfg Config, oid int64, count int) ([]span, error) {
	rows, err := query(ctx, q, fetchSQL, oid, count, cfg.Sequence)
	if err != nil {
		return nil, classify(cfg.Sequence, err)
	}
	defer rows.Close()
	size := int64(cfg.AllocationSize)
	blocks := make([]span, 0, count)
	var mismatch *IncrementMismatchError
	var blockErr error
	for rows.Next() {
		var v int64
		var p seqParams
		if err := rows.Scan(&v, &p.increment, &p.start, &p.max); err != nil {
			return nil, fmt.Errorf("idgen: sequence %s: scan nextval: %w", cfg.Sequence, err)
		}
		if p.increment != size {
			mismatch = &IncrementMismatchError{Sequence: cfg.Sequence, Increment: p.increment, AllocationSize: cfg.AllocationSize}
			continue // read the rest so the statement completes; hand out nothing
		}
		b, err := blockOf(cfg.Optimizer, size, p, v)
		if err != nil {
			blockErr = err
			continue
		}
		blocks = append(blocks, b)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(cfg.Sequence, err)
	}
	if mismatch != nil {
		return nil, mismatch
	}
	if blockErr != nil {
		return nil, &SequenceError{Sequence: cfg.Sequence, Err: blockErr}
	}
	if len(blocks) == 0 {
		return nil, &SequenceError{Sequence: cfg.Sequence, Err: ErrSequenceChanged,
			Detail: fmt.Sprintf("on this connection the name no longer resolves to the sequence with OID %d the Allocator was made for", oid)}
	}
	if len(blocks) != count {
		return nil, fmt.Errorf("idgen: sequence %s: asked for %d blocks, got %d", cfg.Sequence, count, len(blocks))
	}
	return blocks, nil
}

// describe checks, before any key is handed out, that cfg's sequence exists, is a
// sequence, does not CYCLE, has INCREMENT equal to the allocation size, and can still
// reserve a whole block. It returns the sequence's OID, which the name resolves to on q.
func describe(ctx context.Context, q DB, cfg Config) (oid int64, err error) {
	rows, err := query(ctx, q, describeSQL, cfg.Sequence)
	if err != nil {
		return 0, classify(cfg.Sequence, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return 0, classify(cfg.Sequence, err)
		}
		return 0, &SequenceError{Sequence: cfg.Sequence, Err: ErrSequenceNotFound}
	}
	var (
		relkind               string
		seqOID                int64
		start, increment, max sql.NullInt64
		cycle                 sql.NullBool
		lastValue             sql.NullInt64
	)
	if err := rows.Scan(&seqOID, &relkind, &start, &increment, &max, &cycle, &lastValue); err != nil {
		return 0, fmt.Errorf("idgen: sequence %s: %w", cfg.Sequence, err)
	}
	if err := rows.Close(); err != nil {
		return 0, classify(cfg.Sequence, err)
	}
	oid = seqOID
	if relkind != "S" {
		return 0, &SequenceError{Sequence: cfg.Sequence, Detail: fmt.Sprintf("relation kind %q is not a sequence", relkind), Err: ErrSequenceNotFound}
	}
	if cycle.Bool {
		return 0, &SequenceError{Sequence: cfg.Sequence, Detail: "ALTER SEQUENCE … NO CYCLE", Err: ErrCycle}
	}
	size := int64(cfg.AllocationSize)
	if increment.Int64 != size {
		return 0, &IncrementMismatchError{Sequence: cfg.Sequence, Increment: increment.Int64, AllocationSize: cfg.AllocationSize}
	}
	next := start.Int64
	if lastValue.Valid {
		// last+increment > max, written so that neither side can wrap around int64
		// (increment equals size here, so it is at least 1).
		if lastValue.Int64 > math.MaxInt64-increment.Int64 || lastValue.Int64+increment.Int64 > max.Int64 {
			return 0, &SequenceError{Sequence: cfg.Sequence, Detail: fmt.Sprintf("last value %d is at MAXVALUE %d", lastValue.Int64, max.Int64), Err: ErrExhausted}
		}
		next = lastValue.Int64 + increment.Int64
	}
	if _, err := blockOf(cfg.Optimizer, size, seqParams{increment: increment.Int64, start: start.Int64, max: max.Int64}, next); err != nil {
		if errors.Is(err, ErrExhausted) {
			return 0, &SequenceError{Sequence: cfg.Sequence, Detail: fmt.Sprintf("next block from %d does not fit below MAXVALUE %d", next, max.Int64), Err: ErrExhausted}
		}
		return 0, err
	}
	return oid, nil
}
