package idgen

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"weak"
)

// This file keeps the process-wide record of how each sequence is used: New refuses a
// configuration that differs, in Optimizer or AllocationSize, from that of an Allocator
// of the same sequence still in use in this process. Mixing them hands out overlapping
// keys (Pooled and PooledLo read one nextval value as different blocks; a new allocation
// size after ALTER SEQUENCE … INCREMENT makes new blocks overlap the old Allocator's
// reserved ones), and inside one process it is cheap to see. Writers in other processes
// cannot be seen from here: all of them must still be configured alike.

// ErrMixedConfig is returned (wrapped in a *MixedConfigError) by New when an Allocator of
// the same sequence — the same sequence of the same database on the same server,
// however its name is spelled — is still in use in this process with another Optimizer
// or AllocationSize. An Allocator is in use until the garbage collector has reclaimed
// it and every Allocator that Using made from it; New runs a collection before it
// refuses, so an Allocator that is no longer referenced never counts. Allocators with
// the same Optimizer and AllocationSize may share a sequence, as many processes do.
var ErrMixedConfig = errors.New("idgen: sequence is in use with another optimizer or allocation size")

// MixedConfigError names the configuration New refused and the one in use. It matches
// ErrMixedConfig with errors.Is.
type MixedConfigError struct {
	Sequence string // the sequence as the refused Config names it
	InUse    Config // the configuration of the Allocator in use
	Refused  Config // the configuration New was given
}

func (e *MixedConfigError) Error() string {
	return fmt.Sprintf("idgen: sequence %s is in use in this process by an Allocator with optimizer %s and AllocationSize %d (sequence %q); refusing optimizer %s and AllocationSize %d: all writers of a sequence must use the same, or they get overlapping keys",
		e.Sequence, e.InUse.Optimizer, e.InUse.AllocationSize, e.InUse.Sequence, e.Refused.Optimizer, e.Refused.AllocationSize)
}

// Is reports whether target is ErrMixedConfig.
func (e *MixedConfigError) Is(target error) bool { return target == ErrMixedConfig }

// seqKey identifies a sequence among every server and database a process may use:
// OIDs repeat across databases (a database cloned from a template has its OIDs) and
// across servers (two servers migrated alike assign the same OIDs), the system
// identifier does not.
type seqKey struct {
	system int64 // pg_control_system().system_identifier, fixed when the cluster was initdb'd
	db     int64 // the database's OID
	seq    int64 // the sequence's OID (state.oid)
}

// identifySQL reads the server's system identifier and the database's OID, the rest of a
// seqKey. pg_control_system and pg_database are readable by every role.
const identifySQL = `SELECT (SELECT system_identifier FROM pg_control_system()), d.oid::int8
FROM pg_database d WHERE d.datname = current_database()`

// identify returns the seqKey of the sequence st is pinned to, on q's server.
func identify(ctx context.Context, q Querier, st *state) (seqKey, error) {
	seq := st.cfg.Sequence
	rows, err := q.QueryContext(ctx, identifySQL)
	if err != nil {
		return seqKey{}, classify(seq, err)
	}
	defer rows.Close()
	k := seqKey{seq: st.oid}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return seqKey{}, classify(seq, err)
		}
		return seqKey{}, fmt.Errorf("idgen: sequence %s: the current database is not in pg_database", seq)
	}
	if err := rows.Scan(&k.system, &k.db); err != nil {
		return seqKey{}, fmt.Errorf("idgen: sequence %s: %w", seq, err)
	}
	if err := rows.Close(); err != nil {
		return seqKey{}, classify(seq, err)
	}
	return k, nil
}

// inUse is one Allocator's entry in the registry: its state, held weakly so that the
// registry never keeps an Allocator alive.
type inUse struct {
	cfg Config
	st  weak.Pointer[state]
}

// registry lists, per sequence, the Allocators in use. All live entries of one sequence
// have the same Optimizer and AllocationSize.
var registry = struct {
	mu sync.Mutex // protects m; never held across a round trip or a garbage collection
	m  map[seqKey][]inUse
}{m: map[seqKey][]inUse{}}

// register records st, the state of a new Allocator pinned to its sequence, as a user of
// that sequence, unless an Allocator in use has another configuration.
func register(ctx context.Context, q Querier, st *state) error {
	key, err := identify(ctx, q, st)
	if err != nil {
		return err
	}
	err = registerKey(key, st)
	if errors.Is(err, ErrMixedConfig) {
		// The other Allocator may be unreachable but not yet collected: collect, then
		// look again, so that only an Allocator still referenced counts.
		runtime.GC()
		err = registerKey(key, st)
	}
	if err != nil {
		return err
	}
	runtime.AddCleanup(st, prune, key)
	return nil
}

// registerKey adds st under key unless a live entry has another configuration.
func registerKey(key seqKey, st *state) error {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	live := liveLocked(key)
	for _, u := range live {
		if u.cfg.Optimizer != st.cfg.Optimizer || u.cfg.AllocationSize != st.cfg.AllocationSize {
			return &MixedConfigError{Sequence: st.cfg.Sequence, InUse: u.cfg, Refused: st.cfg}
		}
	}
	registry.m[key] = append(live, inUse{cfg: st.cfg, st: weak.Make(st)})
	return nil
}

// prune drops the entries of reclaimed Allocators under key. It runs as the cleanup of
// every registered state.
func prune(key seqKey) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	liveLocked(key)
}

// liveLocked drops the entries of reclaimed Allocators under key and returns the others;
// registry.mu must be held.
func liveLocked(key seqKey) []inUse {
	var live []inUse
	for _, u := range registry.m[key] {
		if u.st.Value() != nil {
			live = append(live, u)
		}
	}
	if len(live) == 0 {
		delete(registry.m, key)
	} else {
		registry.m[key] = live
	}
	return live
}
