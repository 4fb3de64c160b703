package main

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// counter counts what the benchmark sends to the server, for every connection that
// carries it as its pgx tracer: GORM's (through pgx's database/sql driver) and the
// raw pgx ones alike. It is safe for concurrent use.
type counter struct {
	statements atomic.Int64 // queries, execs, COPYs and batch queries
	nextval    atomic.Int64 // statements that call nextval themselves (not DEFAULTs)
	// roundTrips estimates the network round trips: one per query and per batch, two
	// per COPY (pgx's default exec mode, once statements are prepared).
	roundTrips atomic.Int64
}

type counts struct {
	Statements int64 `json:"statements"`
	Nextval    int64 `json:"nextval_round_trips"`
	// RoundTrips are network round trips: counted by the --rtt proxy when it runs,
	// else estimated from what pgx sends (see counter.roundTrips).
	RoundTrips int64 `json:"round_trips"`
}

func (c *counter) snapshot() counts {
	return counts{Statements: c.statements.Load(), Nextval: c.nextval.Load(), RoundTrips: c.roundTrips.Load()}
}

func (c counts) sub(o counts) counts {
	return counts{Statements: c.Statements - o.Statements, Nextval: c.Nextval - o.Nextval, RoundTrips: c.RoundTrips - o.RoundTrips}
}

func (c *counter) count(sql string) {
	c.statements.Add(1)
	if strings.Contains(sql, "nextval(") {
		c.nextval.Add(1)
	}
}

func (c *counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.count(d.SQL)
	c.roundTrips.Add(1)
	return ctx
}

func (c *counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *counter) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	c.statements.Add(1)
	c.roundTrips.Add(2)
	return ctx
}

func (c *counter) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

func (c *counter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.roundTrips.Add(1)
	return ctx
}

func (c *counter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	c.count(d.SQL)
}

func (c *counter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

var (
	_ pgx.QueryTracer    = (*counter)(nil)
	_ pgx.CopyFromTracer = (*counter)(nil)
	_ pgx.BatchTracer    = (*counter)(nil)
)
