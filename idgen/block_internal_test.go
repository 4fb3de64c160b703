package idgen

import (
	"errors"
	"math"
	"math/big"
	"testing"
)

// TestBlockOf checks the block each nextval value reserves, for both optimizers, on
// the examples of the design and at the MAXVALUE and int64 edges.
func TestBlockOf(t *testing.T) {
	const maxInt, minInt = math.MaxInt64, math.MinInt64
	seq := func(start, max int64) seqParams { return seqParams{start: start, max: max} }
	tests := []struct {
		name    string
		opt     Optimizer
		size    int64
		p       seqParams
		v       int64
		want    span
		wantErr error // nil: want applies; ErrExhausted; errAny for another error
	}{
		// pooled-lo: v … v+size-1.
		{"pooled-lo first block", PooledLo, 50, seq(1, maxInt), 1, span{1, 50}, nil},
		{"pooled-lo second block", PooledLo, 50, seq(1, maxInt), 51, span{51, 100}, nil},
		{"pooled-lo size 1", PooledLo, 1, seq(1, maxInt), 7, span{7, 7}, nil},
		{"pooled-lo negative start", PooledLo, 10, seq(-100, maxInt), -100, span{-100, -91}, nil},
		{"pooled-lo block ends exactly at MAXVALUE", PooledLo, 50, seq(1, 100), 51, span{51, 100}, nil},
		{"pooled-lo block one past MAXVALUE", PooledLo, 50, seq(1, 99), 51, span{}, ErrExhausted},
		{"pooled-lo value at MAXVALUE, size 1", PooledLo, 1, seq(1, 100), 100, span{100, 100}, nil},
		{"pooled-lo value at MAXVALUE, size 2", PooledLo, 2, seq(1, 100), 100, span{}, ErrExhausted},
		{"pooled-lo block ends at MaxInt64", PooledLo, 50, seq(1, maxInt), maxInt - 49, span{maxInt - 49, maxInt}, nil},
		{"pooled-lo block would overflow int64", PooledLo, 50, seq(1, maxInt), maxInt - 48, span{}, ErrExhausted},
		{"pooled-lo value MaxInt64, size 1", PooledLo, 1, seq(1, maxInt), maxInt, span{maxInt, maxInt}, nil},
		{"pooled-lo value MaxInt64, size 2", PooledLo, 2, seq(1, maxInt), maxInt, span{}, ErrExhausted},
		{"pooled-lo size MaxInt64 fits once", PooledLo, maxInt, seq(1, maxInt), 1, span{1, maxInt}, nil},
		{"pooled-lo size MaxInt64 from 2", PooledLo, maxInt, seq(1, maxInt), 2, span{}, ErrExhausted},
		{"pooled-lo from MinInt64", PooledLo, 50, seq(minInt, maxInt), minInt, span{minInt, minInt + 49}, nil},
		// A MAXVALUE within size of MinInt64: max-(size-1) must not wrap around.
		{"pooled-lo MAXVALUE near MinInt64", PooledLo, 50, seq(minInt, minInt+10), minInt, span{}, ErrExhausted},
		{"pooled-lo MAXVALUE near MinInt64, fits", PooledLo, 5, seq(minInt, minInt+10), minInt, span{minInt, minInt + 4}, nil},

		// pooled (Hibernate 6): v-size+1 … v, and the start value is a block of its own.
		{"pooled first value is its own block", Pooled, 50, seq(1, maxInt), 1, span{1, 1}, nil},
		{"pooled second value", Pooled, 50, seq(1, maxInt), 51, span{2, 51}, nil},
		{"pooled third value", Pooled, 50, seq(1, maxInt), 101, span{52, 101}, nil},
		{"pooled other start", Pooled, 10, seq(100, maxInt), 100, span{100, 100}, nil},
		{"pooled other start, next", Pooled, 10, seq(100, maxInt), 110, span{101, 110}, nil},
		{"pooled at MAXVALUE", Pooled, 50, seq(1, 101), 101, span{52, 101}, nil},
		{"pooled at MaxInt64", Pooled, 50, seq(1, maxInt), maxInt, span{maxInt - 49, maxInt}, nil},
		{"pooled start MinInt64", Pooled, 50, seq(minInt, maxInt), minInt, span{minInt, minInt}, nil},
		{"pooled lowest block", Pooled, 50, seq(0, maxInt), minInt + 49, span{minInt, minInt + 49}, nil},
		{"pooled block would underflow int64", Pooled, 50, seq(0, maxInt), minInt + 48, span{}, errAny},

		{"size 0", PooledLo, 0, seq(1, maxInt), 1, span{}, errAny},
		{"size -1", Pooled, -1, seq(1, maxInt), 1, span{}, errAny},
		{"unknown optimizer", Optimizer(7), 50, seq(1, maxInt), 1, span{}, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.increment = tt.size
			got, err := blockOf(tt.opt, tt.size, tt.p, tt.v)
			switch tt.wantErr {
			case nil:
				if err != nil || got != tt.want {
					t.Fatalf("blockOf(%d) = %+v, %v; want %+v", tt.v, got, err, tt.want)
				}
			case errAny:
				if err == nil || errors.Is(err, ErrExhausted) {
					t.Fatalf("blockOf(%d) = %+v, %v; want an error other than ErrExhausted", tt.v, got, err)
				}
			default:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("blockOf(%d) = %+v, %v; want %v", tt.v, got, err, tt.wantErr)
				}
			}
		})
	}
}

