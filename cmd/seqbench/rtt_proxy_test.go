package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seqrepo/seqrepo/internal/pgtest"
	"github.com/seqrepo/seqrepo/repo"
)

// TestRTTProxy: every round trip through the proxy takes at least the round trip it
// adds, and the proxy counts one per query.
func TestRTTProxy(t *testing.T) {
	ctx := t.Context()
	cfg, err := pgx.ParseConfig(pgtest.NewDatabase(t))
	require.NoError(t, err)
	const rtt = 20 * time.Millisecond
	p, err := startRTTProxy(cfg, rtt)
	require.NoError(t, err)
	defer p.Close()
	cfg.DialFunc = p.dial
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(context.Background())

	before := p.roundTrips()
	for range 5 {
		start := time.Now()
		_, err := conn.Exec(ctx, "SELECT 1")
		require.NoError(t, err)
		assert.GreaterOrEqual(t, time.Since(start), rtt)
	}
	assert.Equal(t, int64(5), p.roundTrips()-before, "one round trip per query")

	// A batch is one round trip, however many queries it holds, once its statement
	// is prepared (which the first takes one more for).
	for _, want := range []int64{2, 1} {
		before = p.roundTrips()
		b := &pgx.Batch{}
		for range 10 {
			b.Queue("SELECT $1::int", 1)
		}
		require.NoError(t, conn.SendBatch(ctx, b).Close())
		assert.Equal(t, want, p.roundTrips()-before)
	}
}

// TestGraphStrategiesThroughTheProxy runs the graph strategies with --rtt and checks
// what they report: GORM's create takes a round trip per statement, CreateGraph one
// per request plus the allocators' refills.
func TestGraphStrategiesThroughTheProxy(t *testing.T) {
	rep, code, stderr := runJSON(t, "--rows", "100", "--rtt", "2ms", "--requests", "25", "--rounds", "2",
		"--strategies", "graph-gorm,graph-plugin,graph")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "2ms", rep.Meta.RTT)
	assert.GreaterOrEqual(t, rep.Meta.MeasuredRTTMs, 2.0)
	assert.Contains(t, stderr, "round 2/2 graph:", "progress per run")
	byName := map[string]*result{}
	for _, r := range rep.Results {
		byName[r.Strategy] = r
		assert.True(t, r.Verified, "%s: %s", r.Strategy, r.Error)
		assert.Len(t, r.Runs, 2)
		assert.Equal(t, 25, r.Requests)
		assert.LessOrEqual(t, r.P50ms, r.P99ms)
	}
	// BEGIN, three INSERTs, COMMIT.
	assert.GreaterOrEqual(t, byName["graph-gorm"].RoundTripsPerRequest, 5.0)
	// One pipeline, plus a refill of the authors' and the commits' allocators every
	// five requests (10 keys each from blocks of 50), plus the first use of each.
	assert.LessOrEqual(t, byName["graph"].RoundTripsPerRequest, 1.6)
	assert.Less(t, byName["graph"].RoundTripsPerRequest, byName["graph-plugin"].RoundTripsPerRequest)
}

// TestJSONKeepsStrategyAndMedian: scripts read these two fields of every result.
func TestJSONKeepsStrategyAndMedian(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"--dsn", dsn, "--json", "--rows", "50", "--rounds", "1", "--strategies", "copy,graph", "--requests", "3"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	var raw struct {
		Results []map[string]any `json:"results"`
	}
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &raw))
	require.Len(t, raw.Results, 2)
	for _, r := range raw.Results {
		assert.Contains(t, r, "strategy")
		assert.Contains(t, r, "median_seconds")
	}
}

func TestDefaultBatchIsTheLibrarys(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags(nil, &stderr)
	require.NoError(t, err)
	assert.Equal(t, repo.DefaultBatchSize, o.batch)
	assert.False(t, strings.Contains(stderr.String(), "error"))
}
