package idgen

import (
	"errors"
	"fmt"
	"strings"
)

// The sentinels wrapped in a *SequenceError have no "idgen:" prefix of their own: the
// error around them carries it, once ("idgen: sequence s: sequence not found: …").
var (
	// ErrIncrementMismatch is returned (wrapped in an *IncrementMismatchError) by New and
	// by any call that refills, when the sequence's INCREMENT differs from the configured
	// AllocationSize. No key from the mismatched fetch is handed out, and the allocator
	// drops the keys it still held, including those of refills in flight: until the
	// INCREMENT matches again, every call returns this error and no key.
	ErrIncrementMismatch = errors.New("idgen: sequence increment does not match allocation size")

	// ErrSequenceNotFound is returned by New and by refills when the configured name
	// does not resolve to a sequence (it does not exist, or names another kind of
	// relation).
	ErrSequenceNotFound = errors.New("sequence not found")

	// ErrSequenceChanged is returned by a refill when, on the connection it runs on,
	// Config.Sequence resolves to another sequence than the one the Allocator is pinned
	// to, and that one still exists: a different search_path (schema-per-tenant code).
	// No value is taken from either sequence. An Allocator from WithTx returns it before
	// handing out any key when its name is unqualified, sequences of that name exist in
	// several schemas, and on its Querier the name means another one than the pinned.
	// Use schema-qualified names when the search_path varies. (When the pinned sequence
	// was dropped and created again, the refill re-pins instead: see the README's Keys.)
	ErrSequenceChanged = errors.New("sequence name resolves to a different sequence")

	// ErrOlderTimeline is returned by a refill when the server reports an older WAL
	// timeline than an earlier refill of the Allocator saw: the connection reached a
	// server that was demoted or cut off by a failover. No key from it is handed out;
	// connect to the current primary.
	ErrOlderTimeline = errors.New("server is on an older WAL timeline than an earlier refill saw")

	// ErrCycle is returned by New for a sequence declared CYCLE: a cycling sequence
	// would hand out the same keys again.
	ErrCycle = errors.New("sequence is CYCLE")

	// ErrExhausted is returned when the sequence cannot reserve another whole block
	// without passing its MAXVALUE. Keys reserved before are still valid.
	ErrExhausted = errors.New("sequence exhausted")

	// ErrInvalidConfig is matched (with errors.Is) by the *ConfigError that New returns
	// for a Config that is wrong before any database is asked.
	ErrInvalidConfig = errors.New("idgen: invalid config")
)

// ConfigError lists what is wrong with a Config. It matches ErrInvalidConfig.
type ConfigError struct {
	Sequence string
	Problems []string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("idgen: invalid config for sequence %q: %s", e.Sequence, strings.Join(e.Problems, "; "))
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// IncrementMismatchError carries both numbers of an increment mismatch. It matches
// ErrIncrementMismatch with errors.Is.
type IncrementMismatchError struct {
	Sequence       string
	Increment      int64 // the sequence's INCREMENT in the database
	AllocationSize int   // the configured AllocationSize
}

func (e *IncrementMismatchError) Error() string {
	return fmt.Sprintf("idgen: sequence %s has INCREMENT %d but AllocationSize is %d; they must be equal or writers get overlapping keys (adopt the table with migrations.NewAdoption or repo.AutoMigrate, which set INCREMENT %d and move the sequence past the table's keys; or change the allocation size)",
		e.Sequence, e.Increment, e.AllocationSize, e.AllocationSize)
}

// Is reports whether target is ErrIncrementMismatch.
func (e *IncrementMismatchError) Is(target error) bool { return target == ErrIncrementMismatch }

// SequenceError reports a problem with one sequence: Err is one of the sentinels of
// this package (ErrSequenceNotFound, ErrCycle, ErrExhausted) or a database error, and
// errors.Is sees through it.
type SequenceError struct {
	Sequence string
	Detail   string // what was found, in words; may be empty
	Err      error
}

func (e *SequenceError) Error() string {
	msg := fmt.Sprintf("idgen: sequence %s: %s", e.Sequence, body(e.Err))
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *SequenceError) Unwrap() error { return e.Err }

// sqlState returns the SQLSTATE of a driver error that carries one (pgx's
// *pgconn.PgError and lib/pq's *pq.Error both do), or "".
func sqlState(err error) string {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// classify turns a database error about seq into one the caller can act on.
func classify(seq string, err error) error {
	switch sqlState(err) {
	case "42P01", "3F000", "42809": // undefined_table, invalid_schema_name, wrong_object_type
		return &SequenceError{Sequence: seq, Err: fmt.Errorf("%w: %w", ErrSequenceNotFound, err)}
	case "42602", "42601": // invalid_name, syntax_error
		return &SequenceError{Sequence: seq, Detail: "not a valid sequence name", Err: fmt.Errorf("%w: %w", ErrSequenceNotFound, err)}
	case "2200H": // sequence_generator_limit_exceeded
		return &SequenceError{Sequence: seq, Err: fmt.Errorf("%w: %w", ErrExhausted, err)}
	}
	return &SequenceError{Sequence: seq, Err: err}
}

// body returns err's text without a leading "idgen: ", for an error of this package that
// wraps another and carries the prefix itself: a message says "idgen:" once.
func body(err error) string { return strings.TrimPrefix(err.Error(), "idgen: ") }