var errAny = errors.New("any error")

// TestBlockSequences runs consecutive nextval values of a sequence through blockOf and
// checks the keys, in order, of the design's examples.
func TestBlockSequences(t *testing.T) {
	tests := []struct {
		name  string
		opt   Optimizer
		start int64
		size  int64
		max   int64
		n     int     // nextval calls
		want  []span  // blocks of the first calls
		errAt int     // index of the first call that must fail with ErrExhausted, or -1
		_     [0]bool // keep the literal keyed
	}{
		{name: "pooled-lo START 1 INCREMENT 50", opt: PooledLo, start: 1, size: 50, max: math.MaxInt64, n: 3,
			want: []span{{1, 50}, {51, 100}, {101, 150}}, errAt: -1},
		{name: "pooled START 1 INCREMENT 50", opt: Pooled, start: 1, size: 50, max: math.MaxInt64, n: 3,
			want: []span{{1, 1}, {2, 51}, {52, 101}}, errAt: -1},
		{name: "pooled-lo MAXVALUE 100", opt: PooledLo, start: 1, size: 50, max: 100, n: 2,
			want: []span{{1, 50}, {51, 100}}, errAt: -1},
		{name: "pooled-lo MAXVALUE 120", opt: PooledLo, start: 1, size: 50, max: 120, n: 3,
			want: []span{{1, 50}, {51, 100}}, errAt: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := seqParams{increment: tt.size, start: tt.start, max: tt.max}
			for i := 0; i < tt.n; i++ {
				v := tt.start + int64(i)*tt.size
				b, err := blockOf(tt.opt, tt.size, p, v)
				if i == tt.errAt {
					if !errors.Is(err, ErrExhausted) {
						t.Fatalf("nextval %d: got %+v, %v; want ErrExhausted", v, b, err)
					}
					continue
				}
				if err != nil || b != tt.want[i] {
					t.Fatalf("nextval %d: got %+v, %v; want %+v", v, b, err, tt.want[i])
				}
			}
		})
	}
}

