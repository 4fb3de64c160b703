package idgen_test

import (
	"strconv"
	"testing"

	"github.com/seqrepo/seqrepo/idgen"
)

// benchAlloc returns an Allocator on a fresh sequence with INCREMENT size.
func benchAlloc(b *testing.B, size int) *idgen.Allocator {
	b.Helper()
	db, _ := openDB(b)
	mustExec(b, db, `CREATE SEQUENCE s INCREMENT `+strconv.Itoa(size))
	return newAlloc(b, db, "s", size)
}

// BenchmarkNext measures one key at a time: from memory, with one round trip per block.
func BenchmarkNext(b *testing.B) {
	for _, size := range []int{1, 50, 1000} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			a := benchAlloc(b, size)
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Next(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(a.Stats().RoundTrips)/float64(a.Stats().Keys), "roundtrips/key")
		})
	}
}

// BenchmarkNextParallel measures Next from many goroutines sharing one Allocator.
func BenchmarkNextParallel(b *testing.B) {
	for _, size := range []int{50, 1000} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			a := benchAlloc(b, size)
			ctx := b.Context()
			b.ReportAllocs()
			b.ResetTimer() // not the database setup
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := a.Next(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(a.Stats().RoundTrips)/float64(max(a.Stats().Keys, 1)), "roundtrips/key")
		})
	}
}

// BenchmarkNextN measures batches of 1000 keys: 20 blocks of 50 in one round trip.
func BenchmarkNextN(b *testing.B) {
	a := benchAlloc(b, 50)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		keys, err := a.NextN(ctx, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(keys) != 1000 {
			b.Fatalf("%d keys", len(keys))
		}
	}
	b.ReportMetric(1000, "keys/op")
}

// BenchmarkRefill measures one refill round trip (a block of 50 per NextN(50)), with
// the WAL write that makes it wait for synchronous standbys and without it
// (Config.NoDurableRefill). The test server runs with fsync off; to see the cost of the
// refill's WAL flush, point DATABASE_URL at a server with default durability.
func BenchmarkRefill(b *testing.B) {
	for _, tt := range []struct {
		name      string
		noDurable bool
	}{
		{"durable", false},
		{"not-durable", true},
	} {
		b.Run(tt.name, func(b *testing.B) {
			db, _ := openDB(b)
			mustExec(b, db, `CREATE SEQUENCE s INCREMENT 50`)
			a, err := idgen.New(b.Context(), db, idgen.Config{Sequence: "s", AllocationSize: 50, NoDurableRefill: tt.noDurable})
			if err != nil {
				b.Fatal(err)
			}
			ctx := b.Context()
			for b.Loop() {
				if _, err := a.NextN(ctx, 50); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(a.Stats().RoundTrips)/float64(b.N), "roundtrips/op")
		})
	}
}
