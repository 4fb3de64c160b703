package idgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// This file keeps the process-wide record of how each sequence is used: the first
// Allocator of a sequence fixes its Optimizer and AllocationSize for the life of the
// process, and New refuses any other. Mixing them hands out overlapping keys: Pooled and
// PooledLo read one nextval value as different blocks, and a smaller allocation size
// after ALTER SEQUENCE … INCREMENT makes new blocks overlap ones reserved before. Blocks
// reserved by an Allocator the program no longer uses may still be half handed out and
// written, so the record is never forgotten; to change how a sequence is used, restart
// the process after the change (see the README's Guarantees). Writers in other processes
// cannot be seen from here: all of them must still be configured alike.

// ErrMixedConfig is returned (wrapped in a *MixedConfigError) by New when this process
// has already made an Allocator of the same sequence — the same sequence of the same
// database on the same server, however its name is spelled — with another Optimizer or
// AllocationSize. Allocators with the same Optimizer and AllocationSize may share a
// sequence, as many processes do.
var ErrMixedConfig = errors.New("idgen: sequence is in use with another optimizer or allocation size")

// MixedConfigError names the configuration New refused and the one in use. It matches
// ErrMixedConfig with errors.Is.
type MixedConfigError struct {
	Sequence string // the sequence as the refused Config names it
	InUse    Config // the configuration the process first used the sequence with
	Refused  Config // the configuration New was given
}

func (e *MixedConfigError) Error() string {
	return fmt.Sprintf("idgen: sequence %s was first used in this process with optimizer %s and AllocationSize %d (sequence %q); refusing optimizer %s and AllocationSize %d: all writers of a sequence must use the same, or they get overlapping keys (restart the process to change it)",
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
// seqKey. pg_control_system is executable by every role in a stock PostgreSQL, but
// managed services may revoke it: then identifyDatabaseSQL reads the database's OID
// alone, and the key tells servers apart less well (two servers migrated alike may then
// share a record, which can only refuse more, never allow a mix).
const identifySQL = `SELECT (SELECT system_identifier FROM pg_control_system()), d.oid::int8
FROM pg_database d WHERE d.datname = current_database()`

const identifyDatabaseSQL = `SELECT 0::int8, d.oid::int8 FROM pg_database d WHERE d.datname = current_database()`

// identify returns the seqKey of the sequence st is pinned to, on q's server.
func identify(ctx context.Context, q DB, st *state) (seqKey, error) {
	seq := st.cfg.Sequence
	rows, err := query(ctx, q, identifySQL)
	if sqlState(err) == "42501" { // insufficient_privilege: pg_control_system revoked
		rows, err = query(ctx, q, identifyDatabaseSQL)
	}
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

// registry is the configuration each sequence was first used with in this process.
var registry = struct {
	mu sync.Mutex // protects m; never held across a round trip
	m  map[seqKey]Config
}{m: map[seqKey]Config{}}

// register records st's configuration for its sequence, or refuses it when the process
// first used the sequence with another Optimizer or AllocationSize.
func register(ctx context.Context, q DB, st *state) error {
	key, err := identify(ctx, q, st)
	if err != nil {
		return err
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if first, ok := registry.m[key]; ok {
		if first.Optimizer != st.cfg.Optimizer || first.AllocationSize != st.cfg.AllocationSize {
			return &MixedConfigError{Sequence: st.cfg.Sequence, InUse: first, Refused: st.cfg}
		}
		return nil
	}
	registry.m[key] = st.cfg
	return nil
}