// FuzzBlockOf simulates a sequence (START start, INCREMENT size, MAXVALUE start+room)
// and the first count nextval values it issues, and checks the blocks they reserve:
// disjoint, none above MAXVALUE, together a contiguous run of keys from START, each of
// size keys (pooled's first block is the one key START), and ErrExhausted exactly
// when a pooled-lo block would pass MAXVALUE.
func FuzzBlockOf(f *testing.F) {
	f.Add(false, int64(1), uint64(50), uint64(math.MaxInt64), uint16(5))
	f.Add(true, int64(1), uint64(50), uint64(math.MaxInt64), uint16(5))
	f.Add(false, int64(1), uint64(50), uint64(99), uint16(3))
	f.Add(false, int64(1), uint64(50), uint64(119), uint16(3))
	f.Add(true, int64(1), uint64(50), uint64(100), uint16(3))
	f.Add(false, int64(math.MaxInt64-120), uint64(50), uint64(120), uint16(4))
	f.Add(true, int64(math.MaxInt64-120), uint64(50), uint64(120), uint16(4))
	f.Add(false, int64(math.MinInt64), uint64(50), uint64(10), uint16(2))
	f.Add(true, int64(math.MinInt64), uint64(7), uint64(100), uint16(20))
	f.Add(false, int64(-3), uint64(1), uint64(10), uint16(20))
	f.Add(false, int64(5), uint64(math.MaxInt64), uint64(math.MaxInt64), uint16(2))
	f.Fuzz(func(t *testing.T, pooled bool, start int64, size, room uint64, count uint16) {
		if size < 1 || size > math.MaxInt64 || count > 2000 {
			return // not a sequence the allocator accepts (AllocationSize is a positive int)
		}
		opt := PooledLo
		if pooled {
			opt = Pooled
		}
		isize := int64(size)
		bigMax := new(big.Int).Add(big.NewInt(start), new(big.Int).SetUint64(room))
		if bigMax.Cmp(big.NewInt(math.MaxInt64)) > 0 {
			bigMax.SetInt64(math.MaxInt64)
		}
		maxv := bigMax.Int64()
		p := seqParams{increment: isize, start: start, max: maxv}

		nextKey := big.NewInt(start) // the lowest key no block has covered yet
		exhausted := false
		v := big.NewInt(start)
		for i := 0; i < int(count) && v.Cmp(bigMax) <= 0; i++ { // nextval never passes MAXVALUE
			b, err := blockOf(opt, isize, p, v.Int64())
			// The reference block, in exact arithmetic.
			lo, hi := new(big.Int).Set(v), new(big.Int).Add(v, big.NewInt(isize-1))
			if opt == Pooled {
				lo, hi = new(big.Int).Sub(v, big.NewInt(isize-1)), new(big.Int).Set(v)
				if i == 0 {
					lo.Set(v)
				}
			}
			switch {
			case opt == PooledLo && hi.Cmp(bigMax) > 0:
				if !errors.Is(err, ErrExhausted) {
					t.Fatalf("nextval %d: block %d..%d passes MAXVALUE %d, got %+v, %v", v, lo, hi, maxv, b, err)
				}
				exhausted = true
			case opt == Pooled && lo.Cmp(big.NewInt(math.MinInt64)) < 0:
				if err == nil {
					t.Fatalf("nextval %d: block below MinInt64, got %+v", v, b)
				}
			default:
				if err != nil {
					t.Fatalf("nextval %d (start %d, size %d, max %d): %v", v, start, isize, maxv, err)
				}
				if exhausted {
					t.Fatalf("nextval %d: a block after an exhausted one", v)
				}
				if b.next != lo.Int64() || b.last != hi.Int64() {
					t.Fatalf("nextval %d: got %d..%d, want %d..%d", v, b.next, b.last, lo, hi)
				}
				if b.next > b.last || b.last > maxv {
					t.Fatalf("nextval %d: block %d..%d (MAXVALUE %d)", v, b.next, b.last, maxv)
				}
				if b.next != nextKey.Int64() {
					t.Fatalf("nextval %d: block %d..%d does not follow the previous one (want it to start at %d)", v, b.next, b.last, nextKey)
				}
				if n := b.len(); n != isize && !(opt == Pooled && i == 0 && n == 1) {
					t.Fatalf("nextval %d: block of %d keys, want %d", v, n, isize)
				}
				nextKey.SetInt64(b.last).Add(nextKey, big.NewInt(1))
			}
			v.Add(v, big.NewInt(isize))
		}
	})
}

// TestTakeLockedAtMaxInt64 hands out a block that ends at MaxInt64: the loop over
// its keys must not overflow.
func TestTakeLockedAtMaxInt64(t *testing.T) {
	const m = math.MaxInt64
	st := &state{blocks: []span{{m - 4, m}}}
	wantKeys(t, st.takeLocked(nil, 3), m-4, m-3, m-2)
	wantKeys(t, st.takeLocked(nil, 10), m-1, m)
	if len(st.blocks) != 0 {
		t.Fatalf("blocks left: %v", st.blocks)
	}
	st.blocks = []span{{m - 1, m}}
	wantKeys(t, []int64{st.popLocked(), st.popLocked()}, m-1, m)
	if len(st.blocks) != 0 {
		t.Fatalf("blocks left: %v", st.blocks)
	}
}

// TestTakeLockedSpansBlocks takes keys across block boundaries, in order.
func TestTakeLockedSpansBlocks(t *testing.T) {
	st := &state{blocks: []span{{1, 3}, {10, 12}, {20, 20}}}
	wantKeys(t, st.takeLocked(nil, 2), 1, 2)
	wantKeys(t, st.takeLocked(nil, 5), 3, 10, 11, 12, 20)
	wantKeys(t, st.takeLocked(nil, 1))
	if len(st.blocks) != 0 {
		t.Fatalf("blocks left: %v", st.blocks)
	}
}

func wantKeys(t *testing.T, got []int64, want ...int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got keys %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got keys %v, want %v", got, want)
		}
	}
}
