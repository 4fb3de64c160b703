package idgen

import (
	"fmt"
	"math"
)

// span is a run of reserved keys still to hand out: next, next+1, …, last.
type span struct{ next, last int64 }

func (s span) len() int64 { return s.last - s.next + 1 }

// seqParams are the sequence parameters that the block arithmetic needs, as read in
// the same statement as the nextval values they apply to.
type seqParams struct {
	increment int64
	start     int64
	max       int64
}

// blockOf returns the keys that the nextval value v reserves under opt when each
// nextval reserves size keys. It never returns a key above max and never overflows.
func blockOf(opt Optimizer, size int64, p seqParams, v int64) (span, error) {
	if size < 1 {
		return span{}, fmt.Errorf("idgen: allocation size %d", size)
	}
	switch opt {
	case PooledLo:
		// v … v+size-1. Compare against MaxInt64-(size-1) first, which cannot wrap
		// (size >= 1); then v+size-1 cannot overflow. (max-(size-1) would wrap for a
		// MAXVALUE within size of MinInt64 and let a block pass it.)
		if v > math.MaxInt64-(size-1) || v+(size-1) > p.max {
			return span{}, fmt.Errorf("%w: block %d..%d+%d would pass MAXVALUE %d", ErrExhausted, v, v, size-1, p.max)
		}
		return span{next: v, last: v + size - 1}, nil
	case Pooled:
		// Hibernate 6 PooledOptimizer: the sequence's first value is a block of its own.
		if v == p.start {
			return span{next: v, last: v}, nil
		}
		if v < math.MinInt64+(size-1) {
			return span{}, fmt.Errorf("idgen: pooled block below %d would underflow int64", v)
		}
		return span{next: v - size + 1, last: v}, nil
	default:
		return span{}, fmt.Errorf("idgen: unknown optimizer %d", int(opt))
	}
}
