package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// rttProxy is an in-process TCP proxy between seqbench and PostgreSQL that holds back
// the data of each direction for half a round trip, so that a benchmark on one machine
// sees the network of a service and its database in two places (kernel netem needs
// privileges these machines do not give). It also counts the network round trips it
// carries. It is safe for concurrent use.
//
// Each direction is a queue: a reader stamps every chunk with the time it is due (its
// arrival plus the delay) and a writer forwards the chunks in order, each at its due
// time, so that chunks in flight together are delayed once, not one after another.
// Go's timers fire about a millisecond late here, which would double a 1 ms round trip:
// the writer sleeps until a timer's slack before the due time, measured at start, and
// spins (yielding) for the rest. That spin costs CPU while data is in flight; the round
// trip bench measures with SELECT 1 is the one to quote.
type rttProxy struct {
	ln       net.Listener
	upstream func(ctx context.Context) (net.Conn, error)
	delay    time.Duration // one way: half the round trip
	slack    time.Duration // how late a timer fires, at most; spun instead
	trips    atomic.Int64  // round trips: client data after data was delivered to the client

	mu     sync.Mutex // protects conns and closed
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// startRTTProxy starts a proxy, listening on the loopback interface, to the server cfg
// names (its first host), that adds rtt to every round trip.
func startRTTProxy(cfg *pgx.ConnConfig, rtt time.Duration) (*rttProxy, error) {
	network, addr := "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		network, addr = "unix", fmt.Sprintf("%s/.s.PGSQL.%d", cfg.Host, cfg.Port)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("--rtt: %w", err)
	}
	p := &rttProxy{
		ln:       ln,
		upstream: func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, network, addr) },
		delay:    rtt / 2,
		slack:    timerSlack(),
		conns:    map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// timerSlack measures how late a short timer fires on this machine: the largest of a
// few tries, at most 3 ms.
func timerSlack() time.Duration {
	var worst time.Duration
	for range 10 {
		start := time.Now()
		time.Sleep(50 * time.Microsecond)
		worst = max(worst, time.Since(start))
	}
	return min(worst, 3*time.Millisecond)
}

// dial is a pgx DialFunc that connects to the proxy, whatever the address.
func (p *rttProxy) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, "tcp", p.ln.Addr().String())
}

// roundTrips returns the round trips carried so far, on every connection.
func (p *rttProxy) roundTrips() int64 { return p.trips.Load() }

// Close stops the proxy and closes every connection it carries.
func (p *rttProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *rttProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *rttProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.carry(client)
		}()
	}
}

// carry connects client to the server and forwards both directions, delayed.
func (p *rttProxy) carry(client net.Conn) {
	server, err := p.upstream(context.Background())
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client) || !p.track(server) {
		client.Close()
		server.Close()
		return
	}
	defer func() {
		p.mu.Lock()
		delete(p.conns, client)
		delete(p.conns, server)
		p.mu.Unlock()
	}()
	var delivered atomic.Bool // data reached the client since it last sent
	delivered.Store(true)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.forward(client, server, func() {
			if delivered.Swap(false) {
				p.trips.Add(1)
			}
		}, nil)
	}()
	go func() {
		defer wg.Done()
		p.forward(server, client, nil, func() { delivered.Store(true) })
	}()
	wg.Wait()
}

// chunk is data read at one time, due for forwarding at due.
type chunk struct {
	data []byte
	due  time.Time
}

// forward copies src to dst, each chunk delay after it was read. arrived runs when a
// chunk is read, sent just before it is written. When either side ends, both are closed.
func (p *rttProxy) forward(src, dst net.Conn, arrived, sent func()) {
	queue := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range queue {
			p.waitUntil(c.due)
			if sent != nil {
				sent() // before the write: the answer to it may arrive before Write returns
			}
			if _, err := dst.Write(c.data); err != nil {
				src.Close()
				for range queue { // let the reader finish
				}
				return
			}
		}
		dst.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if arrived != nil {
				arrived()
			}
			queue <- chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(p.delay)}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				dst.Close()
			}
			break
		}
	}
	close(queue)
	<-done
}

// waitUntil returns at due: a timer for most of the wait, a yielding spin for the last
// slack of it.
func (p *rttProxy) waitUntil(due time.Time) {
	if d := time.Until(due) - p.slack; d > 0 {
		time.Sleep(d)
	}
	for time.Now().Before(due) {
		runtime.Gosched()
	}
}

// measureRTT returns the median time of SELECT 1 on a connection of cfg: the round
// trip every strategy sees.
func measureRTT(ctx context.Context, cfg *pgx.ConnConfig) (time.Duration, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var times []time.Duration
	for i := range 41 {
		start := time.Now()
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			return 0, err
		}
		if i > 0 { // the first prepares the statement
			times = append(times, time.Since(start))
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return times[len(times)/2], nil
}
