package idgen

import (
	"fmt"
	"strings"
)

// Optimizer says how the value returned by one nextval call maps to a block of keys.
//
// All writers of one sequence must use the same Optimizer: PooledLo and Pooled read
// the same nextval value as different blocks, so mixing them hands out overlapping keys.
type Optimizer int

const (
	// PooledLo (the default) treats nextval's value v as the low end of its block:
	// the keys are v … v+AllocationSize-1. A sequence "START 1 INCREMENT 50" yields
	// 1..50, then 51..100.
	PooledLo Optimizer = iota
	// Pooled treats v as the high end of its block, v-AllocationSize+1 … v, exactly as
	// Hibernate 6's pooled optimizer does, so a Go service and a JVM service can share
	// one sequence. The first value of a fresh sequence (its START) is a block of that one
	// key: "START 1 INCREMENT 50" yields 1, then 2..51, then 52..101.
	Pooled
)

// String returns "pooled-lo" or "pooled", the names ParseTag accepts.
func (o Optimizer) String() string {
	switch o {
	case PooledLo:
		return "pooled-lo"
	case Pooled:
		return "pooled"
	default:
		return fmt.Sprintf("Optimizer(%d)", int(o))
	}
}

// Config describes one sequence and how keys are reserved from it.
type Config struct {
	// Sequence names the sequence the way nextval's argument does: optionally
	// schema-qualified ("ingest.commits_id_seq"), with double quotes to keep case or
	// special characters (`"Odd.Name"`). It is sent as a bind parameter and resolved
	// by PostgreSQL's regclass input, never spliced into SQL.
	//
	// New, Check and CheckOne require it. It is empty only in a Config that ParseTag
	// returns for a tag without a sequence, which means "the key column's own sequence":
	// CheckKey (and seqrepo's repo and migrations packages) resolve it with
	// ColumnSequence before an Allocator is made.
	Sequence string
	// AllocationSize is the number of keys one nextval reserves. It must equal the
	// sequence's INCREMENT; New and every refill check that it does.
	AllocationSize int
	// Optimizer maps nextval values to blocks; the zero value is PooledLo.
	Optimizer Optimizer
	// NoDurableRefill leaves out the WAL write that makes each refill wait for the
	// synchronous standbys (see the README's Guarantees). Without it, a refill whose
	// values another session's WAL record covers returns before the standby has that
	// record, and a promotion can hand the same keys out again. It saves about one WAL
	// flush per refill; set it only without synchronous replication, or when losing
	// uniqueness at a failover is acceptable.
	NoDurableRefill bool
	// NoPrefetch turns off prefetching. With it on (the default), when the keys in
	// memory fall below a watermark (one block at first, growing with demand up to
	// 1,024 keys or one block), one background round trip on the Querier given to New
	// reserves the next blocks, so steady-state callers find their keys in memory
	// instead of waiting for a nextval (and, with durable refills, a WAL flush). It runs
	// detached from every caller's context, one goroutine per refill that ends with it.
	// Measured in the README's "Keys": with eight goroutines taking NextN(10) per request
	// at allocation size 50, about 95 calls per 1,000 keys wait for a round trip without
	// it and about 2 with it, and the 99th percentile of NextN drops from 10 ms to 0.8 ms. A
	// failed prefetch fails no call: the callers that then need keys get a refill of
	// their own, and its error (Stats.PrefetchErrors counts them, and prefetching
	// pauses until a refill succeeds). Refills through WithTx never prefetch on the
	// caller's Querier, and New never prefetches on a *sql.Tx or *sql.Conn. The cost is
	// up to two watermarks of keys held ahead, lost as a gap when the process ends.
	NoPrefetch bool
}

// validate reports configuration errors that need no database to detect.
func (c Config) validate() error { return c.check(true) }

// check is validate; with needSequence false, an empty Sequence (a tag's "the column's
// own sequence") is allowed.
func (c Config) check(needSequence bool) error {
	var problems []string
	if needSequence && strings.TrimSpace(c.Sequence) == "" {
		problems = append(problems, "Sequence is empty")
	}
	if strings.ContainsRune(c.Sequence, 0) {
		problems = append(problems, "Sequence contains a NUL byte")
	}
	if c.AllocationSize < 1 {
		problems = append(problems, fmt.Sprintf("AllocationSize is %d, want 1 or more", c.AllocationSize))
	}
	if c.Optimizer != PooledLo && c.Optimizer != Pooled {
		problems = append(problems, fmt.Sprintf("unknown Optimizer %d", int(c.Optimizer)))
	}
	if len(problems) == 0 {
		return nil
	}
	return &ConfigError{Sequence: c.Sequence, Problems: problems}
}
