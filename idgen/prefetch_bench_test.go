package idgen_test

import (
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/seqrepo/seqrepo/idgen"
)

// BenchmarkRequestPath is the request path prefetch is for: parallel goroutines (4 per
// CPU) each take NextN(10) and then make one round trip of their own (SELECT 1, the
// request's write), with prefetch on (the default) and off. It reports ns per request,
// how many calls waited for a round trip (Stats.Waits) and how many foreground round
// trips there were per 1,000 keys, and the 99th percentile of NextN's own latency.
//
//	go test -run '^$' -bench RequestPath -count 5 ./idgen
func BenchmarkRequestPath(b *testing.B) {
	for _, size := range []int{50, 1000} {
		for _, prefetch := range []bool{true, false} {
			name := "size=" + strconv.Itoa(size) + "/prefetch=" + strconv.FormatBool(prefetch)
			b.Run(name, func(b *testing.B) {
				db, _ := openDB(b)
				mustExec(b, db, `CREATE SEQUENCE s INCREMENT `+strconv.Itoa(size))
				a, err := idgen.New(b.Context(), db, idgen.Config{Sequence: "s", AllocationSize: size, NoPrefetch: !prefetch})
				if err != nil {
					b.Fatal(err)
				}
				db.SetMaxIdleConns(16)
				ctx := b.Context()
				var mu sync.Mutex
				var lat []time.Duration
				b.SetParallelism(4)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					var mine []time.Duration
					for pb.Next() {
						start := time.Now()
						if _, err := a.NextN(ctx, 10); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(start))
						if _, err := db.ExecContext(ctx, `SELECT 1`); err != nil {
							b.Error(err)
							return
						}
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
				b.StopTimer()
				st := a.Stats()
				perK := 1000 / float64(max(st.Keys, 1))
				b.ReportMetric(float64(st.Waits)*perK, "waits/1000keys")
				b.ReportMetric(float64(st.ForegroundRoundTrips)*perK, "fgtrips/1000keys")
				b.ReportMetric(float64(st.BackgroundRoundTrips)*perK, "bgtrips/1000keys")
				if len(lat) > 0 {
					slices.Sort(lat)
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-NextN-µs")
				}
			})
		}
	}
}
